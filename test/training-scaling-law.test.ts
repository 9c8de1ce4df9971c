// `rwkv experiment scaling-law`: the power-law fit (exact and noisy points), the Pareto frontier, the
// held-out prediction, and a tiny plan end to end — results JSON / SVG / table written, a second
// invocation skipping the finished runs, a run of another plan refused.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { countParameters } from '../src/cli/experiment.js';
import { analyse, fitPowerLaw, paretoFrontier, predictLoss, runScalingLaw, type ScalingArgs, type ScalingRun } from '../src/cli/scaling-law.js';
import { STATE_FILE } from '../src/training/checkpoint.js';
import { Rng } from '../src/util/rng.js';
import { wordsText } from './helpers/data.js';
import { tempDir } from './helpers/formats.js';

const close = (a: number, b: number, tol = 1e-9): boolean => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));

test('power-law fit: an exact power law gives its exponent and r² = 1', () => {
  const pts = [1e6, 3e6, 1e7, 4e7, 2e8].map((c) => ({ compute: c, loss: 12 * c ** -0.085 }));
  const fit = fitPowerLaw(pts)!;
  assert.ok(close(fit.b, -0.085), `b ${fit.b}`);
  assert.ok(close(fit.a, Math.log(12)), `a ${fit.a}`);
  assert.ok(close(fit.r2, 1), `r² ${fit.r2}`);
  assert.equal(fit.points, 5);
  assert.ok(close(predictLoss(fit, 1e9), 12 * 1e9 ** -0.085));
});

test('power-law fit: a noisy case worked by hand', () => {
  // ln C = 0, 1, 2, 3; ln L = 1, 0.5, 0.4, −0.2: b = −1.85 / 5 = −0.37, a = 0.425 + 0.37·1.5 = 0.98,
  // residuals 0.02, −0.11, 0.16, −0.07: SSres 0.043, SStot 0.7275, r² = 1 − 0.043/0.7275.
  const pts = [1, 0.5, 0.4, -0.2].map((y, i) => ({ compute: Math.exp(i), loss: Math.exp(y) }));
  const fit = fitPowerLaw(pts)!;
  assert.ok(close(fit.b, -0.37), `b ${fit.b}`);
  assert.ok(close(fit.a, 0.98), `a ${fit.a}`);
  assert.ok(close(fit.r2, 1 - 0.043 / 0.7275), `r² ${fit.r2}`);
  // Too few points (or one compute) fit nothing.
  assert.equal(fitPowerLaw(pts.slice(0, 1)), null);
  assert.equal(fitPowerLaw([pts[0]!, pts[0]!]), null);
});

test('Pareto frontier: the runs no run of less or equal compute beats', () => {
  const pts = [
    { compute: 1, loss: 5 },
    { compute: 2, loss: 6 }, // worse than a cheaper run
    { compute: 3, loss: 4 }, // same compute as a better run
    { compute: 3, loss: 3.5 },
    { compute: 4, loss: 4.2 },
    { compute: 5, loss: 3 },
  ];
  assert.deepEqual(paretoFrontier(pts), [0, 3, 5]);
  assert.deepEqual(paretoFrontier([]), []);
  // A random cloud: the frontier is decreasing in loss, increasing in compute, and dominates every point.
  const rng = new Rng(7);
  const cloud = Array.from({ length: 200 }, () => ({ compute: 1 + (rng.nextU32() % 1000), loss: 1 + (rng.nextU32() % 1000) / 100 }));
  const f = paretoFrontier(cloud).map((i) => cloud[i]!);
  for (let i = 1; i < f.length; i++) assert.ok(f[i]!.compute > f[i - 1]!.compute && f[i]!.loss < f[i - 1]!.loss);
  for (const p of cloud) assert.ok(f.some((q) => q.compute <= p.compute && q.loss <= p.loss));
});

test('analyse: the largest-compute run is held out of the frontier and predicted', () => {
  const run = (name: string, compute: number, loss: number | null): ScalingRun => ({
    name,
    size: name,
    layers: 1,
    width: 1,
    nonEmbeddingParameters: 1,
    parameters: 1,
    tokens: compute / 6,
    steps: 1,
    compute,
    step: 1,
    done: loss !== null,
    bitsPerByte: loss,
    wallSeconds: 0,
    frontier: false,
    heldOut: false,
  });
  const law = (c: number): number => 8 * c ** -0.1;
  const runs = [run('a', 1e6, law(1e6)), run('b', 1e7, law(1e7)), run('c', 2e7, law(1e7) + 0.5), run('d', 1e8, law(1e8)), run('e', 1e9, 2.1)];
  const r = analyse(runs);
  assert.deepEqual(r.frontier, ['a', 'b', 'd']);
  assert.deepEqual(runs.map((x) => x.frontier), [true, true, false, true, false]);
  assert.deepEqual(runs.map((x) => x.heldOut), [false, false, false, false, true]);
  assert.ok(close(r.fit!.b, -0.1) && close(r.fit!.r2, 1));
  assert.equal(r.prediction!.run, 'e');
  assert.ok(close(r.prediction!.predicted!, law(1e9)));
  assert.equal(r.prediction!.measured, 2.1);
  assert.ok(close(r.prediction!.relativeError!, (law(1e9) - 2.1) / 2.1));
  // The held-out run not finished: predicted, nothing measured.
  runs[4]!.bitsPerByte = null;
  assert.equal(analyse(runs).prediction!.measured, null);
});

