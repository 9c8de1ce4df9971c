// The WebGPU backend in tests: on Node it runs on Dawn (the `webgpu` dev dependency), over a real GPU's
// Vulkan driver or, where there is none, Chromium's SwiftShader (a CPU Vulkan driver, shipped with the
// chromium package the browser tests already need). `webgpuUnavailable()` says why no backend can be made
// (undefined: one can); a test file registers its WebGPU tests only then, and otherwise one test that
// skips with the reason — or fails under CI, where the GPU path must be exercised.
import * as fs from 'node:fs';
import { test } from 'node:test';
import { WebGpuBackend } from '../../src/kernels/webgpu/webgpu-backend.js';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

let probed: Promise<string | undefined> | undefined;

/** Why no WebGPU backend can be created here, or undefined when one can (probed once per process). */
export function webgpuUnavailable(): Promise<string | undefined> {
  probed ??= (async () => {
    // Read by the Vulkan loader when Dawn starts: set before the first backend is created.
    if (process.env.VK_ICD_FILENAMES === undefined && fs.existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    try {
      const b = await WebGpuBackend.create();
      await b.close();
      return undefined;
    } catch (e) {
      return e instanceof Error ? e.message : String(e);
    }
  })();
  return probed;
}

/** Registers `register()`'s tests when WebGPU is available; else one test that skips (fails under CI) with the reason. */
export async function whenWebGpu(what: string, register: () => void): Promise<void> {
  const reason = await webgpuUnavailable();
  if (reason === undefined) return register();
  test(`${what}: WebGPU is unavailable`, (t) => {
    if (process.env.CI === 'true') throw new Error(`WebGPU is unavailable under CI: ${reason}`);
    console.log(`# skip: no WebGPU adapter: ${reason}`);
    t.skip(`no WebGPU adapter: ${reason}`);
  });
}
