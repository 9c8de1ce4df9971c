// What the npm package holds and how it is entered: the tarball ships what users run (no source maps for
// sources it lacks, no training log), a LICENSE, a build in prepack rather than prepare, and an installed
// copy outside the repository finds its shipped model, imports, and require()s or says why it cannot.
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { defaultModelPath } from '../src/index.js';
import { DEFAULT_MODEL } from '../src/cli/default-model.js';
import { REPO_ROOT } from './helpers/fixtures.js';

const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as {
  license: string;
  engines: { node: string };
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
};
const SHIPPED_MODEL = path.join(REPO_ROOT, 'models', 'default', 'model.safetensors');

function run(cmd: string, args: string[], cwd: string): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 60_000 });
}

/** The tarball's file list, from the current build (--ignore-scripts: no prepack rebuild of a shared dist/). */
function packedFiles(): string[] {
  const r = run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], REPO_ROOT);
  assert.equal(r.status, 0, r.stderr);
  return (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
}

test('npm pack ships what users run: no source maps, no training log or loss plot, no dist/test or dist/bench', () => {
  const files = packedFiles();
  for (const f of ['LICENSE', 'package.json', 'README.md', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/node.js', 'dist/src/cli/main.js', 'dist/src/default-model.js', 'src/require-entry.cjs', 'dist/wasm/kernels-simd.wasm', 'dist/wasm/kernels-relaxed.wasm', 'models/default/model.safetensors', 'models/default/MODEL_CARD.md']) {
    assert.ok(files.includes(f), `${f} is packed`);
  }
  assert.deepEqual(files.filter((f) => f.endsWith('.map')), []);
  assert.deepEqual(files.filter((f) => /training-log\.jsonl|loss\.svg/.test(f)), []);
  assert.deepEqual(files.filter((f) => f.startsWith('dist/test/') || f.startsWith('dist/bench/')), []);
  assert.deepEqual(files.filter((f) => f.startsWith('src/') && f !== 'src/require-entry.cjs'), [], 'no TypeScript sources');
});

test('the LICENSE file is the MIT licence package.json names', () => {
  assert.equal(pkg.license, 'MIT');
  const text = fs.readFileSync(path.join(REPO_ROOT, 'LICENSE'), 'utf8');
  assert.match(text, /^MIT License\n\nCopyright \(c\) 2026 the rwkv-ts authors\n/);
  assert.match(text, /THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND/);
});

test('the build runs in prepack, not prepare (no scripts on install; npm test builds for itself)', () => {
  assert.equal(pkg.scripts.prepare, undefined);
  assert.match(pkg.scripts.prepack ?? '', /tsc -p tsconfig\.json.*build:wasm/);
  assert.match(pkg.scripts.test!, /^npm run build && /);
});

test('engines names the Node versions that can both import and require() the package', () => {
  assert.equal(pkg.engines.node, '^20.19.0 || >=22.12.0');
});

test('defaultModelPath() names the shipped model, and the CLI default is the same file', () => {
  assert.equal(defaultModelPath(), SHIPPED_MODEL);
  assert.equal(DEFAULT_MODEL, SHIPPED_MODEL);
});

test('packed and installed outside the repository: import finds and runs the shipped model; require() works or says why not', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rwkv-ts-pack-'));
  try {
    const packed = run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', tmp], REPO_ROOT);
    assert.equal(packed.status, 0, packed.stderr);
    const tarball = path.join(tmp, (JSON.parse(packed.stdout) as { filename: string }[])[0]!.filename);
    // The app's node_modules as npm would lay it out: the tarball's contents, and the package's dependencies
    // linked from the repository's (the registry may be unreachable, and the npm cache may lack them).
    const app = path.join(tmp, 'app');
    const installed = path.join(app, 'node_modules', 'rwkv-ts');
    fs.mkdirSync(installed, { recursive: true });
    fs.writeFileSync(path.join(app, 'package.json'), '{ "name": "app", "private": true, "type": "module" }\n');
    const untar = run('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1'], tmp);
    assert.equal(untar.status, 0, untar.stderr);
    for (const dep of Object.keys(pkg.dependencies)) {
      fs.mkdirSync(path.dirname(path.join(app, 'node_modules', dep)), { recursive: true });
      fs.symlinkSync(path.join(REPO_ROOT, 'node_modules', dep), path.join(app, 'node_modules', dep), 'dir');
    }
    const model = path.join(installed, 'models', 'default', 'model.safetensors');

    fs.writeFileSync(
      path.join(app, 'main.js'),
      `import { Rwkv, defaultModelPath } from 'rwkv-ts';
const file = defaultModelPath();
const rwkv = await Rwkv.load(file, { threads: 1 });
const gen = rwkv.generate('The President said', { maxTokens: 8, temperature: 0 });
const text = await gen.text();
await rwkv.close();
console.log(JSON.stringify({ file, resolved: import.meta.resolve('rwkv-ts/models/default/model.safetensors'), text, generated: gen.stats.generatedTokens }));
`,
    );
    const esm = run(process.execPath, ['main.js'], app);
    assert.equal(esm.status, 0, esm.stderr);
    const out = JSON.parse(esm.stdout) as { file: string; resolved: string; text: string; generated: number };
    assert.equal(fs.realpathSync(out.file), fs.realpathSync(model));
    assert.equal(out.resolved, pathToFileURL(out.file).href);
    assert.equal(out.generated, 8);
    assert.ok(out.text.length > 0);

    // The CLI inside the installed package finds the model beside it.
    const cli = run(process.execPath, [path.join(installed, 'dist', 'src', 'cli', 'main.js'), 'info', '--threads', '1'], app);
    assert.equal(cli.status, 0, cli.stderr);
    assert.match(cli.stdout, /RWKV v4/);
    assert.ok(cli.stdout.includes(path.join('node_modules', 'rwkv-ts', 'models', 'default', 'model.safetensors')), cli.stdout);

    // require(): the ES module itself where Node can require() one ("module-sync"); else a clear error.
    const required = "const m = require('rwkv-ts'); const n = require('rwkv-ts/node'); console.log(typeof m.Rwkv, typeof m.defaultModelPath, typeof n.writeGguf)";
    const refusal = /rwkv-ts is an ES module: use import\(\), or Node ≥ 20\.19/;
    if (process.features.require_module) {
      const r = run(process.execPath, ['-e', required], app);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim(), 'function function function');
      // Node before 20.19 / 22.12, as far as this Node can play it: without require(esm) and its condition.
      const old = run(process.execPath, ['--no-experimental-require-module', '-e', required], app);
      assert.notEqual(old.status, 0);
      assert.match(old.stderr, refusal);
      const imported = run(process.execPath, ['--no-experimental-require-module', '--input-type=module', '-e', "const m = await import('rwkv-ts'); console.log(typeof m.Rwkv)"], app);
      assert.equal(imported.status, 0, imported.stderr);
      assert.equal(imported.stdout.trim(), 'function');
    } else {
      const r = run(process.execPath, ['-e', required], app);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, refusal);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