test('non-embedding parameters leave out the embedding and the head', () => {
  const { total, nonEmbedding } = countParameters('rwkv4', 2, 32, 128);
  assert.equal(total - nonEmbedding, 2 * 256 * 32);
  const gpt = countParameters('gpt', 1, 64, 128);
  assert.equal(gpt.total - gpt.nonEmbedding, 256 * 64 + 128 * 64); // tied head: wte and wpe
});

const text = (bytes: number): string => wordsText(bytes);

test('rwkv experiment scaling-law on a tiny plan: runs, fit, JSON / SVG / table, skip, another plan refused', async () => {
  const dir = tempDir('scaling-law');
  const data = path.join(dir, 'corpus.txt');
  fs.writeFileSync(data, text(20000));
  const args: ScalingArgs = {
    dir: path.join(dir, 'runs'),
    outPrefix: path.join(dir, 'results', 'scaling-test'),
    data: [data],
    sizes: ['L1xD16', '1x32', 'L2xD32'],
    tokens: [256, 512],
    context: 16,
    batch: 2,
    evalBatches: 2,
    threads: 1,
    progress: false,
  };
  const r = await runScalingLaw(args);
  assert.equal(r.runs.length, 6);
  assert.ok(r.complete);
  for (let i = 1; i < r.runs.length; i++) assert.ok(r.runs[i]!.compute >= r.runs[i - 1]!.compute, 'cheapest first');
  for (const x of r.runs) {
    assert.ok(x.done && x.bitsPerByte !== null && x.bitsPerByte > 0 && x.bitsPerByte < 9, `${x.name}: ${x.bitsPerByte}`);
    assert.equal(x.compute, 6 * x.nonEmbeddingParameters * x.tokens);
    assert.equal(x.steps, x.tokens / 32);
  }
  const held = r.runs.at(-1)!;
  assert.equal(held.name, 'rwkv4-L2-D32-T512');
  assert.ok(held.heldOut && !held.frontier);
  assert.ok(r.frontier.length >= 1 && r.frontier.every((n) => n !== held.name));
  assert.equal(r.prediction!.run, held.name);
  assert.equal(r.prediction!.measured, held.bitsPerByte);
  if (r.fit !== null) assert.ok(close(r.prediction!.predicted!, predictLoss(r.fit, held.compute)));

  const prefix = args.outPrefix!;
  const json = JSON.parse(fs.readFileSync(`${prefix}.json`, 'utf8')) as { experiment: string; runs: unknown[]; commands: string[] };
  assert.equal(json.experiment, 'scaling-law');
  assert.equal(json.runs.length, 6);
  assert.match(json.commands[0]!, /rwkv experiment scaling-law .*--sizes L1xD16,1x32,L2xD32 --tokens 256,512/);
  const svg = fs.readFileSync(`${prefix}.svg`, 'utf8');
  assert.ok(svg.startsWith('<svg') && svg.trimEnd().endsWith('</svg>'));
  assert.equal((svg.match(/<circle /g) ?? []).length, 5 + 3 + 1, 'five runs, three legend sizes, the frontier legend mark');
  assert.match(svg, /compute C = 6·N·D/);
  assert.match(svg, /held-out loss \(bits\/byte, log scale\)/);
  const md = fs.readFileSync(`${prefix}.md`, 'utf8');
  assert.match(md, /\| rwkv4-L2-D32-T512 \| L2 D32 \| [\d ]+ \| [\d ]+ \| 512 \| [\d.]+e\d+ \| \d\.\d{4} \| held out \|/);
  assert.match(md, /Held out: rwkv4-L2-D32-T512/);

  // Again: every run finished, nothing trains, the same results.
  const state = path.join(args.dir!, r.runs[0]!.name, STATE_FILE);
  const mtime = fs.statSync(state).mtimeMs;
  const again = await runScalingLaw(args);
  assert.deepEqual(again.runs.map((x) => x.bitsPerByte), r.runs.map((x) => x.bitsPerByte));
  assert.equal(fs.statSync(state).mtimeMs, mtime);
  // The same directory with another learning rate: refused, not mixed.
  await assert.rejects(runScalingLaw({ ...args, lr: 1e-3 }), /another plan/);
});
