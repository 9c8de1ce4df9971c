// `rwkv experiment parity` on a budget of seconds: every planned run trains, the results JSON, chart and
// table are written, a second invocation skips the finished runs, an interrupted run is resumed; and
// `rwkv plot` draws a results file (every run's held-out curve, tokens on a log axis).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { corpusFiles, runParity, type ParityArgs } from '../src/cli/experiment.js';
import { runPlot } from '../src/cli/plot.js';
import { STATE_FILE } from '../src/training/checkpoint.js';
import { WasmGemm } from '../src/training/gemm.js';
import { train } from '../src/training/train.js';
import { testBackend } from './helpers/backend.js';
import { logTicks } from '../src/training/plot.js';
import { wordsText } from './helpers/data.js';
import { tempDir } from './helpers/formats.js';

const gemm = new WasmGemm((await testBackend()).kernels);

const text = (bytes: number): string => wordsText(bytes);

test('rwkv experiment parity on a tiny budget: runs, results JSON / SVG / table, skip and resume', async () => {
  const dir = tempDir('parity');
  const data = path.join(dir, 'corpus.txt');
  fs.writeFileSync(data, text(20000));
  const args: ParityArgs = {
    dir: path.join(dir, 'runs'),
    results: path.join(dir, 'results', 'parity-test'),
    data: [data],
    sizes: ['1x16', '1x32'],
    lrs: [[3e-3, 1e-2], 'best'],
    tokens: 16 * 2 * 12,
    context: 16,
    batch: 2,
    evals: 3,
    evalBatches: 2,
    threads: 1,
    progress: false,
  };
  const r = await runParity(args);
  assert.equal(r.steps, 12);
  assert.deepEqual(
    r.runs.slice(0, 4).map((x) => x.name),
    ['rwkv4-L1-D16-lr0.003', 'rwkv4-L1-D16-lr0.01', 'gpt-L1-D16-lr0.003', 'gpt-L1-D16-lr0.01'],
  );
  // 'best': the larger size runs each architecture once, at its best learning rate of the smaller one.
  for (const arch of ['rwkv4', 'gpt']) {
    const small = r.runs.filter((x) => x.arch === arch && x.size === 'L1 D16');
    const best = small.reduce((a, x) => (x.bitsPerByte! < a.bitsPerByte! ? x : a));
    const large = r.runs.filter((x) => x.arch === arch && x.size === 'L1 D32');
    assert.deepEqual(large.map((x) => x.lr), [best.lr], arch);
  }
  assert.equal(r.runs.length, 6);
  for (const x of r.runs) {
    assert.ok(x.done && x.bitsPerByte !== null && x.bitsPerByte > 0 && x.bitsPerByte < 8.5, `${x.name}: ${x.bitsPerByte}`);
    assert.deepEqual(x.curve.map((c) => c.step), [4, 8, 12]);
    assert.deepEqual(x.curve.map((c) => c.tokens), [128, 256, 384]);
    assert.ok(Math.abs(x.bitsPerByte! - x.curve.at(-1)!.loss / Math.LN2) < 1e-12);
  }
  for (const c of r.comparison) {
    assert.ok(c.rwkv4 !== null && c.gpt !== null && c.ratio !== null);
    assert.ok(Math.abs(c.ratio - c.rwkv4.bitsPerByte / c.gpt.bitsPerByte) < 1e-12);
  }
  const prefix = args.results!;
  const json = JSON.parse(fs.readFileSync(`${prefix}.json`, 'utf8')) as { runs: unknown[]; commands: string[] };
  assert.equal(json.runs.length, 6);
  assert.match(json.commands[0]!, /rwkv experiment parity .*--tokens 384 .*--lrs 0\.003,0\.01\/best/);
  const svg = fs.readFileSync(`${prefix}.svg`, 'utf8');
  assert.ok(svg.startsWith('<svg') && (svg.match(/<path /g) ?? []).length === 6, 'one held-out curve per run');
  assert.match(svg, /training tokens \(log scale\)/);
  const md = fs.readFileSync(`${prefix}.md`, 'utf8');
  assert.match(md, /\| gpt-L1-D32-lr0\.0(03|1) \| GPT \| L1 D32 \|/);
  assert.match(md, /\| L1 D16 \| \d\.\d{4} \| \d\.\d{4} \| \d\.\d{3} \|/);

  // Again: every run is finished, nothing trains, the same results.
  const mtime = fs.statSync(path.join(args.dir!, r.runs[0]!.name, STATE_FILE)).mtimeMs;
  const again = await runParity(args);
  assert.deepEqual(again.runs.map((x) => x.bitsPerByte), r.runs.map((x) => x.bitsPerByte));
  assert.equal(fs.statSync(path.join(args.dir!, r.runs[0]!.name, STATE_FILE)).mtimeMs, mtime);

  // A run stopped part-way (as Ctrl-C or SIGTERM leaves it: a checkpoint) is resumed, not restarted, to
  // the result of an uninterrupted run; a plan of another budget in the same directory is refused.
  const one = { ...args, sizes: ['1x16'], lrs: [[3e-3]], archs: ['gpt'] };
  const whole = await runParity({ ...one, dir: path.join(dir, 'whole'), results: path.join(dir, 'whole') });
  const partDir = path.join(dir, 'part');
  const name = 'gpt-L1-D16-lr0.003';
  await train(
    { out: path.join(partDir, name), overwrite: true, data: [data], arch: 'gpt', layers: 1, width: 16, context: 16, batch: 2, steps: 12, lr: 3e-3, valFraction: 0.05, evalEvery: 4, evalBatches: 2, saveEvery: 2, seed: 42 },
    gemm,
    { shouldStop: () => true }, // stops after its first step
  );
  const resumed = await runParity({ ...one, dir: partDir, results: path.join(dir, 'part') });
  assert.deepEqual(resumed.runs[0]!.curve, whole.runs[0]!.curve);
  await assert.rejects(runParity({ ...one, dir: partDir, results: path.join(dir, 'part'), tokens: 16 * 2 * 8 }), /another plan/);

  // rwkv plot reads the results file.
  const out = path.join(dir, 'plot.svg');
  const res = runPlot({ logs: [`${prefix}.json`], out });
  assert.equal(res.runs, 6);
  assert.equal(res.points, 18);
  assert.match(fs.readFileSync(out, 'utf8'), /held-out loss \(bits\/token\)/);
});

test('log-axis ticks: 1-2-5 per decade, only powers of ten over wide ranges, finer within a decade', () => {
  assert.deepEqual(logTicks(100, 1000), [100, 200, 500, 1000]);
  assert.deepEqual(logTicks(1e3, 1e7), [1e3, 1e4, 1e5, 1e6, 1e7]);
  assert.deepEqual(logTicks(3e4, 1.8e5), [3e4, 5e4, 7e4, 1e5, 1.5e5]);
});

test('the parity corpus ships through npm: State of the Union addresses as text files', () => {
  const files = corpusFiles();
  assert.ok(files.length > 200, `${files.length} files`);
  assert.ok(files.every((f) => f.endsWith('.txt')));
  assert.match(fs.readFileSync(files[0]!, 'utf8').slice(0, 200), /Fellow-Citizens/);
});
