// Writes the bench's random model as an rwkv.cpp file (its own process, so that the bench's memory stays
// its own): the same weights bench/run-one.ts builds in memory (randomSource, seed 1), stored the way
// rwkv.cpp's converter and quantizer store them (f32/f16 everywhere, or ggml blocks for the matrices
// rwkv.cpp quantizes with the embedding and head kept f32).
//   node dist/bench/write-random.js --model 169m|v7-0.1b --dtype f32|f16|q8_0|q5_1|q4_0… --out FILE.bin
import { parseArgs } from 'node:util';
import { writeCheckpoint } from '../src/formats/convert.js';
import { isQuantType } from '../src/kernels/quantize.js';
import { randomSource, RWKV4_169M, RWKV7_0B1 } from '../src/models/random.js';

/** The dtypes an rwkv.cpp file can hold (bf16 and int8 cannot be written as such). */
const FILE_DTYPES = new Set(['f32', 'f16', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q8_0']);

function main(): void {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: '169m' },
      dtype: { type: 'string', default: 'f32' },
      out: { type: 'string' },
    },
  });
  const dtype = values.dtype!;
  if (values.out === undefined) throw new Error('--out FILE.bin is required');
  if (!FILE_DTYPES.has(dtype)) throw new Error(`an rwkv.cpp file cannot hold ${dtype}`);
  const shape = values.model === 'v7-0.1b' ? RWKV7_0B1 : RWKV4_169M;
  const source = randomSource(shape, { dtype: 'f32' });
  writeCheckpoint(source, values.out, isQuantType(dtype) ? { quantize: dtype } : { dtype: dtype as 'f32' | 'f16' });
}

main();
