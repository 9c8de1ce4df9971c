// `rwkv info`: what a model file holds.
import { describeModel } from '../models/describe.js';
import { openModel, type KernelArgs } from './open-model.js';

export async function runInfo(args: { model: string } & KernelArgs): Promise<void> {
  const opened = await openModel(args.model, args);
  try {
    process.stdout.write(describeModel(opened.model));
    process.stdout.write(`kernels:           ${opened.kernels}\n`);
  } finally {
    await opened.close();
  }
}
