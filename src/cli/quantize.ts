// `rwkv quantize --in X --out Y --type Q4_0|Q4_1|Q5_0|Q5_1|Q8_0`: quantizes the tensors rwkv.cpp's
// quantizer would (byte-identical to its output for rwkv.cpp .bin files) and writes an rwkv.cpp .bin or a
// GGUF file (by Y's extension).
import { ArgumentError } from '../errors.js';
import { outputFormatOf, writeCheckpoint, type WriteSummary } from '../formats/convert.js';
import { openCheckpoint } from '../formats/open.js';
import { basename } from './open-model.js';
import { readProgress } from './progress.js';
import { isQuantType, QUANT_TYPES } from '../kernels/quantize.js';
import { ggufTokenizerFor, summaryLine } from './convert.js';

export interface QuantizeArgs {
  in: string;
  out: string;
  type: string;
}

export async function runQuantize(args: QuantizeArgs): Promise<WriteSummary> {
  const type = args.type.toLowerCase();
  if (!isQuantType(type)) {
    throw new ArgumentError(`--type must be one of ${QUANT_TYPES.map((q) => q.toUpperCase()).join(', ')}, got '${args.type}'`);
  }
  const format = outputFormatOf(args.out);
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
  const summary = writeCheckpoint(source, args.out, { quantize: type, format, ...(tokenizer !== undefined ? { tokenizer } : {}) });
  process.stderr.write(summaryLine(args.out, summary));
  return summary;
}
