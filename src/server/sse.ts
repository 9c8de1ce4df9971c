// Server-sent events as OpenAI streams them: `data: {json}\n\n` per chunk, `data: [DONE]` at the end, and
// `data: {"error": …}` for a failure after the stream began (the status line was already sent).
import type { FastifyReply } from 'fastify';
import type { ApiError } from './api-error.js';

export class SseStream {
  private readonly reply: FastifyReply;
  private ended = false;

  constructor(reply: FastifyReply) {
    this.reply = reply;
    // fastify steps aside: hooks already ran (CORS, auth), so their headers are carried over by hand.
    reply.hijack();
    const headers: Record<string, string | number | string[]> = {};
    for (const [k, v] of Object.entries(reply.getHeaders())) if (v !== undefined) headers[k] = v;
    reply.raw.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      // nginx and similar proxies buffer responses unless told otherwise.
      'x-accel-buffering': 'no',
    });
  }

  /** False once the client has gone. */
  get open(): boolean {
    return !this.ended && !this.reply.raw.destroyed;
  }

  send(chunk: unknown): void {
    if (this.open) this.reply.raw.write(`data: ${JSON.stringify(chunk)}\n\n`);
  }

  /**
   * Resolves once the client has taken what was sent (at once unless the socket's buffer is full): a
   * client that stops reading holds its own generation back instead of filling the server's memory.
   */
  flushed(): Promise<void> {
    const raw = this.reply.raw;
    if (!this.open || !raw.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        raw.off('drain', done);
        raw.off('close', done);
        resolve();
      };
      raw.on('drain', done);
      raw.on('close', done);
    });
  }

  done(): void {
    if (this.open) this.reply.raw.end('data: [DONE]\n\n');
    this.ended = true;
  }

  fail(error: ApiError): void {
    if (this.open) this.reply.raw.end(`data: ${JSON.stringify(error.body)}\n\n`);
    this.ended = true;
  }
}
