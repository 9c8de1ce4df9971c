// Where the model that ships with the package is (models/default/, see its MODEL_CARD.md): found from this
// module's own URL, so it works from a clone and from an installed package alike. Reachable from
// src/index.ts, so no static node: import (test/no-node-imports.test.ts): node:url is reached through
// process.getBuiltinModule (Node ≥ 20.16, inside package.json's engines) only when there is a file to name.

/**
 * The shipped model (RWKV-4, 4 × 256, byte-level) as `Rwkv.load` takes it: its file path on Node; elsewhere
 * (a browser serving the package's files) its URL as a string, which `Rwkv.load` fetches.
 */
export function defaultModelPath(): string {
  // dist/src/default-model.js → the package root
  const url = new URL('../../models/default/model.safetensors', import.meta.url);
  const nodeUrl = url.protocol === 'file:' && typeof process !== 'undefined' ? process.getBuiltinModule?.('node:url') : undefined;
  return nodeUrl ? nodeUrl.fileURLToPath(url) : url.href;
}
