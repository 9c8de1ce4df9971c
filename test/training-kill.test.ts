// A training process killed with SIGKILL (no chance to save) and resumed with --resume continues from its last
// checkpoint exactly: the resumed run's log equals an uninterrupted run's line for line (times aside), and
// the final weights are byte-identical — for a full run and for a LoRA run. Checkpoints are written to a
// temporary file and renamed, so a kill during a save leaves the previous checkpoint whole.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ArgumentError } from '../src/errors.js';
import { WasmGemm } from '../src/training/gemm.js';
import { train } from '../src/training/train.js';
import { Rng } from '../src/util/rng.js';
import { testBackend } from './helpers/backend.js';
import { tempDir } from './helpers/formats.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

function text(bytes: number): string {
  const words = ['the', 'model', 'reads', 'a', 'token', 'and', 'its', 'state', 'carries', 'what', 'came', 'before'];
  const rng = new Rng(11);
  let s = '';
  while (s.length < bytes) s += words[rng.nextU32() % words.length] + (rng.nextU32() % 9 === 0 ? '.\n' : ' ');
  return s;
}

function cli(args: string[]): void {
  const p = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  assert.equal(p.status, 0, p.stderr);
}

/** The log without its wall-clock times. */
function logOf(dir: string): string[] {
  return fs
    .readFileSync(path.join(dir, 'log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.replace(/,"time_s":[0-9.e+-]+/, ''));
}

/** Starts `rwkv train ARGS` and SIGKILLs it once its log has reached `step`; resolves when it is dead. */
async function killAt(args: string[], logFile: string, step: number): Promise<void> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: 'ignore' });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  const deadline = Date.now() + 120_000;
  for (;;) {
    const lines = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').trim().split('\n') : [];
    const last = lines.length > 0 && lines[lines.length - 1] !== '' ? (JSON.parse(lines[lines.length - 1]!) as { step: number }).step : 0;
    if (last >= step) break;
    if (child.exitCode !== null) throw new Error('the run ended before it could be killed');
    if (Date.now() > deadline) throw new Error('the run did not reach the step in time');
    await new Promise((r) => setTimeout(r, 5));
  }
  child.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL');
}

for (const lora of [false, true]) {
  test(`kill -9 during ${lora ? 'a LoRA' : 'a training'} run, then --resume: the same log and the same final ${lora ? 'adapters' : 'weights'} as an uninterrupted run`, async () => {
    const dir = tempDir('train-kill');
    const data = path.join(dir, 'text.txt');
    fs.writeFileSync(data, text(6000));
    const base = ['--data', data, '--layers', '2', '--width', '32', '--context', '16', '--batch', '2', '--lr', '3e-3', '--val-fraction', '0.1', '--eval-every', '4', '--save-every', '3', '--threads', '1', '--no-progress'];
    let args = [...base, '--steps', '14'];
    if (lora) {
      cli(['train', ...base, '--steps', '5', '--out', path.join(dir, 'base')]);
      args = ['--data', data, '--init', path.join(dir, 'base', 'model.safetensors'), '--lora-rank', '4', '--context', '16', '--batch', '2', '--lr', '1e-2', '--val-fraction', '0.1', '--eval-every', '4', '--save-every', '3', '--threads', '1', '--no-progress', '--steps', '14'];
    }
    const whole = path.join(dir, 'whole');
    const killed = path.join(dir, 'killed');
    cli(['train', ...args, '--out', whole]);
    await killAt(['train', ...args, '--out', killed], path.join(killed, 'log.jsonl'), 8);
    const kept = logOf(killed).length;
    cli(['train', '--resume', '--out', killed, '--threads', '1', '--no-progress']);
    assert.deepEqual(logOf(killed), logOf(whole));
    const file = lora ? 'lora.safetensors' : 'model.safetensors';
    assert.deepEqual(fs.readFileSync(path.join(killed, file)), fs.readFileSync(path.join(whole, file)));
    console.log(`# killed after ${kept} log lines; resumed from the last checkpoint; ${logOf(whole).length} log lines equal`);
  });
}

test('a diverging run stops at the step where the loss turns non-finite, naming it and the last checkpoint', async () => {
  const gemm = new WasmGemm((await testBackend()).kernels);
  const dir = tempDir('train-diverge');
  const data = path.join(dir, 'text.txt');
  fs.writeFileSync(data, text(4000));
  const out = path.join(dir, 'run');
  const opts = { data: [data], out, layers: 1, width: 16, context: 16, batch: 2, steps: 60, lr: 1e9, clip: 0, weightDecay: 0, valFraction: 0, saveEvery: 1 };
  let message = '';
  await assert.rejects(train(opts, gemm), (e: unknown) => {
    message = e instanceof Error ? e.message : String(e);
    return e instanceof ArgumentError && /^the loss is (NaN|-?Infinity) at step \d+: training diverged; lower --lr \(last checkpoint: step \d+\)$/.test(message);
  });
  const [failed, kept] = [...message.matchAll(/step (\d+)/g)].map((m) => Number(m[1]));
  assert.equal(kept, failed! - 1);
  // The log holds the steps up to that checkpoint (the failing step wrote nothing).
  const log = fs.readFileSync(path.join(out, 'log.jsonl'), 'utf8').trim().split('\n');
  assert.equal((JSON.parse(log[log.length - 1]!) as { step: number }).step, kept);
  console.log(`# lr 1e9: ${message}`);
});
