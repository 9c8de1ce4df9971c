// Turns named tensors into a model: detects the RWKV version from tensor names and shapes, infers the
// sizes, checks them against what the container declares, and builds that version's blocks.
import { ModelError } from '../errors.js';
import type { ByteSourceInput } from '../formats/byte-source.js';
import { applyLora, type LoraAdapterFile } from '../formats/lora.js';
import { openCheckpoint } from '../formats/open.js';
import type { ReadOptions } from '../formats/source-reader.js';
import type { TensorSource } from '../formats/tensor-source.js';
import { toEncoding } from '../formats/transform.js';
import { detectVersion } from '../formats/version.js';
import type { Backend } from '../kernels/backend.js';
import { ReferenceBackend } from '../kernels/reference-backend.js';
import { shapeString, elementCount } from '../tensor/tensor.js';
import type { ModelConfig, RwkvVersion } from './config.js';
import type { RwkvModel } from './model.js';
import { buildV4 } from './v4.js';
import { buildV5 } from './v5.js';
import { buildV6 } from './v6.js';
import { buildV7 } from './v7.js';
import { Weights } from './weights.js';

export interface LoadOptions extends ReadOptions {
  /**
   * The backend the model runs on (from createBackend): weights are read straight into its memory.
   * Default: a ReferenceBackend (plain TypeScript).
   */
  backend?: Backend;
  /**
   * Opt-in, lossy: re-encode the big matrices as int8 rows (one scale per row) and round activations to
   * int16 inside the products — about 2× fewer bytes per token than f16. The file's weights are read
   * into plain memory first and the int8 copy goes to the backend's memory.
   */
  int8?: boolean;
  /**
   * LoRA adapters applied at load (formats/lora.ts): each adapted matrix becomes f32 W + scale·(α/r)·B·A.
   * Read with `readLoraSpecs` (Node: adapter files by path).
   */
  lora?: readonly { adapter: LoraAdapterFile; scale: number }[];
}

/**
 * Loads a model of any supported format and version from a path, a URL, a Blob or File, an ArrayBuffer,
 * a Uint8Array or a ByteSource. The weights are read straight into the backend's memory;
 * `options.onProgress` hears how many bytes of the source have been read.
 */
export async function loadModel(source: ByteSourceInput, options: LoadOptions = {}): Promise<RwkvModel> {
  const { backend: given, int8: lossy, lora, ...read } = options;
  const backend = given ?? new ReferenceBackend();
  const int8 = lossy === true;
  const allocate = int8 ? (n: number) => new Uint8Array(n) : (n: number) => backend.allocateBytes(n);
  const opened = await openCheckpoint(source, allocate, read);
  return modelFromSource(lora !== undefined && lora.length > 0 ? applyLora(opened, lora) : opened, backend, int8);
}

/** Layers are blocks.0 … blocks.(n−1), each with an ln1; a gap is a missing tensor, not fewer layers. */
function countLayers(source: TensorSource): number {
  let n = 0;
  while (source.tensors.has(`blocks.${n}.ln1.weight`)) n++;
  let highest = -1;
  for (const name of source.tensors.keys()) {
    const m = /^blocks\.(\d+)\./.exec(name);
    if (m !== null) highest = Math.max(highest, Number(m[1]));
  }
  if (n === 0 || highest >= n) {
    throw new ModelError('MISSING_TENSOR', 'is missing', { file: source.file, tensor: `blocks.${n}.ln1.weight` });
  }
  return n;
}

