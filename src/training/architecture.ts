// The architectures the trainer trains, in one registry: each says how to shape, build, initialise,
// save and read back its model, and the training loop (train.ts), the checkpoints and the CLI go
// through it. Adding an architecture is one entry in ARCHITECTURES.
import { ArgumentError } from '../errors.js';
import { openCheckpoint } from '../formats/open.js';
import { detectVersion } from '../formats/version.js';
import { isGptCheckpoint } from '../models/gpt-load.js';
import { readInitWeights, saveModel } from './checkpoint.js';
import type { Gemm } from './gemm.js';
import { GptTrain, gptParamShapes, type GptShape } from './gpt.js';
import { readGptWeights, saveGptModel } from './gpt-checkpoint.js';
import { initGpt } from './gpt-init.js';
import { initRwkv4 } from './init.js';
import { Rwkv4Train, rwkv4ParamShapes, type Param, type Rwkv4Shape } from './model.js';
import { initRwkv7 } from './init-v7.js';
import { defaultRwkv7Shape, describeRwkv7Shape, readRwkv7Weights, Rwkv7Train, rwkv7ParamShapes, type Rwkv7Shape } from './rwkv7.js';
import type { Vec } from './ops.js';

/** What every architecture's shape has (saved as JSON with a training state). */
export interface ModelShape {
  readonly nLayer: number;
  readonly nEmbd: number;
  readonly nVocab: number;
}

/** A model the trainer trains: parameters with gradients, a loss over a batch and its backward. */
export interface TrainModel {
  readonly shape: ModelShape;
  /** In the order checkpoints hold them. */
  readonly params: readonly Param[];
  /** Number of parameters. */
  readonly size: number;
  /** FLOPs of the weight products per token of one training step (forward 2·, backward 4· per weight). */
  readonly matmulFlopsPerToken: number;
  param(name: string): Param;
  /**
   * Mean cross-entropy of `targets` given `ids` (b sequences of t tokens, row-major) over the counted targets
   * (a target of −1 carries no loss); keeps what `backward` needs.
   */
  forward(ids: Int32Array, targets: Int32Array, b: number, t: number): number;
  /** Zeroes every gradient, then fills them with ∂loss/∂param of the last `forward`. */
  backward(): void;
  /** The logits of every position (b·t × vocab, a fresh array). */
  logits(ids: Int32Array, b: number, t: number): Vec;
}

/** The run's options a fresh model's shape comes from. */
export interface ShapeRequest {
  layers: number;
  width: number;
  nVocab: number;
  /** Tokens per training window (a GPT's positions). */
  context: number;
  /** Attention heads (GPT); undefined: the architecture's default. */
  heads: number | undefined;
  /** A separate output matrix instead of the tied embedding (GPT). */
  untiedHead: boolean;
}

export interface InitOptions {
  seed: number;
  /** RWKV-4's small embedding init (half-width). */
  embScale: number;
}

// Method syntax (not function-typed properties) on purpose: an Architecture<GptShape, GptTrain> is then an
// Architecture, so the registry holds them all under one type.
export interface Architecture<S extends ModelShape = ModelShape, M extends TrainModel = TrainModel> {
  /** The --arch value. */
  readonly name: string;
  /** For people, e.g. 'RWKV-4'. */
  readonly title: string;
  shapeFor(request: ShapeRequest): S;
  paramShapes(shape: S): { name: string; shape: number[] }[];
  create(shape: S, gemm: Gemm): M;
  init(model: M, options: InitOptions): void;
  /** One line, e.g. '4 layers × 256 (ffn 1024, vocab 256)'. */
  describe(shape: S): string;
  /** An existing model file (--init): its shape and weights under the trainer's names and layout. */
  readWeights(file: string): Promise<{ shape: S; values: Map<string, Float32Array> }>;
  /** Writes the model file `file` (and what goes beside it); returns the paths written. */
  saveModel(model: M, file: string, metadata: Record<string, string>): string[];
}

