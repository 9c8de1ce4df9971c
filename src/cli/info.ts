// `rwkv info`: what a model file holds.
import { loadModel } from '../models/load.js';
import { describeModel } from '../models/describe.js';

export function runInfo(args: { model: string }): void {
  const model = loadModel(args.model);
  process.stdout.write(describeModel(model));
}
