// Sharing the host thread. The engine computes on the caller's thread between its asynchronous jobs (a
// pass's short operations, log-softmax rows, sampling), in several independent chains at once (one per
// sequence, the batcher's passes, the evaluator). Two rules keep the host's event loop turning:
// - one budget per thread: every chain calls pace() between pieces of work, and the thread goes back to
//   the host once PACE_MS of work has run since the host last had it — whichever chains did that work;
// - one chain per turn: chains that yielded are released one per turn of the event loop, so their
//   continuations cannot run back to back while the host's timers wait.

/** Most milliseconds of work between two turns of the host's event loop (the longest single operation adds to it). */
export const PACE_MS = 4;

/** Runs `f` as a new macrotask: setImmediate in Node (the next turn's check phase), a message elsewhere. */
const macrotask: (f: () => void) => void =
  typeof setImmediate === 'function'
    ? (f) => void setImmediate(f)
    : typeof MessageChannel === 'function'
      ? messageChannelTask()
      : (f) => void setTimeout(f, 0);

/** In a browser, setTimeout(0) is clamped to ≥ 4 ms after a few nestings; a message round trip is not. */
function messageChannelTask(): (f: () => void) => void {
  const channel = new MessageChannel();
  const queued: (() => void)[] = [];
  channel.port1.onmessage = () => queued.shift()?.();
  return (f) => {
    queued.push(f);
    channel.port2.postMessage(0);
  };
}

/** When the host last had the thread (performance.now()). */
let lastTurn = performance.now();
/** Chains waiting for a turn, in order. */
const waiting: (() => void)[] = [];
let releaseScheduled = false;

function release(): void {
  releaseScheduled = false;
  const next = waiting.shift();
  // Scheduled from inside this macrotask, the next release runs on a later turn (after the timers).
  if (waiting.length > 0) scheduleRelease();
  lastTurn = performance.now();
  next?.();
}

function scheduleRelease(): void {
  if (releaseScheduled) return;
  releaseScheduled = true;
  macrotask(release);
}

/** Resumes on a later turn of the event loop, after the host's pending callbacks (I/O, timers, new requests). */
export function yieldToHost(): Promise<void> {
  return new Promise((resolve) => {
    waiting.push(resolve);
    scheduleRelease();
  });
}

/**
 * Call between pieces of work on the host's thread: resolves at once (one clock read) while the thread's
 * budget lasts, on a later turn once PACE_MS of work has run since the host last had the thread.
 */
export function pace(): Promise<void> | undefined {
  return performance.now() - lastTurn < PACE_MS ? undefined : yieldToHost();
}

/** Records that the thread was idle just now (e.g. it awaited a job running on other threads), so the host had it. */
export function hostHadTurn(): void {
  lastTurn = performance.now();
}