const RWKV4: Architecture<Rwkv4Shape, Rwkv4Train> = {
  name: 'rwkv4',
  title: 'RWKV-4',
  shapeFor: (r) => ({ nLayer: r.layers, nEmbd: r.width, nVocab: r.nVocab, ffnSize: 4 * r.width }),
  paramShapes: rwkv4ParamShapes,
  create: (shape, gemm) => new Rwkv4Train(shape, gemm),
  init: (model, o) => initRwkv4(model, { seed: o.seed, embScale: o.embScale }),
  describe: (s) => `${s.nLayer} layers × ${s.nEmbd} (ffn ${s.ffnSize}, vocab ${s.nVocab})`,
  readWeights: readInitWeights,
  saveModel: (model, file, metadata) => {
    saveModel(model, file, metadata);
    return [file];
  },
};

/** GPT's default head size: 64, as GPT-2's. */
const GPT_HEAD_SIZE = 64;

const GPT: Architecture<GptShape, GptTrain> = {
  name: 'gpt',
  title: 'GPT',
  shapeFor: (r) => {
    const nHead = r.heads ?? Math.max(1, Math.round(r.width / GPT_HEAD_SIZE));
    if (r.width % nHead !== 0) throw new ArgumentError(`--width ${r.width} is not a multiple of --heads ${nHead}`);
    return { nLayer: r.layers, nEmbd: r.width, nVocab: r.nVocab, nHead, nPositions: r.context, tiedHead: !r.untiedHead };
  },
  paramShapes: gptParamShapes,
  create: (shape, gemm) => new GptTrain(shape, gemm),
  init: (model, o) => initGpt(model, { seed: o.seed }),
  describe: (s) => `${s.nLayer} layers × ${s.nEmbd}, ${s.nHead} heads (mlp ${4 * s.nEmbd}, ${s.nPositions} positions, vocab ${s.nVocab}, ${s.tiedHead ? 'tied' : 'untied'} head)`,
  readWeights: readGptWeights,
  saveModel: saveGptModel,
};

const RWKV7: Architecture<Rwkv7Shape, Rwkv7Train> = {
  name: 'rwkv7',
  title: 'RWKV-7',
  // --heads sets the head size as width / heads; default: head size 64 (or the largest divisor of the width below it).
  shapeFor: (r) =>
    defaultRwkv7Shape({ nLayer: r.layers, nEmbd: r.width, nVocab: r.nVocab, ...(r.heads === undefined ? {} : { headSize: r.width / r.heads }) }),
  paramShapes: rwkv7ParamShapes,
  create: (shape, gemm) => new Rwkv7Train(shape, gemm),
  init: (model, o) => initRwkv7(model, { seed: o.seed, embScale: o.embScale }),
  describe: describeRwkv7Shape,
  readWeights: readRwkv7Weights,
  saveModel: (model, file, metadata) => {
    saveModel(model, file, metadata);
    return [file];
  },
};

export const ARCHITECTURES: Readonly<Record<string, Architecture>> = {
  rwkv4: RWKV4,
  rwkv7: RWKV7,
  gpt: GPT,
};

/**
 * The architecture of an existing model file (for --init without --arch): a GPT-2 checkpoint (config.json
 * beside it), or the RWKV version its tensors show — RWKV-4 and RWKV-7 train; v5 and v6 do not (yet).
 */
export async function architectureOf(file: string): Promise<string> {
  if (isGptCheckpoint(file)) return 'gpt';
  const version = detectVersion(await openCheckpoint(file));
  if (version === '4') return 'rwkv4';
  if (version === '7') return 'rwkv7';
  throw new ArgumentError(`${file} is an RWKV v${version} model; rwkv train trains RWKV-4, RWKV-7 and GPT-2 models (v5 and v6 have no training graph yet)`);
}

/** The architecture named `name` (an --arch value). */
export function architecture(name: string): Architecture {
  const a = Object.hasOwn(ARCHITECTURES, name) ? ARCHITECTURES[name] : undefined;
  if (a === undefined) throw new ArgumentError(`--arch ${name}: unknown architecture (known: ${Object.keys(ARCHITECTURES).join(', ')})`);
  return a;
}
