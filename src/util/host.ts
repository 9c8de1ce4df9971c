// Sharing the host thread: the engine computes on the caller's thread (the kernels' thread 0), so a long
// pass hands the thread back to the host's event loop between its operations (timers, I/O, a page's input).

/** Lets other callbacks (I/O, timers, new requests) run; setImmediate in Node, a macrotask elsewhere. */
export const yieldToHost: () => Promise<void> =
  typeof setImmediate === 'function'
    ? () => new Promise((resolve) => setImmediate(resolve))
    : typeof MessageChannel === 'function'
      ? messageChannelYield()
      : () => new Promise((resolve) => setTimeout(resolve, 0));

/** In a browser, setTimeout(0) is clamped to ≥ 4 ms after a few nestings; a message round trip is not. */
function messageChannelYield(): () => Promise<void> {
  const channel = new MessageChannel();
  const waiting: (() => void)[] = [];
  channel.port1.onmessage = () => waiting.shift()?.();
  return () =>
    new Promise<void>((resolve) => {
      waiting.push(resolve);
      channel.port2.postMessage(0);
    });
}

/**
 * Hands the thread back at most every `budgetMs` of work: `pace()` between operations costs one clock
 * read, and yields (≈ 10–50 µs) only when the budget since the last yield is spent.
 */
export class Pacer {
  private last = performance.now();
  constructor(readonly budgetMs: number) {}

  /** Call when the host has just had the thread (e.g. at the start of a pass). */
  reset(): void {
    this.last = performance.now();
  }

  async pace(): Promise<void> {
    if (performance.now() - this.last < this.budgetMs) return;
    await yieldToHost();
    this.last = performance.now();
  }
}
