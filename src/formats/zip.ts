// A minimal ZIP reader and writer for PyTorch checkpoints. torch.save stores every record uncompressed
// (method 0), so a record's bytes sit at a computable offset and can be read positionally straight into
// their final buffer. Compressed entries are refused. ZIP64 (archives over 4 GiB) is supported both ways.
//
// Layout (all little-endian): [local header 30 B + name + extra, data]… central directory (46 B + name +
// extra + comment per entry), [ZIP64 end record 56 B, ZIP64 locator 20 B], end record 22 B + comment.
import { FormatError } from '../errors.js';
import { viewOf, type SourceReader } from './source-reader.js';
import type { FileWriter } from './writer.js';

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_END = 0x06054b50;
const SIG_END64 = 0x06064b50;
const SIG_LOCATOR64 = 0x07064b50;
const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;

export interface ZipEntry {
  readonly name: string;
  /** 0 = stored; anything else is compressed. */
  readonly method: number;
  readonly size: number;
  readonly compressedSize: number;
  readonly crc32: number;
  readonly localHeaderOffset: number;
  /** Where the entry's bytes start (computed from its local header). */
  readonly dataOffset: number;
}

function u64(dv: DataView, o: number, file: string, what: string): number {
  const v = dv.getBigUint64(o, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError('BAD_HEADER', `zip: ${what} ${v} is out of range`, { file });
  return Number(v);
}

/** Whether the first bytes are a ZIP local header. */
export function looksLikeZip(head: Uint8Array): boolean {
  return head.byteLength >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04;
}

/** Reads the central directory and each entry's local header; nothing of the entries' data. */
export async function readZipDirectory(reader: SourceReader): Promise<ZipEntry[]> {
  const file = reader.name;
  const bad = (msg: string): FormatError => new FormatError('BAD_HEADER', `zip: ${msg}`, { file });
  if (reader.size < 22) throw new FormatError('TRUNCATED', `zip: file is truncated: ${reader.size} bytes`, { file });
  // The end record is the last 22 bytes plus a comment of up to 65535 bytes.
  const tailLen = Math.min(reader.size, 22 + U16_MAX);
  const tailStart = reader.size - tailLen;
  const tv = viewOf(await reader.read(tailStart, tailLen, { field: 'zip end record' }));
  let endAt = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tv.getUint32(i, true) === SIG_END && i + 22 + tv.getUint16(i + 20, true) <= tailLen) {
      endAt = i;
      break;
    }
  }
  if (endAt < 0) {
    throw new FormatError('TRUNCATED', 'zip: no end-of-central-directory record (the file is truncated or not a zip)', { file });
  }
  let count = tv.getUint16(endAt + 10, true);
  let cdSize = tv.getUint32(endAt + 12, true);
  let cdOffset = tv.getUint32(endAt + 16, true);
  if (count === U16_MAX || cdSize === U32_MAX || cdOffset === U32_MAX) {
    const locAt = tailStart + endAt - 20;
    if (locAt < 0) throw bad('ZIP64 values without a ZIP64 locator');
    const loc = viewOf(await reader.read(locAt, 20, { field: 'zip64 locator' }));
    if (loc.getUint32(0, true) !== SIG_LOCATOR64) throw bad('ZIP64 values without a ZIP64 locator');
    const end64At = u64(loc, 8, file, 'ZIP64 end record offset');
    if (end64At + 56 > reader.size) throw new FormatError('TRUNCATED', 'zip: the ZIP64 end record lies past the end of the file', { file });
    const e64 = viewOf(await reader.read(end64At, 56, { field: 'zip64 end record' }));
    if (e64.getUint32(0, true) !== SIG_END64) throw bad('bad ZIP64 end record signature');
    count = u64(e64, 32, file, 'entry count');
    cdSize = u64(e64, 40, file, 'central directory size');
    cdOffset = u64(e64, 48, file, 'central directory offset');
  }
  if (cdOffset + cdSize > reader.size) {
    throw new FormatError('TRUNCATED', `zip: the central directory needs bytes up to ${cdOffset + cdSize}, the file has ${reader.size}`, { file });
  }
  if (count * 46 > cdSize) throw bad(`${count} entries cannot fit a ${cdSize}-byte central directory`);
  const cd = await reader.read(cdOffset, cdSize, { field: 'zip central directory' });
  const cv = viewOf(cd);
  const names = new TextDecoder('utf-8', { fatal: false });
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdSize || cv.getUint32(p, true) !== SIG_CENTRAL) throw bad(`central directory entry #${i} is malformed`);
    const method = cv.getUint16(p + 10, true);
    const crc32 = cv.getUint32(p + 16, true);
    let compressedSize = cv.getUint32(p + 20, true);
    let size = cv.getUint32(p + 24, true);
    const nameLen = cv.getUint16(p + 28, true);
    const extraLen = cv.getUint16(p + 30, true);
    const commentLen = cv.getUint16(p + 32, true);
    let localHeaderOffset = cv.getUint32(p + 42, true);
    if (p + 46 + nameLen + extraLen + commentLen > cdSize) throw bad(`central directory entry #${i} runs past the directory`);
    const name = names.decode(cd.subarray(p + 46, p + 46 + nameLen));
    // ZIP64 extra field (id 1): 8-byte values for exactly those fields that read 0xFFFFFFFF, in this order.
    let q = p + 46 + nameLen;
    const extraEnd = q + extraLen;
    while (q + 4 <= extraEnd) {
      const id = cv.getUint16(q, true);
      const len = cv.getUint16(q + 2, true);
      if (q + 4 + len > extraEnd) throw bad(`entry '${name}': extra field runs past its end`);
      if (id === 1) {
        let r = q + 4;
        const take = (what: string): number => {
          if (r + 8 > q + 4 + len) throw bad(`entry '${name}': ZIP64 extra field is too short`);
          const v = u64(cv, r, file, what);
          r += 8;
          return v;
        };
        if (size === U32_MAX) size = take('size');
        if (compressedSize === U32_MAX) compressedSize = take('compressed size');
        if (localHeaderOffset === U32_MAX) localHeaderOffset = take('local header offset');
      }
      q += 4 + len;
    }
    p = extraEnd + commentLen;
    if (localHeaderOffset + 30 > reader.size) {
      throw new FormatError('TRUNCATED', `zip: entry '${name}' has its local header past the end of the file`, { file });
    }
    const lh = viewOf(await reader.read(localHeaderOffset, 30, { field: `zip local header of '${name}'` }));
    if (lh.getUint32(0, true) !== SIG_LOCAL) throw bad(`entry '${name}': bad local header signature`);
    const dataOffset = localHeaderOffset + 30 + lh.getUint16(26, true) + lh.getUint16(28, true);
    if (dataOffset + compressedSize > reader.size) {
      throw new FormatError('TRUNCATED', `zip: entry '${name}' needs bytes up to ${dataOffset + compressedSize}, the file has ${reader.size}`, {
        file,
      });
    }
    entries.push({ name, method, size, compressedSize, crc32, localHeaderOffset, dataOffset });
  }
  return entries;
}

