// The library's top-level module must load outside Node: nothing reachable from dist/src/index.js by static
// imports may import a node: module (or any bare package) statically. Node's modules are imported
// dynamically where a path is read; the Node-only parts (checkpoint writers, training, the CLI) are not
// reachable from it ('rwkv-ts/node', dist/src/node.js, adds the writers).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const srcDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src');

/** Static import specifiers of a compiled ES module (`import … from 'x'`, `export … from 'x'`, `import 'x'`). */
function staticImports(file: string): string[] {
  const code = fs.readFileSync(file, 'utf8');
  const found: string[] = [];
  for (const m of code.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]/gm)) found.push((m[1] ?? m[2])!);
  return found;
}

/** Every module reachable from `entry` by static relative imports, and each static non-relative import among them. */
function graph(entry: string): { modules: string[]; offenders: string[] } {
  const seen = new Set<string>();
  const offenders: string[] = [];
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const spec of staticImports(file)) {
      if (spec.startsWith('.')) visit(path.resolve(path.dirname(file), spec));
      else offenders.push(`${path.relative(path.dirname(entry), file)} imports ${spec}`);
    }
  };
  visit(entry);
  return { modules: [...seen], offenders };
}

test('nothing reachable from src/index.js by static imports imports a node: module (or any package) statically', () => {
  const { modules, offenders } = graph(path.join(srcDir, 'index.js'));
  const rel = modules.map((m) => path.relative(srcDir, m));
  // The walk really covers the library: the formats, the byte sources, the models, the generation API.
  for (const m of ['formats/byte-source.js', 'formats/open.js', 'formats/pth.js', 'models/load.js', 'generation/rwkv.js', 'tokenizers/load.js']) {
    assert.ok(rel.includes(m), `${m} is reachable from index.js`);
  }
  assert.ok(modules.length >= 40, `followed ${modules.length} modules`);
  assert.deepEqual(offenders, []);
});

test('the subpath modules rwkv-ts/engine and rwkv-ts/sampling load outside Node too', () => {
  for (const [entry, must] of [
    ['engine.js', ['kernels/wasm-backend.js', 'kernels/reference-backend.js', 'models/model.js', 'generation/batcher.js']],
    ['sampling.js', ['generation/sampler.js', 'util/rng.js']],
  ] as const) {
    const { modules, offenders } = graph(path.join(srcDir, entry));
    const rel = modules.map((m) => path.relative(srcDir, m));
    for (const m of must) assert.ok(rel.includes(m), `${m} is reachable from ${entry}`);
    assert.deepEqual(offenders, [], entry);
  }
});

test('the check can fail: a static node: import anywhere in the graph is found', () => {
  // The Node entry point reaches the file writer, which imports node:fs statically.
  const node = graph(path.join(srcDir, 'node.js'));
  assert.ok(node.offenders.some((o) => o.includes('writer.js imports node:fs')), node.offenders.join('\n'));
  // And a module two relative imports away from the entry, in a graph of our own.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rwkv-ts-imports-'));
  try {
    fs.writeFileSync(path.join(dir, 'a.js'), "export { b } from './b.js';\nimport './c.js';\n");
    fs.writeFileSync(path.join(dir, 'b.js'), "import {\n  c,\n} from './c.js';\nexport const b = c;\n");
    fs.writeFileSync(path.join(dir, 'c.js'), "import * as fs from 'node:fs';\nexport const c = () => import('node:path');\n");
    const g = graph(path.join(dir, 'a.js'));
    assert.equal(g.modules.length, 3);
    assert.deepEqual(g.offenders, ['c.js imports node:fs']); // the dynamic import('node:path') is allowed
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
