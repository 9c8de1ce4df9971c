// State files: a small header naming the model a state belongs to, the f32 state, the last logits.
// The layout is documented in docs/state-files.md; keep the two in step. No file system here (bytes in,
// bytes out), so this also runs in a browser.
import { StateError } from '../errors.js';
import type { ModelConfig, RwkvVersion } from '../models/config.js';
import type { RwkvModel } from '../models/model.js';
import { State, stateSize } from '../models/state.js';
import { toF32 } from '../models/weights.js';
import { RwkvState, type SamplerSnapshot } from './context.js';

export const STATE_MAGIC = 'RWKVSTAT';
/** 2 adds the sampler record after the logits; version 1 files (without it) are still read. */
export const STATE_FORMAT_VERSION = 2;
const FIXED_HEADER = 68;
const VERSIONS: readonly RwkvVersion[] = ['4', '5.1', '5.2', '6', '7'];

/** What a state file records about its model. */
export interface ModelIdentity {
  version: RwkvVersion;
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  nHead: number;
  headSize: number;
  /** The model file's base name: informative, not checked. */
  name: string;
  /**
   * A few weight values (8 evenly spaced values of each of blocks.0.ln1.weight/.bias,
   * blocks.{L−1}.ln2.weight, ln_out.weight/.bias), as f32. The same model in another precision or
   * quantization matches within FINGERPRINT_TOLERANCE; another model of the same shape does not.
   */
  fingerprint: Float32Array;
}

/** Fingerprint values match when |a − b| ≤ this · max(1, |a|, |b|): covers fp16/bf16 rounding of the vectors. */
export const FINGERPRINT_TOLERANCE = 1e-2;

const FINGERPRINT_SAMPLES = 8;

/** The identity of a loaded model. */
export function modelIdentity(model: Pick<RwkvModel, 'config' | 'tensors' | 'file'>): ModelIdentity {
  const c = model.config;
  const names = ['blocks.0.ln1.weight', 'blocks.0.ln1.bias', `blocks.${c.nLayer - 1}.ln2.weight`, 'ln_out.weight', 'ln_out.bias'];
  const values: number[] = [];
  for (const name of names) {
    const t = model.tensors.get(name);
    if (t === undefined) continue;
    const v = toF32(t);
    for (let i = 0; i < FINGERPRINT_SAMPLES; i++) values.push(v[Math.floor(((i + 0.5) * v.length) / FINGERPRINT_SAMPLES)]!);
  }
  const base = model.file.split(/[\\/]/).pop() ?? model.file;
  return {
    version: c.version,
    nLayer: c.nLayer,
    nEmbd: c.nEmbd,
    nVocab: c.nVocab,
    nHead: c.nHead,
    headSize: c.headSize,
    name: base,
    fingerprint: Float32Array.from(values),
  };
}

function describe(id: Pick<ModelIdentity, 'version' | 'nLayer' | 'nEmbd' | 'nVocab' | 'nHead' | 'headSize'>): string {
  const heads = id.version === '4' ? '' : `, ${id.nHead} heads of ${id.headSize}`;
  return `RWKV v${id.version}, ${id.nLayer} layers, n_embd ${id.nEmbd}${heads}, vocabulary ${id.nVocab}`;
}

