// The WebGPU backend beside the WebAssembly one, same run, same models: per generated token, where the time
// goes on the host — upload (write/upload: token ids and small inputs going up), dispatch (every other
// backend call: recording compute passes and submitting them) and readback (read: mapping the logits; it
// waits for the GPU to finish the token, so GPU compute time lands here) — and prompt tokens/s.
//   npm run bench:webgpu -- [--tokens 16] [--prompt 64] [--out webgpu.json]
// For WebGPU it also gives generation's bandwidth bound: the weight bytes a token reads (every matrix a
// product used while generating, once, as placed on the device; the embedding's one row left out) over the
// adapter's copy bandwidth (a large buffer-to-buffer copy, timed to a read-back), beside the measured
// ms/token. On a machine without a GPU the adapter is SwiftShader (a CPU Vulkan driver): the numbers prove
// the path runs end to end, not how fast a GPU is, and its bound is only a number.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { defaultModelPath } from '../src/default-model.js';
import { Rwkv } from '../src/generation/rwkv.js';
import type { Backend, DeviceMatrix, MatmulJob } from '../src/kernels/backend.js';
import { createBackend } from '../src/kernels/create-backend.js';
import { gpuEntry } from '../src/kernels/webgpu/webgpu-backend.js';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
if (process.env.VK_ICD_FILENAMES === undefined && fs.existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;

const { values } = parseArgs({ options: { tokens: { type: 'string', default: '16' }, prompt: { type: 'string', default: '64' }, out: { type: 'string' } } });
const TOKENS = Number(values.tokens);
const PROMPT_TOKENS = Number(values.prompt);

interface Row {
  model: string;
  kernels: string;
  uploadMsPerToken: number;
  dispatchMsPerToken: number;
  readbackMsPerToken: number;
  /** Wall time per generated token (sampling and the model's host work included). */
  totalMsPerToken: number;
  promptTokensPerSecond: number;
  /** Bytes of the matrices the products of one generated token read (as placed on the device). */
  weightBytesPerToken: number;
}

const UPLOAD = new Set(['write', 'upload']);
const READBACK = new Set(['read']);
const SETUP = new Set(['allocateBytes', 'matrix', 'tensor', 'view', 'free', 'close']);

/** Wraps the backend's calls in timers (own properties shadowing its methods, so `this` stays the backend). */
function instrument(backend: Backend): { ms: { upload: number; dispatch: number; readback: number }; reset(): void } {
  const ms = { upload: 0, dispatch: 0, readback: 0 };
  let depth = 0;
  const target = backend as unknown as Record<string, unknown>;
  for (let proto = Object.getPrototypeOf(backend) as object | null; proto !== null && proto !== Object.prototype; proto = Object.getPrototypeOf(proto) as object | null) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      const fn = target[name];
      if (name === 'constructor' || SETUP.has(name) || typeof fn !== 'function' || Object.hasOwn(target, name)) continue;
      const bucket = UPLOAD.has(name) ? 'upload' : READBACK.has(name) ? 'readback' : 'dispatch';
      const call = fn as (...args: unknown[]) => unknown;
      target[name] = (...args: unknown[]): unknown => {
        // Only the model's own calls count: the backend's calls to itself would be counted twice.
        if (depth > 0) return call.apply(backend, args);
        const t0 = performance.now();
        depth++;
        let r: unknown;
        try {
          r = call.apply(backend, args);
        } finally {
          depth--;
        }
        // An async call (read, some products) counts until it settles.
        if (r instanceof Promise) return r.finally(() => (ms[bucket] += performance.now() - t0));
        ms[bucket] += performance.now() - t0;
        return r;
      };
    }
  }
  return { ms, reset: () => void Object.assign(ms, { upload: 0, dispatch: 0, readback: 0 }) };
}

/** Records the matrices `matmul` is given while `on` (wrapped over instrument's own wrapper). */
function trackMatrices(backend: Backend): { on: boolean; used: Set<DeviceMatrix> } {
  const tracker = { on: false, used: new Set<DeviceMatrix>() };
  const inner = backend.matmul.bind(backend);
  backend.matmul = (jobs: readonly MatmulJob[]): ReturnType<Backend['matmul']> => {
    if (tracker.on) for (const j of jobs) tracker.used.add(j.m);
    return inner(jobs);
  };
  return tracker;
}

async function measure(modelPath: string, kind: 'webgpu' | 'wasm'): Promise<Row> {
  const backend = await createBackend({ kind });
  try {
    const timers = instrument(backend);
    const matrices = trackMatrices(backend);
    const rwkv = await Rwkv.load(modelPath, { backend, ...(modelPath === defaultModelPath() ? {} : { tokenizer: 'bytes' }) });
    try {
      const prompt = Array.from({ length: PROMPT_TOKENS }, (_, i) => 32 + ((i * 7) % 90)); // ids every vocabulary has
      const warm = rwkv.createState();
      await rwkv.feed(warm, prompt.slice(0, 4), { cache: false }); // shaders compiled, buffers sized
      const state = rwkv.createState();
      let t0 = performance.now();
      await rwkv.feed(state, prompt, { cache: false });
      const promptSeconds = (performance.now() - t0) / 1000;
      timers.reset();
      matrices.on = true;
      t0 = performance.now();
      await rwkv.generate('', { state, maxTokens: TOKENS, seed: 1, cache: false }).text();
      const total = performance.now() - t0;
      matrices.on = false;
      return {
        model: path.basename(modelPath),
        kernels: backend.description,
        uploadMsPerToken: timers.ms.upload / TOKENS,
        dispatchMsPerToken: timers.ms.dispatch / TOKENS,
        readbackMsPerToken: timers.ms.readback / TOKENS,
        totalMsPerToken: total / TOKENS,
        promptTokensPerSecond: PROMPT_TOKENS / promptSeconds,
        weightBytesPerToken: [...matrices.used].reduce((n, m) => n + m.byteLength, 0),
      };
    } finally {
      await rwkv.close();
    }
  } finally {
    await backend.close();
  }
}

