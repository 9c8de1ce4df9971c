// The model that ships with the project (models/default/): every command that takes --model uses it when
// none is given, and it is a working byte-level RWKV-4 that writes English-looking text.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from './helpers/fixtures.js';

const CLI = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
const MODEL = path.join(REPO_ROOT, 'models', 'default', 'model.safetensors');

function rwkv(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('the shipped model is in the repository and at most 10 MB', () => {
  assert.ok(fs.existsSync(MODEL), `${MODEL} is missing`);
  assert.ok(fs.statSync(MODEL).size <= 10 * 2 ** 20);
});

test('rwkv info without --model describes the shipped model', () => {
  const r = rwkv('info', '--threads', '1');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /RWKV v4/);
  assert.match(r.stdout, /vocabulary:\s+256/);
});

test('rwkv generate without --model writes mostly letters and spaces (greedy decoding of English prose)', () => {
  const r = rwkv('generate', 'The people of the United States', '--max-tokens', '120', '--temperature', '0', '--threads', '1');
  assert.equal(r.status, 0, r.stderr);
  const text = r.stdout;
  assert.ok(text.length >= 100, `generated ${text.length} characters`);
  const letters = (text.match(/[A-Za-z ,.;'\n-]/g) ?? []).length;
  assert.ok(letters / text.length > 0.95, `only ${letters} of ${text.length} characters are letters, spaces or punctuation`);
  // Words of English: most space-separated tokens are alphabetic words of plausible length.
  const words = text.split(/\s+/).filter((w) => w.length > 0);
  const wordLike = words.filter((w) => /^[A-Za-z][a-z]{0,14}[,.;]?$/.test(w)).length;
  assert.ok(wordLike / words.length > 0.8, `only ${wordLike} of ${words.length} tokens look like words`);
});
