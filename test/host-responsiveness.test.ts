// The engine never holds Node's event loop for long: while a 1,024-token score and a generation run
// together on a 169M-shaped model, a 1 ms ticker never waits more than 20 ms (issue 14, point 6).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import { Rwkv } from '../src/generation/rwkv.js';
import { WasmBackend } from '../src/kernels/wasm-backend.js';
import { modelFromSource } from '../src/models/load.js';
import { randomSource, RWKV4_169M } from '../src/models/random.js';

const BOUND_MS = 20;
let backend: WasmBackend;
let rwkv: Rwkv;

before(async () => {
  backend = await WasmBackend.create({ threads: 2 });
  const model = modelFromSource(randomSource(RWKV4_169M, { dtype: 'f32', allocate: (n) => backend.allocateBytes(n) }), backend);
  rwkv = await Rwkv.fromModel(model, { tokenizer: 'bytes' });
  // Before the clock starts: compile every kernel, and size the work tensors for the largest pass (the
  // first pass of a new largest shape allocates them, once: ≈ 10 ms of zeroing fresh memory).
  await Promise.all([rwkv.score(Array.from({ length: 80 }, (_, i) => i)), rwkv.generate('warm', { maxTokens: 2, seed: 1 }).text()]);
});

after(async () => {
  await rwkv.close();
  await backend.close();
});

/**
 * Nanoseconds this thread has spent runnable but waiting for a core (Linux: /proc/thread-self/schedstat,
 * second field), or undefined where the kernel does not say.
 */
function runQueueWaitNs(): number | undefined {
  try {
    return Number(fs.readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[1]);
  } catch {
    return undefined;
  }
}

interface Ticked {
  /** The largest gap between ticks, ms. */
  worst: number;
  /**
   * The largest gap less the time the thread spent waiting for a core during it (what the thread itself
   * was doing: running, or blocked in a call) — equal to `worst` where the kernel does not say.
   */
  worstOwn: number;
  ticks: number;
  ms: number;
}

/** Runs `work` under a 1 ms interval timer; returns the largest gaps between ticks and the tick count. */
async function underTicker(work: () => Promise<void>): Promise<Ticked> {
  let last = performance.now();
  let lastWait = runQueueWaitNs();
  let worst = 0;
  let worstOwn = 0;
  let ticks = 0;
  const tick = (): void => {
    const now = performance.now();
    const wait = runQueueWaitNs();
    const gap = now - last;
    const queued = wait !== undefined && lastWait !== undefined ? (wait - lastWait) / 1e6 : 0;
    worst = Math.max(worst, gap);
    worstOwn = Math.max(worstOwn, gap - queued);
    last = now;
    lastWait = wait;
  };
  const timer = setInterval(() => {
    tick();
    ticks++;
  }, 1);
  const t0 = performance.now();
  try {
    await work();
    tick(); // the gap in progress when the work ends counts too
  } finally {
    clearInterval(timer);
  }
  return { worst, worstOwn, ticks, ms: performance.now() - t0 };
}

/** The scenario: a 1,024-token score and a 16-token generation running together, under the ticker. */
async function scoreAndGenerate(): Promise<Ticked & { scored: number; generated: number }> {
  const ids = Array.from({ length: 1024 }, (_, i) => (i * 7919 + 13) % 50277);
  let scored = 0;
  let generated = 0;
  const r = await underTicker(async () => {
    await Promise.all([
      rwkv.score(ids).then((s) => (scored = s.logProbs.length)),
      (async () => {
        for await (const piece of rwkv.generate('The engine', { maxTokens: 16, seed: 7, temperature: 1 })) generated += piece.tokens.length;
      })(),
    ]);
  });
  console.log(`# ${r.ms.toFixed(0)} ms of work, ${r.ticks} ticks, largest gap ${r.worst.toFixed(1)} ms, of it the thread's own ${r.worstOwn.toFixed(1)} ms`);
  return { ...r, scored, generated };
}

test(`a 1,024-token score and a 16-token generation together never block the event loop for more than ${BOUND_MS} ms`, async () => {
  let r = await scoreAndGenerate();
  // One stray pause on a shared machine (a garbage collection, page faults, another process's memory
  // traffic slowing this thread) is not the engine holding the loop: a second run decides. An engine that
  // really holds the loop too long fails both.
  if (r.worstOwn > BOUND_MS) {
    console.log(`# over ${BOUND_MS} ms once (${r.worstOwn.toFixed(1)} ms): running the scenario again`);
    r = await scoreAndGenerate();
  }
  assert.equal(r.scored, 1024);
  assert.ok(r.generated > 0, 'the generation produced tokens');
  // The ticker ran throughout (a loop blocked from start to end would tick about once).
  assert.ok(r.ticks > r.ms / BOUND_MS, `only ${r.ticks} ticks in ${r.ms.toFixed(0)} ms`);
  // On a shared machine the thread can wait for a core that another process holds; that time is the
  // machine's, not the engine's, and is taken out (Linux). What remains is the engine's own stretch.
  assert.ok(r.worstOwn <= BOUND_MS, `the event loop was blocked for ${r.worstOwn.toFixed(1)} ms at once (${r.worst.toFixed(1)} ms with waiting for a core)`);
});
