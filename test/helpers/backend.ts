// The fast path the tests run through by default: a WebAssembly backend with $RWKV_TEST_THREADS threads (2).
import { WasmBackend } from '../../src/kernels/wasm-backend.js';

export const TEST_THREADS = Number(process.env.RWKV_TEST_THREADS ?? 2);

let shared: Promise<WasmBackend> | undefined;

/** One backend per test process; its workers do not keep the process alive. */
export function testBackend(): Promise<WasmBackend> {
  shared ??= WasmBackend.create({ threads: TEST_THREADS });
  return shared;
}

let exact: Promise<WasmBackend> | undefined;

/**
 * The same kernels with quantized weights multiplied by exact f32 activations (exactActivations): for tests
 * against references computed on exactly dequantized weights. The default backend quantizes activations
 * as ggml does (activation-quant.ts).
 */
export function exactTestBackend(): Promise<WasmBackend> {
  exact ??= testBackend().then((b) => WasmBackend.over(b.kernels, { exactActivations: true }));
  return exact;
}