/** The bytes of a state file for `ctx`, a state of the model `identity` describes. */
export function encodeStateFile(identity: ModelIdentity, ctx: RwkvState): Uint8Array {
  const name = new TextEncoder().encode(identity.name).subarray(0, 1024);
  const fpBytes = identity.fingerprint.length * 4;
  const header = FIXED_HEADER + fpBytes + align4(name.length);
  const stateFloats = ctx.state.data.length;
  const logitFloats = ctx.logits?.length ?? 0;
  const sampler = ctx.sampler === undefined ? new Uint8Array(0) : new TextEncoder().encode(JSON.stringify(ctx.sampler));
  const out = new Uint8Array(header + 4 * (stateFloats + logitFloats) + 4 + align4(sampler.length));
  const dv = new DataView(out.buffer);
  out.set(new TextEncoder().encode(STATE_MAGIC), 0);
  dv.setUint32(8, STATE_FORMAT_VERSION, true);
  dv.setUint32(12, header, true);
  out.set(new TextEncoder().encode(identity.version), 16);
  dv.setUint32(24, identity.nLayer, true);
  dv.setUint32(28, identity.nEmbd, true);
  dv.setUint32(32, identity.nVocab, true);
  dv.setUint32(36, identity.nHead, true);
  dv.setUint32(40, identity.headSize, true);
  dv.setUint32(44, identity.fingerprint.length, true);
  dv.setUint32(48, stateFloats, true);
  dv.setUint32(52, logitFloats, true);
  dv.setFloat64(56, ctx.tokenCount, true);
  dv.setUint32(64, name.length, true);
  for (let i = 0; i < identity.fingerprint.length; i++) dv.setFloat32(FIXED_HEADER + 4 * i, identity.fingerprint[i]!, true);
  out.set(name, FIXED_HEADER + fpBytes);
  let o = header;
  for (const v of ctx.state.data) {
    dv.setFloat32(o, v, true);
    o += 4;
  }
  for (const v of ctx.logits ?? []) {
    dv.setFloat32(o, v, true);
    o += 4;
  }
  dv.setUint32(o, sampler.length, true);
  out.set(sampler, o + 4);
  return out;
}

/** The header of a state file, read without a model. */
export interface StateFileHeader extends ModelIdentity {
  formatVersion: number;
  headerBytes: number;
  stateFloats: number;
  logitFloats: number;
  tokenCount: number;
  /** Bytes of the sampler record (format 2; 0 when there is none). */
  samplerBytes: number;
}