/** An entry's bytes must be stored, not compressed, for positional reads. */
export function requireStored(e: ZipEntry, file: string): void {
  if (e.method !== 0 || e.size !== e.compressedSize) {
    throw new FormatError(
      'UNSUPPORTED_VERSION',
      `zip entry '${e.name}' is compressed (method ${e.method}); PyTorch checkpoints store entries uncompressed — re-save it with torch.save`,
      { file },
    );
  }
}

// ---------------------------------------------------------------------------------------------------
// CRC-32 (IEEE, reflected), slicing by 4.

let crcTables: Uint32Array[] | undefined;

function tables(): Uint32Array[] {
  if (crcTables === undefined) {
    const t0 = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      t0[n] = c >>> 0;
    }
    const ts = [t0];
    for (let s = 1; s < 4; s++) {
      const prev = ts[s - 1]!;
      const t = new Uint32Array(256);
      for (let n = 0; n < 256; n++) t[n] = (prev[n]! >>> 8) ^ t0[prev[n]! & 0xff]!;
      ts.push(t);
    }
    crcTables = ts;
  }
  return crcTables;
}

/** CRC-32 of `data`, continuing from `crc` (0 to start). */
export function crc32(data: Uint8Array, crc = 0): number {
  const [t0, t1, t2, t3] = tables() as [Uint32Array, Uint32Array, Uint32Array, Uint32Array];
  let c = ~crc >>> 0;
  let i = 0;
  const n = data.byteLength;
  for (; i + 4 <= n; i += 4) {
    c ^= data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    c = t3[c & 0xff]! ^ t2[(c >>> 8) & 0xff]! ^ t1[(c >>> 16) & 0xff]! ^ t0[c >>> 24]!;
  }
  for (; i < n; i++) c = t0[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

// ---------------------------------------------------------------------------------------------------
// Writer: stored entries, each entry's data aligned (PyTorch aligns records to 64 bytes with a padding
// extra field in the local header, so that they can be memory-mapped).

interface Written {
  name: Uint8Array;
  offset: number;
  size: number;
  crc: number;
}

const DOS_DATE = 0x21; // 1980-01-01

export class ZipWriter {
  private readonly out: FileWriter;
  private readonly alignment: number;
  private readonly entries: Written[] = [];

  constructor(out: FileWriter, alignment = 64) {
    this.out = out;
    this.alignment = alignment;
  }

  /** Adds a stored entry whose bytes are `parts` concatenated. */
  add(name: string, parts: readonly Uint8Array[]): void {
    const nameBytes = new TextEncoder().encode(name);
    let size = 0;
    let crc = 0;
    for (const p of parts) {
      size += p.byteLength;
      crc = crc32(p, crc);
    }
    const offset = this.out.position;
    const zip64 = size >= U32_MAX;
    const z64Len = zip64 ? 20 : 0;
    // Padding extra field ("FB", as PyTorch writes) so that the data starts on an aligned offset.
    const base = offset + 30 + nameBytes.byteLength + z64Len;
    const pad = (this.alignment - ((base + 4) % this.alignment)) % this.alignment;
    const extraLen = z64Len + 4 + pad;
    const h = new Uint8Array(30 + nameBytes.byteLength + extraLen);
    const dv = new DataView(h.buffer);
    dv.setUint32(0, SIG_LOCAL, true);
    dv.setUint16(4, zip64 ? 45 : 20, true);
    dv.setUint16(6, 0x0800, true); // names are UTF-8
    dv.setUint16(8, 0, true);
    dv.setUint16(10, 0, true);
    dv.setUint16(12, DOS_DATE, true);
    dv.setUint32(14, crc, true);
    dv.setUint32(18, zip64 ? U32_MAX : size, true);
    dv.setUint32(22, zip64 ? U32_MAX : size, true);
    dv.setUint16(26, nameBytes.byteLength, true);
    dv.setUint16(28, extraLen, true);
    h.set(nameBytes, 30);
    let q = 30 + nameBytes.byteLength;
    if (zip64) {
      dv.setUint16(q, 1, true);
      dv.setUint16(q + 2, 16, true);
      dv.setBigUint64(q + 4, BigInt(size), true);
      dv.setBigUint64(q + 12, BigInt(size), true);
      q += 20;
    }
    dv.setUint16(q, 0x4246, true);
    dv.setUint16(q + 2, pad, true);
    this.out.write(h);
    for (const p of parts) this.out.write(p);
    this.entries.push({ name: nameBytes, offset, size, crc });
  }

  /** Writes the central directory and end records. */
  finish(): void {
    const cdOffset = this.out.position;
    for (const e of this.entries) {
      const needs64 = e.size >= U32_MAX || e.offset >= U32_MAX;
      const z: bigint[] = [];
      if (e.size >= U32_MAX) z.push(BigInt(e.size), BigInt(e.size));
      if (e.offset >= U32_MAX) z.push(BigInt(e.offset));
      const extraLen = needs64 ? 4 + 8 * z.length : 0;
      const h = new Uint8Array(46 + e.name.byteLength + extraLen);
      const dv = new DataView(h.buffer);
      dv.setUint32(0, SIG_CENTRAL, true);
      dv.setUint16(4, needs64 ? 45 : 20, true);
      dv.setUint16(6, needs64 ? 45 : 20, true);
      dv.setUint16(8, 0x0800, true);
      dv.setUint16(10, 0, true);
      dv.setUint16(14, DOS_DATE, true);
      dv.setUint32(16, e.crc, true);
      dv.setUint32(20, e.size >= U32_MAX ? U32_MAX : e.size, true);
      dv.setUint32(24, e.size >= U32_MAX ? U32_MAX : e.size, true);
      dv.setUint16(28, e.name.byteLength, true);
      dv.setUint16(30, extraLen, true);
      dv.setUint32(42, e.offset >= U32_MAX ? U32_MAX : e.offset, true);
      h.set(e.name, 46);
      if (needs64) {
        let q = 46 + e.name.byteLength;
        dv.setUint16(q, 1, true);
        dv.setUint16(q + 2, 8 * z.length, true);
        q += 4;
        for (const v of z) dv.setBigUint64(q, v, true), (q += 8);
      }
      this.out.write(h);
    }
    const cdSize = this.out.position - cdOffset;
    const count = this.entries.length;
    if (count >= U16_MAX || cdOffset >= U32_MAX || cdSize >= U32_MAX) {
      const end64At = this.out.position;
      const r = new Uint8Array(56 + 20);
      const dv = new DataView(r.buffer);
      dv.setUint32(0, SIG_END64, true);
      dv.setBigUint64(4, 44n, true);
      dv.setUint16(12, 45, true);
      dv.setUint16(14, 45, true);
      dv.setBigUint64(24, BigInt(count), true);
      dv.setBigUint64(32, BigInt(count), true);
      dv.setBigUint64(40, BigInt(cdSize), true);
      dv.setBigUint64(48, BigInt(cdOffset), true);
      dv.setUint32(56, SIG_LOCATOR64, true);
      dv.setBigUint64(64, BigInt(end64At), true);
      dv.setUint32(72, 1, true);
      this.out.write(r);
    }
    const end = new Uint8Array(22);
    const dv = new DataView(end.buffer);
    dv.setUint32(0, SIG_END, true);
    dv.setUint16(8, Math.min(count, U16_MAX), true);
    dv.setUint16(10, Math.min(count, U16_MAX), true);
    dv.setUint32(12, Math.min(cdSize, U32_MAX), true);
    dv.setUint32(16, Math.min(cdOffset, U32_MAX), true);
    this.out.write(end);
  }
}
