// The SIMD attention kernel (asm/attention.ts, dist/wasm/attention-simd[-solo].wasm) instantiated on a
// WasmKernels' memory: a module of its own, so the kernels' module is untouched. Loaded synchronously on
// first use, on Node only (process.getBuiltinModule, no static node: import); elsewhere, or when the file
// is missing or does not link, undefined — and the backend runs the TypeScript attention on the same memory.

export interface AttentionKernel {
  /** asm/attention.ts attendRow: byte addresses into the memory. */
  attendRow(q: number, kc: number, vc: number, out: number, scores: number, visible: number, c: number, heads: number, scale: number): void;
}

const instances = new WeakMap<WebAssembly.Memory, AttentionKernel | null>();

interface NodeFs {
  readFileSync(path: URL): Uint8Array<ArrayBuffer>;
}

function readWasm(name: string): Uint8Array<ArrayBuffer> | undefined {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const fs = proc?.getBuiltinModule?.('node:fs') as NodeFs | undefined;
  if (fs === undefined) return undefined;
  try {
    return fs.readFileSync(new URL(`../../wasm/${name}`, import.meta.url));
  } catch {
    return undefined;
  }
}

/** The kernel on `memory` (one instance per memory), or undefined where it cannot be had. */
export function attentionKernel(memory: WebAssembly.Memory): AttentionKernel | undefined {
  let k = instances.get(memory);
  if (k === undefined) {
    k = null;
    const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
    const bytes = readWasm(shared ? 'attention-simd.wasm' : 'attention-simd-solo.wasm');
    if (bytes !== undefined) {
      try {
        const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } });
        k = instance.exports as unknown as AttentionKernel;
      } catch {
        k = null; // a build that does not link to this memory: the TypeScript path
      }
    }
    instances.set(memory, k);
  }
  return k ?? undefined;
}
