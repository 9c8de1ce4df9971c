// GPT-2's initialisation (as Hugging Face's GPT2PreTrainedModel._init_weights and nanoGPT set it):
// every matrix and both embeddings normal(0, 0.02); the projections into the residual stream
// (attn.c_proj, mlp.c_proj) normal(0, 0.02/√(2L)), so that the residual's variance does not grow with
// depth; biases zero; LayerNorms weight 1, bias 0.
import { Rng } from '../util/rng.js';
import type { GptTrain } from './gpt.js';
import { normal } from './init.js';

export const GPT_INIT_STD = 0.02;

export function initGpt(model: GptTrain, options: { seed: number }): void {
  const rng = new Rng(options.seed);
  const residual = GPT_INIT_STD / Math.sqrt(2 * model.shape.nLayer);
  for (const p of model.params) {
    const d = p.data;
    if (/\.ln_\d\.weight$|^ln_f\.weight$/.test(p.name)) d.fill(1);
    else if (p.name.endsWith('.bias')) d.fill(0);
    else if (p.shape.length === 2) {
      const std = /\.c_proj\.weight$/.test(p.name) ? residual : GPT_INIT_STD;
      for (let i = 0; i < d.length; i++) d[i] = std * normal(rng);
    } else throw new Error(`internal: no init rule for ${p.name}`);
  }
}