/**
 * The adapter's copy bandwidth in bytes/s: a 256 MiB buffer copied into another (less where the adapter's
 * buffers are smaller) REPEATS times in one submission, timed until a read-back of the copy's last word
 * maps; memory traffic counts both the read and the write. A first copy, untimed, warms the buffers.
 */
async function copyBandwidth(): Promise<{ bytesPerSecond: number; bytes: number }> {
  const REPEATS = 8;
  const gpu = await gpuEntry();
  const adapter = await gpu.requestAdapter();
  if (adapter === null) throw new Error('no WebGPU adapter');
  const size = Math.min(256 << 20, adapter.limits.maxBufferSize) & ~3;
  const device = await adapter.requestDevice({ requiredLimits: { maxBufferSize: size } });
  try {
    const src = device.createBuffer({ size, usage: GPUBufferUsage.COPY_SRC });
    const dst = device.createBuffer({ size, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    const copies = async (n: number): Promise<number> => {
      const staging = device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const t0 = performance.now();
      const enc = device.createCommandEncoder();
      for (let i = 0; i < n; i++) enc.copyBufferToBuffer(src, 0, dst, 0, size);
      enc.copyBufferToBuffer(dst, size - 4, staging, 0, 4); // the read-back waits for every copy
      device.queue.submit([enc.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      const ms = performance.now() - t0;
      staging.destroy();
      return ms;
    };
    await copies(1);
    const ms = await copies(REPEATS);
    return { bytesPerSecond: (2 * size * REPEATS) / (ms / 1000), bytes: size };
  } finally {
    device.destroy();
  }
}

const fixtures = process.env.RWKV_FIXTURES ?? path.resolve('..', 'shared', 'fixtures');
const models = [path.join(fixtures, 'converted', 'tiny-rwkv-6v0-1m-FP32.safetensors'), defaultModelPath()].filter((m) => fs.existsSync(m));
const rows: Row[] = [];
for (const model of models) {
  for (const kind of ['wasm', 'webgpu'] as const) {
    try {
      rows.push(await measure(model, kind));
    } catch (e) {
      console.error(`${path.basename(model)} on ${kind}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}
const f = (n: number, d = 2): string => n.toFixed(d).padStart(9);
console.log(`${'model'.padEnd(34)} ${'kernels'.padEnd(34)}   upload  dispatch  readback  ms/token  prompt tok/s`);
for (const r of rows) {
  console.log(`${r.model.padEnd(34)} ${r.kernels.slice(0, 34).padEnd(34)} ${f(r.uploadMsPerToken)} ${f(r.dispatchMsPerToken)} ${f(r.readbackMsPerToken)} ${f(r.totalMsPerToken)} ${f(r.promptTokensPerSecond, 1)}`);
}
// Generation's bandwidth bound on WebGPU: a token cannot take less than its weight bytes over the copy bandwidth.
let bandwidth: { bytesPerSecond: number; bytes: number } | undefined;
try {
  if (rows.some((r) => r.kernels.startsWith('webgpu'))) bandwidth = await copyBandwidth();
} catch (e) {
  console.error(`copy bandwidth: ${e instanceof Error ? e.message : String(e)}`);
}
const bounds = rows
  .filter((r) => r.kernels.startsWith('webgpu') && bandwidth !== undefined)
  .map((r) => {
    const boundMsPerToken = (r.weightBytesPerToken / bandwidth!.bytesPerSecond) * 1000;
    return { model: r.model, weightBytesPerToken: r.weightBytesPerToken, boundMsPerToken, measuredMsPerToken: r.totalMsPerToken, fractionOfBound: boundMsPerToken / r.totalMsPerToken };
  });
if (bandwidth !== undefined) {
  console.log(`\nadapter copy bandwidth ${(bandwidth.bytesPerSecond / 1e9).toFixed(2)} GB/s (read + write, ${bandwidth.bytes >> 20} MiB copies)`);
  console.log(`${'model'.padEnd(34)} weight MB/token  bound ms/token  measured ms/token  bound ÷ measured`);
  for (const b of bounds) console.log(`${b.model.padEnd(34)} ${f(b.weightBytesPerToken / 1e6, 3).padStart(15)} ${f(b.boundMsPerToken, 3).padStart(15)} ${f(b.measuredMsPerToken).padStart(18)} ${f(100 * b.fractionOfBound, 1).padStart(16)}%`);
}
if (values.out !== undefined) {
  const copy = bandwidth === undefined ? undefined : { copyBytesPerSecond: bandwidth.bytesPerSecond, copyBytes: bandwidth.bytes };
  fs.writeFileSync(values.out, `${JSON.stringify({ tokens: TOKENS, promptTokens: PROMPT_TOKENS, rows, bandwidth: copy, bounds }, null, 2)}\n`);
}
