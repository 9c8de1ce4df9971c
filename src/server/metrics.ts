// GET /metrics: Prometheus text (prom-client), one registry per server so that several servers in one
// process (tests) keep their own counts.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Rwkv } from '../generation/rwkv.js';

export class ServerMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'status'>;
  readonly inFlight: Gauge;
  readonly aborted: Counter<'route'>;
  readonly promptTokens: Counter;
  readonly generatedTokens: Counter;
  /** Generated tokens over the last WINDOW_MS, as [time, count] pairs (for the tokens/s gauge). */
  private readonly recent: [number, number][] = [];
  private static readonly WINDOW_MS = 10_000;

  constructor(model: () => Rwkv | undefined) {
    const registers = [this.registry];
    this.requests = new Counter({ name: 'rwkv_requests_total', help: 'HTTP requests answered, by route and status', labelNames: ['route', 'status'], registers });
    this.inFlight = new Gauge({ name: 'rwkv_requests_in_flight', help: 'Requests being served now', registers });
    this.aborted = new Counter({ name: 'rwkv_requests_aborted_total', help: 'Requests whose client went away before the end (their work stopped)', labelNames: ['route'], registers });
    this.promptTokens = new Counter({ name: 'rwkv_prompt_tokens_total', help: 'Prompt tokens read (including those taken from the prefix cache)', registers });
    this.generatedTokens = new Counter({ name: 'rwkv_generated_tokens_total', help: 'Tokens generated', registers });
    new Gauge({
      name: 'rwkv_queue_length',
      help: 'Forward requests waiting for the next batched pass',
      registers,
      collect() {
        this.set(model()?.batcher.queued ?? 0);
      },
    });
    const recent = this.recent;
    new Gauge({
      name: 'rwkv_generated_tokens_per_second',
      help: `Tokens generated per second over the last ${ServerMetrics.WINDOW_MS / 1000} s`,
      registers,
      collect() {
        const now = Date.now();
        while (recent.length > 0 && recent[0]![0] < now - ServerMetrics.WINDOW_MS) recent.shift();
        this.set(recent.reduce((a, [, n]) => a + n, 0) / (ServerMetrics.WINDOW_MS / 1000));
      },
    });
    new Gauge({
      name: 'rwkv_batch_passes_total',
      help: 'Forward passes run (each carries every sequence waiting when it starts)',
      registers,
      collect() {
        this.set(model()?.batcher.stats.passes ?? 0);
      },
    });
    new Gauge({
      name: 'rwkv_batch_sequences_total',
      help: 'Sequences carried by those passes (÷ passes = the mean batch)',
      registers,
      collect() {
        this.set(model()?.batcher.stats.sequences ?? 0);
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'rwkv_process_' });
  }

  /** Counts `n` generated tokens now. */
  generated(n: number): void {
    if (n === 0) return;
    this.generatedTokens.inc(n);
    const now = Date.now();
    const last = this.recent[this.recent.length - 1];
    // One entry per 100 ms keeps the window's array short under load.
    if (last !== undefined && now - last[0] < 100) last[1] += n;
    else this.recent.push([now, n]);
    while (this.recent[0]![0] < now - ServerMetrics.WINDOW_MS) this.recent.shift();
  }
}
