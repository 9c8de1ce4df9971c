// What every format reader reads through: a ByteSource with the checks the readers need — a read past the
// end is a typed "truncated" error naming the file and the tensor or field, not a short buffer — reads of
// tensor data in chunks (so that progress can be reported and an AbortSignal heard), and the progress
// itself: how many distinct bytes of the source have been read.
import { AbortError, FormatError } from '../errors.js';
import {
  openByteSource,
  isByteSource,
  type ByteSource,
  type ByteSourceInput,
  type ByteSourceOptions,
  type LoadProgress,
} from './byte-source.js';

/** Tensor data is read in chunks of this many bytes (one progress report and abort check each). */
const CHUNK = 1 << 22;

/** Options of the format readers and of openCheckpoint. */
export interface ReadOptions extends Omit<ByteSourceOptions, 'onDownload'> {
  /** Called as the source is read: `loaded` rises to `total` (the source's size), reached last. */
  onProgress?: (progress: LoadProgress) => void;
}

/**
 * Counts the distinct bytes read (a byte read twice counts once) and reports them, at most about a
 * thousand times per source and only when the count has grown; `finish` reports the total.
 */
export class ProgressTracker {
  private readonly onProgress: ((progress: LoadProgress) => void) | undefined;
  /** Disjoint, sorted [start, end) ranges already read. */
  private readonly ranges: [number, number][] = [];
  private covered = 0;
  private reported = 0;
  private total = 0;

  constructor(onProgress: ((progress: LoadProgress) => void) | undefined) {
    this.onProgress = onProgress;
  }

  /** The bytes [start, end) of a source of `total` bytes have been read. */
  add(start: number, end: number, total: number): void {
    if (this.onProgress === undefined || end <= start) return;
    this.total = total;
    const r = this.ranges;
    // First range ending at or after start; merge every range that touches [start, end).
    let i = 0;
    while (i < r.length && r[i]![1] < start) i++;
    let s = start;
    let e = end;
    let j = i;
    let removed = 0;
    while (j < r.length && r[j]![0] <= e) {
      s = Math.min(s, r[j]![0]);
      e = Math.max(e, r[j]![1]);
      removed += r[j]![1] - r[j]![0];
      j++;
    }
    r.splice(i, j - i, [s, e]);
    this.covered += e - s - removed;
    this.report(this.covered, total);
  }

  /** Reports `loaded` (e.g. a download's progress) if it is more than reported so far. */
  report(loaded: number, total: number): void {
    if (this.onProgress === undefined) return;
    this.total = total;
    const step = Math.max(1 << 16, Math.floor(total / 1000));
    if (loaded > this.reported && (loaded - this.reported >= step || loaded >= total)) {
      this.reported = Math.min(loaded, total);
      this.onProgress({ loaded: this.reported, total });
    }
  }

  /** The source has been read: reports `total` unless already reported. */
  finish(total: number): void {
    if (this.onProgress === undefined) return;
    if (this.reported < total) {
      this.reported = total;
      this.onProgress({ loaded: total, total });
    }
  }
}

export interface Where {
  readonly tensor?: string;
  readonly field?: string;
}

export class SourceReader {
  readonly source: ByteSource;
  /** What errors name as the file. */
  readonly name: string;
  readonly size: number;
  private readonly progress: ProgressTracker;
  private readonly signal: AbortSignal | undefined;

  constructor(source: ByteSource, progress: ProgressTracker = new ProgressTracker(undefined), signal?: AbortSignal) {
    this.source = source;
    this.name = source.name;
    this.size = source.size;
    this.progress = progress;
    this.signal = signal;
  }

  private checkBounds(position: number, length: number, what: Where): void {
    if (position + length > this.size) {
      const field = what.field !== undefined ? `${what.field}: ` : '';
      throw new FormatError('TRUNCATED', `${field}file is truncated: needs bytes up to ${position + length}, has ${this.size}`, {
        file: this.name,
        ...(what.tensor !== undefined ? { tensor: what.tensor } : {}),
      });
    }
  }

  /** Fills `target` from byte `position`, in chunks; `what` names the thing read for the truncation error. */
  async readInto(target: Uint8Array, position: number, what: Where): Promise<void> {
    this.checkBounds(position, target.byteLength, what);
    for (let done = 0; done < target.byteLength; ) {
      if (this.signal?.aborted === true) throw new AbortError('loading aborted');
      const n = Math.min(CHUNK, target.byteLength - done);
      await this.source.read(position + done, n, target.subarray(done, done + n));
      this.progress.add(position + done, position + done + n, this.size);
      done += n;
    }
  }

  /**
   * `length` bytes at `position`: a view of the source's memory for in-memory sources, else a fresh
   * buffer. Not to be modified (copy what must change).
   */
  async read(position: number, length: number, what: Where): Promise<Uint8Array> {
    this.checkBounds(position, length, what);
    if (this.signal?.aborted === true) throw new AbortError('loading aborted');
    const bytes = await this.source.read(position, length);
    this.progress.add(position, position + length, this.size);
    return bytes;
  }

  /** Reading is over: progress reaches the total. */
  finish(): void {
    this.progress.finish(this.size);
  }
}

/** A DataView of exactly these bytes (a read may be a view into a larger buffer). */
export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Opens `input` for a reader, runs `fn` on it, reports the end of progress and closes the source — unless
 * the caller gave a ByteSource, which stays theirs to close.
 */
export async function withReader<T>(input: ByteSourceInput, options: ReadOptions, fn: (reader: SourceReader) => Promise<T>): Promise<T> {
  const progress = new ProgressTracker(options.onProgress);
  const source = await openByteSource(input, {
    ...options,
    onDownload: (loaded, total) => {
      if (total !== undefined) progress.report(loaded, total);
    },
  });
  const owned = !isByteSource(input);
  try {
    const reader = new SourceReader(source, progress, options.signal);
    const result = await fn(reader);
    reader.finish();
    return result;
  } finally {
    if (owned) await source.close();
  }
}
