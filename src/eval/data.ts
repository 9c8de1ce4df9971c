// Reading the evaluation sets: from a directory laid out as shared/data/README.md describes (Node), or
// through a function that returns a file's bytes (anywhere). Every problem with a file is one EvalDataError
// naming the file and, for a bad record, its line. Nothing here imports a node: module statically.
import { RwkvError } from '../errors.js';

/** A data file that is missing, unreadable or holds a malformed record; the message names file and line. */
export class EvalDataError extends RwkvError {
  /** 1-based line of the bad record, when there is one. */
  readonly line: number | undefined;

  constructor(message: string, file: string, line?: number, code: 'BAD_DATA' | 'FILE_NOT_FOUND' = 'BAD_DATA') {
    super(code, message, { file: line === undefined ? file : `${file}:${line}` });
    this.line = line;
  }
}

/** Returns the bytes of `file` (a path relative to the data directory, e.g. 'piqa/valid.jsonl'). */
export type DataReader = (file: string) => Promise<Uint8Array>;

/** A data directory (Node), or a reader. */
export type DataSource = string | DataReader;

/** Reads files of a data source, naming each one in errors by the path the user will recognise. */
export class DataFiles {
  private readonly source: DataSource;

  constructor(source: DataSource) {
    this.source = source;
  }

  /** What a file is called in messages: its path under the directory, or its name for a reader. */
  async where(file: string): Promise<string> {
    if (typeof this.source !== 'string') return file;
    const path = await import('node:path');
    return path.join(this.source, file);
  }

  async bytes(file: string): Promise<Uint8Array> {
    if (typeof this.source !== 'string') {
      try {
        return await this.source(file);
      } catch (e) {
        if (e instanceof RwkvError) throw e;
        throw new EvalDataError(`cannot read the data file (${e instanceof Error ? e.message : String(e)})`, file, undefined, 'FILE_NOT_FOUND');
      }
    }
    const fs = await import('node:fs');
    const where = await this.where(file);
    try {
      return await fs.promises.readFile(where);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why =
        code === 'ENOENT'
          ? `no such data file (give the directory laid out as shared/data/README.md with --data DIR or RWKV_DATA)`
          : code === 'EISDIR'
            ? 'is a directory, not a data file'
            : `cannot read the data file (${code ?? String(e)})`;
      throw new EvalDataError(why, where, undefined, 'FILE_NOT_FOUND');
    }
  }

  /** The file as UTF-8 text; `.bz2` files are decompressed first. */
  async text(file: string): Promise<string> {
    let data = await this.bytes(file);
    if (file.endsWith('.bz2')) data = await bunzip2(data, await this.where(file));
    try {
      return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(data);
    } catch {
      throw new EvalDataError('not valid UTF-8 text', await this.where(file));
    }
  }

  /** The lines of a text file, without the empty piece after a final newline. */
  async lines(file: string): Promise<string[]> {
    const lines = (await this.text(file)).split('\n');
    if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
    return lines;
  }

  /**
   * The records of a JSON Lines file (the first `limit`), each an object, with its 1-based line (blank
   * lines are skipped).
   * A line that is not a JSON object is an EvalDataError naming file and line.
   */
  async jsonl(file: string, limit = Infinity): Promise<{ record: Record<string, unknown>; line: number }[]> {
    const where = await this.where(file);
    const out: { record: Record<string, unknown>; line: number }[] = [];
    const lines = await this.lines(file);
    for (let i = 0; i < lines.length && out.length < limit; i++) {
      const text = lines[i]!.replace(/\r$/, '');
      if (text.trim() === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (e) {
        throw new EvalDataError(`not a JSON record (${e instanceof Error ? e.message : String(e)})`, where, i + 1);
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw new EvalDataError('a record must be a JSON object', where, i + 1);
      }
      out.push({ record: value as Record<string, unknown>, line: i + 1 });
    }
    return out;
  }
}

/** bzip2 decompression (npm seek-bzip, loaded when a .bz2 file is read). */
async function bunzip2(data: Uint8Array, where: string): Promise<Uint8Array> {
  const { default: Bunzip } = await import('seek-bzip');
  try {
    return Bunzip.decode(data);
  } catch (e) {
    throw new EvalDataError(`not a valid bzip2 file (${e instanceof Error ? e.message : String(e)})`, where);
  }
}

/** Field `name` of a record as a string, or an EvalDataError naming file, line and field. */
export function stringField(record: Record<string, unknown>, name: string, where: string, line: number): string {
  const v = record[name];
  if (typeof v !== 'string') throw new EvalDataError(`field "${name}" must be a string`, where, line);
  return v;
}

/** Field `name` as a non-empty array of strings. */
export function stringsField(record: Record<string, unknown>, name: string, where: string, line: number): string[] {
  const v = record[name];
  if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'string')) {
    throw new EvalDataError(`field "${name}" must be a non-empty array of strings`, where, line);
  }
  return v as string[];
}

/** Field `name` as an integer index into `count` choices. */
export function indexField(record: Record<string, unknown>, name: string, count: number, where: string, line: number): number {
  const v = record[name];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= count) {
    throw new EvalDataError(`field "${name}" must be an integer from 0 to ${count - 1}`, where, line);
  }
  return v;
}
