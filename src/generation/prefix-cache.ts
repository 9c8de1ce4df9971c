// The prefix-state cache: snapshots of the state (and logits) reached by feeding a prompt from a fresh
// state, so that a later prompt that starts with the same tokens resumes from the snapshot instead of
// reading the shared part again.
//
// Prompts are processed in blocks whose boundaries sit at multiples of `block` tokens from the start
// (see prefill in generate.ts), cached or not, so a resumed prompt runs exactly the same computations as
// an uncached one and gives bit-identical logits. Hence the lookup rule: a snapshot may be continued only
// from a block boundary; a snapshot at a prompt's end that is not on a boundary serves only that exact
// prompt again.
//
// Entries are evicted least-recently-used first within a byte budget. The snapshots of one prompt are
// stored so that its shortest prefixes count as the most recently used: shared preambles outlive the tails.

export interface PrefixCacheOptions {
  /** Memory budget for snapshots (state + logits), bytes. Default 256 MiB. */
  maxBytes?: number;
}

export interface CacheHit {
  /** How many tokens of the prompt the snapshot covers. */
  length: number;
  /** The state after those tokens (a copy the caller may keep). */
  state: Float32Array;
  /** The logits after the last of them. */
  logits: Float32Array;
}

interface Entry {
  key: string;
  tokens: Uint32Array;
  state: Float32Array;
  logits: Float32Array;
  bytes: number;
}

export class PrefixCache {
  readonly maxBytes: number;
  private readonly buckets = new Map<string, Entry[]>();
  /** Insertion order = least recently used first. */
  private readonly lru = new Set<Entry>();
  private usedBytes = 0;
  /** Lookups that found a snapshot / found none; tokens the hits spared. */
  readonly stats = { hits: 0, misses: 0, reusedTokens: 0 };

  constructor(options: PrefixCacheOptions = {}) {
    this.maxBytes = options.maxBytes ?? 256 * 1024 * 1024;
  }

  get bytes(): number {
    return this.usedBytes;
  }

  get size(): number {
    return this.lru.size;
  }

  clear(): void {
    this.buckets.clear();
    this.lru.clear();
    this.usedBytes = 0;
  }

  /**
   * The longest snapshot usable for `ids`: one covering all of them, or one ending on a multiple of
   * `block`. Undefined when there is none.
   */
  lookup(ids: readonly number[], block: number): CacheHit | undefined {
    let best: Entry | undefined;
    const hasher = new PrefixHasher();
    for (let n = 1; n <= ids.length; n++) {
      hasher.push(ids[n - 1]!);
      if (n % block !== 0 && n !== ids.length) continue;
      const entry = this.find(hasher.key(n), ids, n);
      if (entry !== undefined) best = entry;
    }
    if (best === undefined) {
      this.stats.misses++;
      return undefined;
    }
    this.touch(best);
    this.stats.hits++;
    this.stats.reusedTokens += best.tokens.length;
    return { length: best.tokens.length, state: best.state.slice(), logits: best.logits.slice() };
  }

  /**
   * Stores snapshots of one prompt: `snapshots[i]` is the state and logits after `ids[0 .. length)`.
   * States and logits are copied.
   */
  store(ids: readonly number[], snapshots: readonly { length: number; state: Float32Array; logits: Float32Array }[]): void {
    if (snapshots.length === 0) return;
    const longest = Math.max(...snapshots.map((s) => s.length));
    // One token array for all the snapshots of this prompt; each entry holds a view of its prefix.
    const tokens = Uint32Array.from(ids.slice(0, longest));
    const hasher = new PrefixHasher();
    const keys = new Map<number, string>();
    const wanted = new Set(snapshots.map((s) => s.length));
    for (let n = 1; n <= longest; n++) {
      hasher.push(tokens[n - 1]!);
      if (wanted.has(n)) keys.set(n, hasher.key(n));
    }
    // Longest first, so that the shortest prefixes end up most recently used.
    const ordered = [...snapshots].sort((a, b) => b.length - a.length);
    for (const s of ordered) {
      const key = keys.get(s.length)!;
      const existing = this.find(key, ids, s.length);
      if (existing !== undefined) {
        this.touch(existing);
        continue;
      }
      const entry: Entry = {
        key,
        tokens: tokens.subarray(0, s.length),
        state: s.state.slice(),
        logits: s.logits.slice(),
        bytes: (s.state.length + s.logits.length) * 4,
      };
      if (entry.bytes > this.maxBytes) continue;
      let bucket = this.buckets.get(key);
      if (bucket === undefined) this.buckets.set(key, (bucket = []));
      bucket.push(entry);
      this.lru.add(entry);
      this.usedBytes += entry.bytes;
    }
    this.evict();
  }

  private find(key: string, ids: readonly number[], n: number): Entry | undefined {
    const bucket = this.buckets.get(key);
    if (bucket === undefined) return undefined;
    outer: for (const e of bucket) {
      if (e.tokens.length !== n) continue;
      for (let i = 0; i < n; i++) if (e.tokens[i] !== ids[i]) continue outer;
      return e;
    }
    return undefined;
  }

  private touch(e: Entry): void {
    this.lru.delete(e);
    this.lru.add(e);
  }

  private evict(): void {
    for (const e of this.lru) {
      if (this.usedBytes <= this.maxBytes) break;
      this.lru.delete(e);
      this.usedBytes -= e.bytes;
      const bucket = this.buckets.get(e.key)!;
      bucket.splice(bucket.indexOf(e), 1);
      if (bucket.length === 0) this.buckets.delete(e.key);
    }
  }
}

/** Two 32-bit hashes of a growing token sequence; a key only narrows the search (entries are compared). */
class PrefixHasher {
  private h1 = 0x811c9dc5;
  private h2 = 0x12345678;

  push(id: number): void {
    this.h1 = Math.imul(this.h1 ^ id, 0x01000193) >>> 0;
    this.h2 = (Math.imul(this.h2, 31) + id + 0x9e3779b9) >>> 0;
  }

  key(length: number): string {
    return `${length}:${this.h1.toString(36)}:${this.h2.toString(36)}`;
  }
}
