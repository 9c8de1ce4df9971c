// `rwkv quantize --in X --out Y --type Q4_0|Q4_1|Q5_0|Q5_1|Q8_0`: quantizes the tensors rwkv.cpp's
// quantizer would (byte-identical to its output for rwkv.cpp .bin files) and writes an rwkv.cpp .bin or a
// GGUF file (by Y's extension). `--type Q2_K|Q3_K_S|…|Q6_K`: llama-quantize's K-quant mixes, GGUF only,
// each tensor in the type llama-quantize picks and with its bytes.
import { ArgumentError } from '../errors.js';
import { outputFormatOf, writeCheckpoint, type WriteSummary } from '../formats/convert.js';
import { openCheckpoint } from '../formats/open.js';
import { basename } from './open-model.js';
import { readProgress } from './progress.js';
import { isQuantType, QUANT_TYPES } from '../kernels/quantize.js';
import { ggufTokenizerFor, summaryLine } from './convert.js';
import { kQuantMixOf, unknownTypeError } from '../formats/kquant-mix.js';

export interface QuantizeArgs {
  in: string;
  out: string;
  type: string;
}

export async function runQuantize(args: QuantizeArgs): Promise<WriteSummary> {
  const type = args.type.toLowerCase();
  const mix = kQuantMixOf(type);
  if (!isQuantType(type) && mix === undefined) throw unknownTypeError(args.type, QUANT_TYPES);
  const format = outputFormatOf(args.out);
  if (mix !== undefined && format !== 'gguf') {
    // rwkv.cpp's loader has no K-quants; llama.cpp's GGUF is their format.
    throw new ArgumentError(
      `K-quant types (${args.type.toUpperCase()}) are written as .gguf only, not ${format} ('${args.out}')` +
        (format === 'rwkv.cpp' ? `; for rwkv.cpp use ${QUANT_TYPES.map((q) => q.toUpperCase()).join(', ')}` : ''),
    );
  }
  if (format !== 'rwkv.cpp' && format !== 'gguf') {
    throw new ArgumentError(`quantized models are written as rwkv.cpp .bin or .gguf, not ${format} ('${args.out}')`);
  }
  const progress = readProgress(`reading ${basename(args.in)}`);
  const source = await openCheckpoint(args.in, undefined, { onProgress: progress.onProgress }).finally(() => progress.done());
  // Quantizing values that were already rounded to a coarser grid compounds the two errors.
  const quantized = [...source.tensors.values()].filter((t) => /^q\d/.test(t.dtype));
  if (quantized.length > 0) {
    process.stderr.write(
      `rwkv quantize: warning: ${args.in} is already quantized (${quantized.length} tensors, e.g. ${quantized[0]!.name} in ${quantized[0]!.dtype.toUpperCase()}); ` +
        'quantizing it again loses more quality than quantizing the float model once\n',
    );
  }
  const tokenizer = await ggufTokenizerFor(source, args.in, args.out);
  const how = mix !== undefined ? { kquant: mix } : isQuantType(type) ? { quantize: type } : {};
  const summary = writeCheckpoint(source, args.out, { ...how, format, ...(tokenizer !== undefined ? { tokenizer } : {}) });
  process.stderr.write(summaryLine(args.out, summary));
  return summary;
}
