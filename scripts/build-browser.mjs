// The browser build (part of `npm run build`): ES-module bundles in dist/browser/ that a page imports by
// URL — rwkv.js (the page's API: a Rwkv whose model runs in a worker), rwkv-host.js (that worker: the
// library and its kernels), wasm-worker.js (a kernel thread) — with the kernels' .wasm files copied beside
// them. Each file finds the next by `new URL('./…', import.meta.url)`, so the folder can be served as it is.
import * as esbuild from 'esbuild';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as zlib from 'node:zlib';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist', 'browser');
fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(out, { recursive: true });

await esbuild.build({
  entryPoints: {
    rwkv: path.join(root, 'src/browser/index.ts'),
    'rwkv-host': path.join(root, 'src/browser/rwkv-host.ts'),
    'wasm-worker': path.join(root, 'src/kernels/wasm-worker.ts'),
  },
  outdir: out,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022'],
  minify: true,
  // Error classes are told apart by name across the worker boundary (and in messages).
  keepNames: true,
  sourcemap: true,
  // The .wasm files sit beside the bundles (src/kernels/wasm-platform.ts reads this).
  define: { __RWKV_BUNDLED__: 'true' },
  // Node's modules are imported dynamically on Node only: never reached in a browser.
  external: ['node:*'],
  logLevel: 'warning',
});
for (const name of fs.readdirSync(path.join(root, 'dist', 'wasm'))) {
  if (name.endsWith('.wasm')) fs.copyFileSync(path.join(root, 'dist', 'wasm', name), path.join(out, name));
}

// Sizes, raw and gzip (docs/browser.md reports them).
const sizes = {};
for (const name of fs.readdirSync(out).filter((n) => n.endsWith('.js') || n.endsWith('.wasm')).sort()) {
  const bytes = fs.readFileSync(path.join(out, name));
  sizes[name] = { bytes: bytes.length, gzip: zlib.gzipSync(bytes, { level: 9 }).length };
}
fs.writeFileSync(path.join(out, 'sizes.json'), `${JSON.stringify(sizes, null, 2)}\n`);
