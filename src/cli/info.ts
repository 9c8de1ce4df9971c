// `rwkv info`: what a model file holds; with --check, whether every weight is a finite number.
import { ModelError } from '../errors.js';
import { describeModel, nonFiniteTensors } from '../models/describe.js';
import { openModel, type KernelArgs } from './open-model.js';

export async function runInfo(args: { model: string; check?: boolean } & KernelArgs): Promise<void> {
  const opened = await openModel(args.model, args);
  try {
    process.stdout.write(describeModel(opened.model));
    process.stdout.write(`kernels:           ${opened.kernels}\n`);
    if (args.check === true) check(opened.model.file, opened.model.tensors);
  } finally {
    await opened.close();
  }
}

/** Scans every tensor as stored in the file; exits 1 (through the error) naming each one with NaN/inf. */
function check(file: string, tensors: Parameters<typeof nonFiniteTensors>[0]): void {
  const bad = nonFiniteTensors(tensors);
  if (bad.length === 0) {
    process.stdout.write(`check:             all ${tensors.size} tensors finite\n`);
    return;
  }
  process.stdout.write(`check:             ${bad.length} of ${tensors.size} tensors hold NaN or infinite values:\n`);
  for (const t of bad) {
    const at = coordinates(t.first, tensors.get(t.name)!.shape);
    process.stdout.write(`  ${t.name}: ${t.count} non-finite value(s), the first at index ${t.first}${at}\n`);
  }
  throw new ModelError(
    'NON_FINITE',
    `${bad.length} of ${tensors.size} tensors hold NaN or infinite values (the first: '${bad[0]!.name}'); the file is corrupt`,
    { file },
  );
}

/** ' [row, col]' of a flat index in a tensor of 2 or more dimensions (an embedding's row is a token id). */
function coordinates(index: number, shape: readonly number[]): string {
  if (shape.length < 2) return '';
  const at: number[] = [];
  for (let i = shape.length - 1; i >= 0; i--) {
    at.unshift(index % shape[i]!);
    index = Math.floor(index / shape[i]!);
  }
  return ` [${at.join(', ')}]`;
}