/** Reads and checks the header of a state file; `source` names it in messages. */
export function readStateFileHeader(bytes: Uint8Array, source = 'state file'): StateFileHeader {
  const bad = (msg: string): StateError => new StateError('BAD_STATE', msg, { file: source });
  if (bytes.length < FIXED_HEADER) {
    throw bad(`is ${bytes.length} bytes, too short for a state file (the header alone is ${FIXED_HEADER})`);
  }
  const magic = new TextDecoder().decode(bytes.subarray(0, 8));
  if (magic !== STATE_MAGIC) throw bad(`not an rwkv-ts state file (magic ${JSON.stringify(magic)}, expected "${STATE_MAGIC}")`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const formatVersion = dv.getUint32(8, true);
  if (formatVersion !== 1 && formatVersion !== STATE_FORMAT_VERSION) {
    throw bad(`state file format version ${formatVersion} is not supported (this build reads versions 1 to ${STATE_FORMAT_VERSION})`);
  }
  const headerBytes = dv.getUint32(12, true);
  const versionText = new TextDecoder().decode(bytes.subarray(16, 24)).replace(/\0+$/, '');
  const version = VERSIONS.find((v) => v === versionText);
  if (version === undefined) throw bad(`names an unknown RWKV version ${JSON.stringify(versionText)}`);
  const u = (o: number): number => dv.getUint32(o, true);
  const fpCount = u(44);
  const nameLength = u(64);
  const stateFloats = u(48);
  const logitFloats = u(52);
  const tokenCount = dv.getFloat64(56, true);
  if (headerBytes % 4 !== 0 || headerBytes < FIXED_HEADER + 4 * fpCount + nameLength || headerBytes > bytes.length) {
    throw bad(`has a bad header size (${headerBytes} bytes)`);
  }
  const data = headerBytes + 4 * (stateFloats + logitFloats);
  const samplerBytes = formatVersion >= 2 && bytes.length >= data + 4 ? dv.getUint32(data, true) : 0;
  const expected = formatVersion >= 2 ? data + 4 + align4(samplerBytes) : data;
  if (bytes.length !== expected) {
    throw bad(`is ${bytes.length} bytes but its header announces ${expected} (truncated or corrupt)`);
  }
  const fingerprint = new Float32Array(fpCount);
  for (let i = 0; i < fpCount; i++) fingerprint[i] = dv.getFloat32(FIXED_HEADER + 4 * i, true);
  const name = new TextDecoder().decode(bytes.subarray(FIXED_HEADER + 4 * fpCount, FIXED_HEADER + 4 * fpCount + nameLength));
  return {
    formatVersion,
    headerBytes,
    version,
    nLayer: u(24),
    nEmbd: u(28),
    nVocab: u(32),
    nHead: u(36),
    headSize: u(40),
    name,
    fingerprint,
    stateFloats,
    logitFloats,
    tokenCount,
    samplerBytes,
  };
}

/**
 * Reads a state file for the model `identity` describes (with `config`, its configuration). Refuses, naming
 * both models, a state of another shape or of another model of the same shape.
 */
export function decodeStateFile(bytes: Uint8Array, identity: ModelIdentity, config: ModelConfig, source = 'state file'): RwkvState {
  const h = readStateFileHeader(bytes, source);
  const saved = `it belongs to ${describe(h)}${h.name !== '' ? ` ('${h.name}')` : ''}`;
  const mine = `this model is ${describe(identity)}${identity.name !== '' ? ` ('${identity.name}')` : ''}`;
  const shapeMatches =
    h.version === identity.version &&
    h.nLayer === identity.nLayer &&
    h.nEmbd === identity.nEmbd &&
    h.nVocab === identity.nVocab &&
    h.nHead === identity.nHead &&
    h.headSize === identity.headSize;
  if (!shapeMatches) throw new StateError('BAD_STATE', `${saved}; ${mine}`, { file: source });
  if (!fingerprintsMatch(h.fingerprint, identity.fingerprint)) {
    throw new StateError('BAD_STATE', `${saved}: a model of the same shape but other weights than this one ('${identity.name}')`, {
      file: source,
    });
  }
  if (h.stateFloats !== stateSize(config)) {
    throw new StateError('BAD_STATE', `holds ${h.stateFloats} state floats; this model's state has ${stateSize(config)}`, { file: source });
  }
  if (h.logitFloats !== 0 && h.logitFloats !== config.nVocab) {
    throw new StateError('BAD_STATE', `holds ${h.logitFloats} logits; this model has ${config.nVocab}`, { file: source });
  }
  const payload = bytes.subarray(h.headerBytes);
  const state = State.fromBytes(config, payload.subarray(0, 4 * h.stateFloats), source);
  let logits: Float32Array | undefined;
  if (h.logitFloats > 0) {
    logits = new Float32Array(h.logitFloats);
    new Uint8Array(logits.buffer).set(payload.subarray(4 * h.stateFloats, 4 * (h.stateFloats + h.logitFloats)));
    for (let i = 0; i < logits.length; i++) {
      if (Number.isNaN(logits[i]!)) throw new StateError('BAD_STATE', `holds a NaN logit (token ${i})`, { file: source });
    }
  }
  const ctx = RwkvState.from(state, logits, h.tokenCount);
  if (h.samplerBytes > 0) {
    const at = h.headerBytes + 4 * (h.stateFloats + h.logitFloats) + 4;
    ctx.sampler = parseSampler(bytes.subarray(at, at + h.samplerBytes), config.nVocab, source);
  }
  return ctx;
}

/** The sampler record: JSON {seed, rng: four u32 words, counts: [[id, count], …]}, checked field by field. */
function parseSampler(bytes: Uint8Array, nVocab: number, source: string): SamplerSnapshot {
  const bad = (what: string): StateError => new StateError('BAD_STATE', `has a bad sampler record: ${what}`, { file: source });
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw bad('not JSON');
  }
  const r = v as Partial<SamplerSnapshot> | null;
  const u32 = (x: unknown): boolean => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= 0xffffffff;
  if (r === null || typeof r !== 'object' || !u32(r.seed)) throw bad('seed');
  if (!Array.isArray(r.rng) || r.rng.length !== 4 || !r.rng.every(u32)) throw bad('rng');
  const counts = r.counts;
  if (
    !Array.isArray(counts) ||
    !counts.every((e) => Array.isArray(e) && e.length === 2 && Number.isInteger(e[0]) && e[0] >= 0 && e[0] < nVocab && Number.isFinite(e[1]))
  ) {
    throw bad('counts');
  }
  return { seed: r.seed!, rng: [r.rng[0]!, r.rng[1]!, r.rng[2]!, r.rng[3]!], counts: counts.map(([id, c]) => [id, c]) };
}

function fingerprintsMatch(a: Float32Array, b: Float32Array): boolean {
  if (a.length === 0 || b.length === 0) return true; // a model without these tensors: shape checks only
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (!(Math.abs(x - y) <= FINGERPRINT_TOLERANCE * Math.max(1, Math.abs(x), Math.abs(y)))) return false;
  }
  return true;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}
