// What every writer shares: a tensor to be written (whose bytes may be computed on demand, so that a
// converted copy exists for one tensor at a time, never for the whole model) and a file written in order
// into a temporary name that replaces the destination only once complete.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RwkvError } from '../errors.js';
import type { DType } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';

export interface OutTensor {
  readonly name: string;
  readonly dtype: DType;
  /** PyTorch order, outermost first. */
  readonly shape: readonly number[];
  readonly byteLength: number;
  /** The tensor's bytes, little-endian; called once, when the tensor is written. */
  bytes(): Uint8Array;
}

/** A stored tensor as an OutTensor (its bytes as they are), optionally renamed or reshaped. */
export function outTensor(t: Tensor, name = t.name, shape: readonly number[] = t.shape): OutTensor {
  return { name, dtype: t.dtype, shape, byteLength: t.data.byteLength, bytes: () => t.data };
}

const CHUNK = 1 << 26;

export class FileWriter {
  readonly path: string;
  private readonly tmp: string;
  private fd: number;
  /** Bytes written so far (the position of the next write). */
  position = 0;

  private constructor(dest: string, tmp: string, fd: number) {
    this.path = dest;
    this.tmp = tmp;
    this.fd = fd;
  }

  static create(dest: string): FileWriter {
    const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.${process.pid}.partial`);
    try {
      return new FileWriter(dest, tmp, fs.openSync(tmp, 'w'));
    } catch (e) {
      throw writeError(dest, e);
    }
  }

  write(bytes: Uint8Array): void {
    try {
      let done = 0;
      while (done < bytes.byteLength) {
        const n = fs.writeSync(this.fd, bytes, done, Math.min(CHUNK, bytes.byteLength - done), this.position + done);
        done += n;
      }
    } catch (e) {
      throw writeError(this.path, e);
    }
    this.position += bytes.byteLength;
  }

  /** Writes `n` zero bytes. */
  pad(n: number): void {
    if (n > 0) this.write(new Uint8Array(n));
  }

  /** Pads to the next multiple of `alignment`. */
  align(alignment: number): void {
    this.pad((alignment - (this.position % alignment)) % alignment);
  }

  writeTensor(t: OutTensor): void {
    const b = t.bytes();
    if (b.byteLength !== t.byteLength) {
      throw new Error(`internal: tensor '${t.name}' produced ${b.byteLength} bytes, declared ${t.byteLength}`);
    }
    this.write(b);
  }

  /** Overwrites bytes already written (headers whose fields are known only at the end). */
  patch(position: number, bytes: Uint8Array): void {
    try {
      fs.writeSync(this.fd, bytes, 0, bytes.byteLength, position);
    } catch (e) {
      throw writeError(this.path, e);
    }
  }

  /** Finishes the file: it replaces the destination. */
  close(): void {
    try {
      fs.closeSync(this.fd);
      fs.renameSync(this.tmp, this.path);
    } catch (e) {
      this.abort();
      throw writeError(this.path, e);
    }
  }

  /** Drops the partial file. */
  abort(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      // already closed
    }
    try {
      fs.rmSync(this.tmp, { force: true });
    } catch {
      // nothing to remove
    }
  }
}

function writeError(file: string, e: unknown): RwkvError {
  if (e instanceof RwkvError) return e;
  const code = (e as NodeJS.ErrnoException).code;
  return new RwkvError('BAD_ARGUMENT', `cannot write (${code ?? String(e)})`, { file });
}
