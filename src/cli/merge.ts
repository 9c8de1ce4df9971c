// `rwkv merge --model M --lora FILE[:SCALE]... --out OUT [--dtype f32|f16|bf16]`: writes the model with its
// LoRA adapters folded into the weights (W + scale·(α/r)·B·A), in the format of OUT's extension. Without
// --dtype the adapted matrices are f32 and the rest keep their stored type, so the merged file's logits are
// exactly those of `rwkv generate --model M --lora FILE`.
import { writeCheckpoint, type FloatType, type WriteSummary } from '../formats/convert.js';
import { applyLora, readLoraSpecs } from '../formats/lora.js';
import { openCheckpoint } from '../formats/open.js';
import { ArgumentError } from '../errors.js';
import { ggufTokenizerFor, summaryLine } from './convert.js';
import { basename } from './open-model.js';
import { readProgress } from './progress.js';

export interface MergeArgs {
  model: string;
  lora: string[];
  out: string;
  dtype?: FloatType;
}

export async function runMerge(args: MergeArgs): Promise<WriteSummary> {
  if (args.lora.length === 0) throw new ArgumentError('--lora FILE[:SCALE] is required (one or more)');
  const adapters = await readLoraSpecs(args.lora);
  const progress = readProgress(`reading ${basename(args.model)}`);
  const source = await openCheckpoint(args.model, undefined, { onProgress: progress.onProgress }).finally(() => progress.done());
  const merged = applyLora(source, adapters);
  const tokenizer = await ggufTokenizerFor(source, args.model, args.out);
  const summary = writeCheckpoint(merged, args.out, {
    ...(args.dtype !== undefined ? { dtype: args.dtype } : {}),
    ...(tokenizer !== undefined ? { tokenizer } : {}),
    metadata: { merged_lora: adapters.map((a) => `${a.adapter.file}:${a.scale}`).join(',') },
  });
  const targets = adapters.reduce((n, a) => n + a.adapter.pairs.length, 0);
  process.stderr.write(`merged ${adapters.length} adapter(s) into ${targets} matrices\n${summaryLine(args.out, summary)}`);
  return summary;
}
