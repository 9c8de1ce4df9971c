// Positioned reads from a file, with the checks every format reader needs: the path exists, is a file,
// and a read past the end is a typed "truncated" error rather than a short buffer.
import * as fs from 'node:fs';
import { FormatError, RwkvError } from '../errors.js';

/** Largest single read; Node refuses buffers over 2 GiB in one call. */
const MAX_READ = 1 << 30;

export class FileReader {
  readonly path: string;
  readonly size: number;
  private fd: number;

  private constructor(path: string, fd: number, size: number) {
    this.path = path;
    this.fd = fd;
    this.size = size;
  }

  static open(path: string): FileReader {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new RwkvError('FILE_NOT_FOUND', 'no such file', { file: path });
      throw new RwkvError('FILE_NOT_FOUND', `cannot open (${code ?? String(e)})`, { file: path });
    }
    if (stat.isDirectory()) throw new RwkvError('NOT_A_FILE', 'is a directory, not a model file', { file: path });
    if (!stat.isFile()) throw new RwkvError('NOT_A_FILE', 'is not a regular file', { file: path });
    let fd: number;
    try {
      fd = fs.openSync(path, 'r');
    } catch (e) {
      throw new RwkvError('FILE_NOT_FOUND', `cannot open (${(e as NodeJS.ErrnoException).code ?? String(e)})`, {
        file: path,
      });
    }
    return new FileReader(path, fd, stat.size);
  }

  /** Fills `target` from byte `position`; `what` names the thing being read for the truncation error. */
  readInto(target: Uint8Array, position: number, what: { tensor?: string; field?: string }): void {
    if (position + target.byteLength > this.size) {
      const field = what.field !== undefined ? `${what.field}: ` : '';
      throw new FormatError(
        'TRUNCATED',
        `${field}file is truncated: needs bytes up to ${position + target.byteLength}, has ${this.size}`,
        { file: this.path, ...(what.tensor !== undefined ? { tensor: what.tensor } : {}) },
      );
    }
    let done = 0;
    while (done < target.byteLength) {
      const n = fs.readSync(this.fd, target, done, Math.min(MAX_READ, target.byteLength - done), position + done);
      if (n <= 0) throw new FormatError('TRUNCATED', 'unexpected end of file', { file: this.path });
      done += n;
    }
  }

  /** Reads `length` bytes at `position` into a fresh buffer. */
  read(position: number, length: number, what: { tensor?: string; field?: string }): Uint8Array {
    const buf = new Uint8Array(length);
    this.readInto(buf, position, what);
    return buf;
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}