/** Infers sizes from shapes and checks them against the container's declared values. */
export function inferConfig(source: TensorSource, version: RwkvVersion): ModelConfig {
  const file = source.file;
  const emb = source.tensors.get('emb.weight')!;
  if (emb.shape.length !== 2) {
    throw new ModelError('BAD_SHAPE', `has shape ${shapeString(emb.shape)}, expected [n_vocab, n_embd]`, {
      file,
      tensor: 'emb.weight',
    });
  }
  const [nVocab, nEmbd] = emb.shape as [number, number];
  const nLayer = countLayers(source);
  const d = source.declared;
  const mismatch = (field: string, declared: number, found: number, how: string): ModelError =>
    new ModelError('BAD_SHAPE', `the header says ${field} = ${declared} but ${how} gives ${found}`, {
      file,
      tensor: 'emb.weight',
    });
  if (d.nEmbd !== undefined && d.nEmbd !== nEmbd) throw mismatch('n_embd', d.nEmbd, nEmbd, 'emb.weight');
  if (d.nVocab !== undefined && d.nVocab !== nVocab) throw mismatch('n_vocab', d.nVocab, nVocab, 'emb.weight');
  if (d.nLayer !== undefined && d.nLayer !== nLayer) {
    throw new ModelError('BAD_SHAPE', `the header says n_layer = ${d.nLayer} but the file has ${nLayer} layers`, {
      file,
      tensor: `blocks.${Math.min(d.nLayer, nLayer)}.ln1.weight`,
    });
  }
  const ffnKey = source.tensors.get('blocks.0.ffn.key.weight');
  if (ffnKey === undefined) {
    throw new ModelError('MISSING_TENSOR', 'is missing from the model', { file, tensor: 'blocks.0.ffn.key.weight' });
  }
  const ffnSize = ffnKey.shape[0]!;
  const { nHead, headSize } = headsOf(source, version, nEmbd);
  return { version, nLayer, nEmbd, nVocab, nHead, headSize, ffnSize };
}

/** Heads: v4 has none; v5.1 counts them by time_decay (one per head); v5.2/v6 by time_faaaa's first dim; v7 by r_k's. */
function headsOf(source: TensorSource, version: RwkvVersion, c: number): { nHead: number; headSize: number } {
  if (version === '4') return { nHead: 1, headSize: 1 };
  const name =
    version === '5.1' ? 'blocks.0.att.time_decay' : version === '7' ? 'blocks.0.att.r_k' : 'blocks.0.att.time_faaaa';
  const t = source.tensors.get(name);
  if (t === undefined) throw new ModelError('MISSING_TENSOR', 'is missing from the model', { file: source.file, tensor: name });
  const nHead = version === '5.1' ? elementCount(t.shape) : t.shape[0]!;
  if (nHead <= 0 || c % nHead !== 0 || (version !== '5.1' && elementCount(t.shape) !== c)) {
    throw new ModelError('BAD_SHAPE', `has shape ${shapeString(t.shape)}, which does not split n_embd ${c} into heads`, {
      file: source.file,
      tensor: name,
    });
  }
  return { nHead, headSize: c / nHead };
}

/**
 * Builds a model from named tensors. The source is first brought into the one in-memory convention the
 * version files read (rwkv.cpp's parameter encoding — docs/architecture.md lists it per tensor kind):
 * official checkpoints have their few small transformed parameters converted here, once.
 */
export function modelFromSource(source: TensorSource, backend: Backend = new ReferenceBackend(), int8 = false): RwkvModel {
  if (source.tensors.has('wte.weight') || source.tensors.has('transformer.wte.weight')) {
    // GPT-2 names: its sizes and options are in config.json (models/gpt-load.ts), which is not beside it.
    throw new ModelError('UNKNOWN_MODEL', 'holds GPT-2 tensors (wte.weight) but no config.json was found beside it: a GPT-2 checkpoint needs its config.json', {
      file: source.file,
    });
  }
  const version = detectVersion(source);
  const config = inferConfig(source, version);
  const w = new Weights(toEncoding(source, 'rwkvcpp'), backend, int8, source);
  switch (version) {
    case '4':
      return buildV4(w, config);
    case '5.1':
    case '5.2':
      return buildV5(w, config);
    case '6':
      return buildV6(w, config);
    case '7':
      return buildV7(w, config);
  }
}
