// `rwkv chat` driven through piped stdin (and through a pseudo-terminal when `script` is available): it
// answers, saves and reloads a state, reports tokens/s, and Ctrl-C stops an answer but not the session.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { Rwkv } from '../src/generation/rwkv.js';
import { loadModel } from '../src/models/load.js';
import { testBackend } from './helpers/backend.js';
import { fixture, REPO_ROOT } from './helpers/fixtures.js';
import { tempDir } from './helpers/formats.js';

const CLI = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
const MODEL = 'tiny-rwkv-4v0-660K-FP32.bin';
const dir = tempDir('chat');

/** The answers in a transcript: the text after each "Assistant:" up to the blank line. */
function answers(stdout: string): string[] {
  return [...stdout.matchAll(/Assistant:([^]*?)\n\n/g)].map((m) => m[1]!);
}

test('piped stdin: answers, /save, /load gives the same answer to the same question, /stats, errors keep the session', async (t) => {
  const model = fixture(t, MODEL);
  if (model === undefined) return;
  const file = path.join(dir, 'chat.state');
  const input = ['Hello there', `/save ${file}`, 'How are you?', `/load ${file}`, 'How are you?', '/stats', '/load /nonexistent/x', '/bogus', '/exit', 'never read'].join('\n');
  const r = spawnSync(process.execPath, [CLI, 'chat', '--model', model, '--seed', '3', '--max-tokens', '30', '--threads', '2'], {
    input: `${input}\n`,
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const replies = answers(r.stdout);
  assert.equal(replies.length, 3, r.stdout);
  assert.ok(replies[0]!.length > 0);
  assert.equal(replies[2], replies[1], 'the reloaded state answers as the saved one did');
  const saved = /\[saved the state \((\d+) tokens\) to /.exec(r.stdout);
  assert.ok(saved !== null, r.stdout);
  assert.match(r.stdout, new RegExp(`\\[loaded .*chat\\.state: ${saved[1]} tokens\\]`));
  assert.match(r.stdout, /\[state: \d+ tokens; last answer: \d+ tokens, [\d.]+ tokens\/s/);
  assert.match(r.stdout, /\[unknown command \/bogus/);
  assert.ok(!r.stdout.includes('never read'));
  assert.match(r.stderr, /\[(max tokens, )?\d+ tokens, [\d.]+ tokens\/s\]/);
  assert.match(r.stderr, /^rwkv: \/nonexistent\/x: no such state file$/m);

  // The saved state and the chat's template, checked through the library: the same question with the same
  // options and seed (the session's seed plus the tokens in the state) gives the answer the chat printed.
  const backend = await testBackend();
  const rwkv = await Rwkv.fromModel(await loadModel(model, { backend }));
  const state = await rwkv.loadState(file);
  assert.equal(state.tokenCount, Number(saved[1]));
  const text = await rwkv
    .generate('User: How are you?\n\nAssistant:', {
      seed: 3 + state.tokenCount,
      maxTokens: 30,
      topP: 0.3,
      presencePenalty: 0.5,
      frequencyPenalty: 0.5,
      penaltyDecay: 0.996,
      bannedTokens: [0],
      stop: ['\n\n'],
      state,
    })
    .text();
  assert.equal(text, replies[1]);
});

test('Ctrl-C (SIGINT) stops the answer being written; the session goes on', async (t) => {
  const model = fixture(t, MODEL);
  if (model === undefined) return;
  // Newlines banned: the answer would never end on its own.
  const child = spawn(process.execPath, [CLI, 'chat', '--model', model, '--seed', '1', '--ban', '10', '--max-tokens', '100000000', '--threads', '1'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const until = async (cond: () => boolean, what: string): Promise<void> => {
    const deadline = Date.now() + 30_000;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; stdout: ${stdout.slice(-300)}; stderr: ${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  try {
    child.stdin.write('Tell me a long story\n');
    await until(() => /Assistant:[^]{200}/.test(stdout), 'the answer to start');
    child.kill('SIGINT');
    await until(() => stderr.includes('[interrupted'), 'the interruption');
    child.stdin.end('/stats\n');
    assert.equal(await exited, 0, stderr);
  } finally {
    child.kill('SIGKILL');
  }
  assert.match(stderr, /\[interrupted, \d+ tokens, [\d.]+ tokens\/s\]/);
  assert.match(stdout, /\[state: \d+ tokens; last answer: \d+ tokens/);
  assert.match(stdout, /; aborted\)/);
});

test('a pseudo-terminal: Ctrl-C as a key stops the answer, /exit leaves', async (t) => {
  const model = fixture(t, MODEL);
  if (model === undefined) return;
  if (spawnSync('script', ['--version']).status !== 0) {
    t.skip('util-linux `script` is not installed');
    return;
  }
  const command = [process.execPath, CLI, 'chat', '--model', model, '--seed', '1', '--ban', '10', '--max-tokens', '100000000', '--threads', '1']
    .map((a) => `'${a.replace(/'/g, `'\\''`)}'`)
    .join(' ');
  const child = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const until = async (cond: () => boolean, what: string): Promise<void> => {
    const deadline = Date.now() + 30_000;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; output: ${JSON.stringify(out.slice(-400))}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  try {
    await until(() => out.includes('User: '), 'the prompt');
    child.stdin.write('Tell me a long story\r');
    await until(() => /Assistant:[^]{200}/.test(out), 'the answer to start');
    child.stdin.write('\x03');
    await until(() => out.includes('[interrupted'), 'the interruption');
    child.stdin.write('/stats\r');
    await until(() => /\[state: \d+ tokens/.test(out), '/stats');
    child.stdin.write('/exit\r');
    assert.equal(await exited, 0, out);
  } finally {
    child.kill('SIGKILL');
  }
  assert.ok(fs.existsSync(CLI));
});
