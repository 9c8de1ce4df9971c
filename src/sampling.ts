// 'rwkv-ts/sampling': the pieces `Rwkv.generate` and `Rwkv.score` are made of — token-level generation on
// a model, prompt reading in blocks, ChatRWKV's samplers, stop strings, the seeded generator — for those
// who drive a model themselves.
export { feed, generateTokens, prefill, TokenSampler, validateGenerateOptions, logSoftmaxAt, type GenerateOptions, type GeneratedToken, type ResolvedGenerateOptions } from './generation/generate.js';
export { sample, softmax, samplingWeights, adjustLogits, applyTopP, applyTopK, applyMinP, Penalties, validateSamplerOptions, type SamplerOptions, type ResolvedSamplerOptions } from './generation/sampler.js';
export { StopMatcher } from './generation/stop.js';
export { Rng } from './util/rng.js';
