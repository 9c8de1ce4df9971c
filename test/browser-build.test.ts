// The backend's modules must load in a browser: no static import of a node: module anywhere in their
// import graph (Node's modules are imported dynamically, on Node only), and the kernels they fetch exist.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const kernelsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'kernels');

/** Static import specifiers of a compiled ES module (`import … from 'x'`, `export … from 'x'`, `import 'x'`). */
function staticImports(file: string): string[] {
  const code = fs.readFileSync(file, 'utf8');
  const found: string[] = [];
  for (const m of code.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]/gm)) found.push((m[1] ?? m[2])!);
  return found;
}

test('the WebAssembly backend and its worker import no node: module statically (all their imports, transitively)', () => {
  const seen = new Set<string>();
  const offenders: string[] = [];
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const spec of staticImports(file)) {
      if (spec.startsWith('node:') || !spec.startsWith('.')) offenders.push(`${path.relative(kernelsDir, file)} imports ${spec}`);
      else visit(path.resolve(path.dirname(file), spec));
    }
  };
  visit(path.join(kernelsDir, 'wasm-backend.js'));
  visit(path.join(kernelsDir, 'wasm-worker.js'));
  assert.ok(seen.size >= 5, `followed ${seen.size} modules`);
  assert.deepEqual(offenders, []);
  // And the check can fail: a module that does import node:fs statically is caught.
  assert.ok(staticImports(path.join(kernelsDir, '..', 'formats', 'writer.js')).some((s) => s.startsWith('node:')));
});

test('both kernel builds the backend fetches are part of the build', () => {
  for (const name of ['kernels-simd.wasm', 'kernels-relaxed.wasm']) {
    const file = path.join(kernelsDir, '..', '..', 'wasm', name);
    const bytes = fs.readFileSync(file);
    assert.deepEqual([...bytes.subarray(0, 4)], [0x00, 0x61, 0x73, 0x6d], `${name} is a WebAssembly module`);
    // The plain-SIMD build must validate everywhere; the relaxed one needs a runtime with relaxed SIMD.
    if (name === 'kernels-simd.wasm') assert.ok(WebAssembly.validate(bytes), `${name} validates`);
  }
});
