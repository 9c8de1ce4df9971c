// Where named states live: in this process's memory (the default), in a directory (--state-dir: they
// survive a restart), or in Redis (--redis URL: several servers behind a load balancer share them). A
// state is stored as the bytes of a state file (docs/state-files.md), whose header names the model it
// belongs to, so a state from another model is refused when it is used, wherever it was stored.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ApiError } from './api-error.js';

export interface StateStore {
  /** e.g. "memory", "directory /var/states", "redis redis://…" */
  readonly description: string;
  put(id: string, bytes: Uint8Array): Promise<void>;
  /** Undefined when there is no such state. */
  get(id: string): Promise<Uint8Array | undefined>;
  /** False when there was no such state. */
  delete(id: string): Promise<boolean>;
  close(): Promise<void>;
}

/** States in a Map, the least recently used dropped beyond `maxBytes` (default 1 GiB). */
export class MemoryStateStore implements StateStore {
  readonly description = 'memory';
  private readonly states = new Map<string, Uint8Array>();
  private bytes = 0;
  private readonly maxBytes: number;

  constructor(maxBytes = 2 ** 30) {
    this.maxBytes = maxBytes;
  }

  async put(id: string, bytes: Uint8Array): Promise<void> {
    await this.delete(id);
    this.states.set(id, bytes);
    this.bytes += bytes.byteLength;
    for (const [old, b] of this.states) {
      if (this.bytes <= this.maxBytes || old === id) break;
      this.states.delete(old);
      this.bytes -= b.byteLength;
    }
  }

  async get(id: string): Promise<Uint8Array | undefined> {
    const bytes = this.states.get(id);
    if (bytes !== undefined) {
      // Map order is insertion order: moving it to the end marks it recently used.
      this.states.delete(id);
      this.states.set(id, bytes);
    }
    return bytes;
  }

  async delete(id: string): Promise<boolean> {
    const bytes = this.states.get(id);
    if (bytes === undefined) return false;
    this.states.delete(id);
    this.bytes -= bytes.byteLength;
    return true;
  }

  async close(): Promise<void> {
    this.states.clear();
    this.bytes = 0;
  }
}

/** One file per state, `ID.rwkvstate`, written atomically. */
export class DirectoryStateStore implements StateStore {
  readonly description: string;
  private readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
    this.description = `directory ${dir}`;
  }

  /** Creates the directory if needed; refuses one that cannot be written. */
  static async open(dir: string): Promise<DirectoryStateStore> {
    try {
      await fs.promises.mkdir(dir, { recursive: true });
      await fs.promises.access(dir, fs.constants.W_OK);
    } catch (e) {
      throw new Error(`--state-dir ${dir}: cannot use it as a directory of states (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
    return new DirectoryStateStore(dir);
  }

  private file(id: string): string {
    return path.join(this.dir, `${id}.rwkvstate`);
  }

  async put(id: string, bytes: Uint8Array): Promise<void> {
    const file = this.file(id);
    const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    try {
      await fs.promises.writeFile(tmp, bytes);
      await fs.promises.rename(tmp, file);
    } catch (e) {
      await fs.promises.rm(tmp, { force: true });
      throw new ApiError(500, `cannot write the state to the state directory (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { code: 'state_store' });
    }
  }

  async get(id: string): Promise<Uint8Array | undefined> {
    try {
      return await fs.promises.readFile(this.file(id));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new ApiError(500, `cannot read the state from the state directory (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { code: 'state_store' });
    }
  }

  async delete(id: string): Promise<boolean> {
    try {
      await fs.promises.unlink(this.file(id));
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw new ApiError(500, `cannot delete the state (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { code: 'state_store' });
    }
  }

  async close(): Promise<void> {}
}

/** The part of node-redis's client this store uses (binary values). */
interface RedisBinaryClient {
  set(key: string, value: Buffer, options?: { EX?: number }): Promise<unknown>;
  get(key: string): Promise<Buffer | null>;
  del(key: string): Promise<number>;
}

/** States as Redis strings under `PREFIX + id` (default prefix "rwkv:state:"), with an optional expiry. */
export class RedisStateStore implements StateStore {
  readonly description: string;
  private readonly client: RedisBinaryClient;
  private readonly quit: () => Promise<unknown>;
  private readonly prefix: string;
  private readonly ttlSeconds: number | undefined;
  private readonly timeoutMs: number;

  private constructor(url: string, client: RedisBinaryClient, quit: () => Promise<unknown>, prefix: string, ttlSeconds: number | undefined, timeoutMs: number) {
    this.description = `redis ${redactUrl(url)}`;
    this.client = client;
    this.quit = quit;
    this.prefix = prefix;
    this.ttlSeconds = ttlSeconds;
    this.timeoutMs = timeoutMs;
  }

  /**
   * Connects (fails within `timeoutMs`, default 5 s, with the URL named when Redis cannot be reached). Each
   * command then fails after `timeoutMs` (a 503) if Redis does not answer.
   */
  static async open(url: string, options: { prefix?: string; ttlSeconds?: number; timeoutMs?: number } = {}): Promise<RedisStateStore> {
    const { createClient, RESP_TYPES } = await import('redis');
    const timeoutMs = options.timeoutMs ?? 5000;
    let connected = false;
    const client = createClient({
      url,
      // While Redis is unreachable, commands fail at once (503) instead of waiting in a queue for it.
      disableOfflineQueue: true,
      // Values as Buffers: states are binary.
      commandOptions: { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } },
      socket: {
        connectTimeout: timeoutMs,
        // At start, no retrying: an unreachable server is an error now, not a hang. Once connected, a lost
        // connection is retried for as long as it takes, so a restarted Redis needs no restarted server.
        reconnectStrategy: (retries: number) => (connected ? Math.min(50 * 2 ** retries, 2000) : false),
      },
    });
    let lastError: unknown;
    // node-redis emits 'error' on every failed (re)connection: unheard, that would crash the process, and
    // printed it would fill the log while Redis is down. Requests meanwhile get 503s saying what failed.
    client.on('error', (e: unknown) => (lastError = e));
    let timer: NodeJS.Timeout | undefined;
    try {
      // connectTimeout covers the TCP connection; this, a peer that accepts it but never answers.
      await Promise.race([
        client.connect(),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs))),
      ]);
    } catch (e) {
      if (client.isOpen) client.destroy();
      const why = e instanceof Error && e.message !== '' ? e.message : String(lastError ?? e);
      throw new Error(`--redis ${redactUrl(url)}: cannot connect (${why})`);
    } finally {
      clearTimeout(timer);
    }
    connected = true;
    // Not close(): it waits for pending replies, which a Redis that stopped answering never sends. The
    // server closes the store after its last response, so nothing is pending unless it would never come.
    const quit = async (): Promise<void> => {
      if (client.isOpen) client.destroy();
    };
    return new RedisStateStore(url, client as unknown as RedisBinaryClient, quit, options.prefix ?? 'rwkv:state:', options.ttlSeconds, timeoutMs);
  }

  async put(id: string, bytes: Uint8Array): Promise<void> {
    const value = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    await this.call(() => this.client.set(this.prefix + id, value, this.ttlSeconds !== undefined ? { EX: this.ttlSeconds } : undefined));
  }

  async get(id: string): Promise<Uint8Array | undefined> {
    const value = await this.call(() => this.client.get(this.prefix + id));
    return value === null ? undefined : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }

  async delete(id: string): Promise<boolean> {
    return (await this.call(() => this.client.del(this.prefix + id))) > 0;
  }

  async close(): Promise<void> {
    await this.quit();
  }

  private async call<T>(f: () => Promise<T>): Promise<T> {
    // node-redis's own command timeout ends once a command is sent: a Redis that stops answering (stopped,
    // overloaded, a dead peer not yet noticed) would hold the request forever. Its late reply is dropped.
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer in ${this.timeoutMs} ms`)), this.timeoutMs)));
    try {
      return await Promise.race([f(), late]);
    } catch (e) {
      throw new ApiError(503, `the state store (Redis) failed: ${e instanceof Error ? e.message : String(e)}`, { code: 'state_store' });
    } finally {
      clearTimeout(timer);
    }
  }
}

/** A Redis URL without its password, for messages. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}
