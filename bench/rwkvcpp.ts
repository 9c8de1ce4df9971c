// rwkv.cpp side by side: builds bench/rwkvcpp-driver.c with the system C compiler against a given
// librwkv (and the rwkv.h of its source tree) and runs it on the bench's model files. Nothing of
// rwkv.cpp is part of this repository: the caller names a library built elsewhere
// (`npm run bench -- --rwkvcpp /path/to/librwkv.so`, or RWKV_CPP_LIB=/path/to/librwkv.so).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface RwkvCppResult {
  threads: number;
  loadSeconds: number;
  /** rwkv_eval one token at a time, state and logits out. */
  generateTokensPerSecond: number;
  generateBestWindowTokensPerSecond: number;
  generateTokens: number;
  /** rwkv_eval_sequence_in_chunks (chunks of 64), logits of the last position. */
  promptTokensPerSecond: number;
  promptTokens: number;
  peakRssBytes: number;
  /** rwkv_get_system_info_string(): the SIMD extensions its ggml was built with. */
  systemInfo: string;
}

/** A compiled driver, or why there is none. */
export type RwkvCppDriver = { ok: true; driver: string; library: string; header: string } | { ok: false; reason: string };

const here = path.dirname(fileURLToPath(import.meta.url));

/** bench/rwkvcpp-driver.c, from the source tree or next to this file. */
function driverSource(): string | undefined {
  for (const p of [path.resolve(here, '..', '..', 'bench', 'rwkvcpp-driver.c'), path.join(here, 'rwkvcpp-driver.c')]) {
    if (fs.existsSync(p)) return p;
  }
  return undefined;
}

/** rwkv.h: RWKV_CPP_INCLUDE, else the library's folder or one of the two above it (a cmake build folder). */
function findHeader(library: string): string | undefined {
  const dir = path.dirname(library);
  const candidates = [process.env.RWKV_CPP_INCLUDE, dir, path.dirname(dir), path.dirname(path.dirname(dir))].filter(
    (d): d is string => d !== undefined && d !== '',
  );
  for (const d of candidates) if (fs.existsSync(path.join(d, 'rwkv.h'))) return path.join(d, 'rwkv.h');
  return undefined;
}

/** Compiles the driver against `library` (cached in the temporary folder by library, header and source). */
export function buildRwkvCppDriver(library: string | undefined): RwkvCppDriver {
  if (library === undefined || library === '') {
    return { ok: false, reason: 'no rwkv.cpp library given (--rwkvcpp /path/to/librwkv.so or RWKV_CPP_LIB)' };
  }
  const lib = path.resolve(library);
  if (!fs.existsSync(lib)) return { ok: false, reason: `${lib} does not exist` };
  const header = findHeader(lib);
  if (header === undefined) {
    return { ok: false, reason: `no rwkv.h next to ${lib} or two folders above it (set RWKV_CPP_INCLUDE to its folder)` };
  }
  const source = driverSource();
  if (source === undefined) return { ok: false, reason: 'bench/rwkvcpp-driver.c is missing' };
  const key = createHash('sha256');
  for (const f of [lib, header, source]) key.update(f).update(String(fs.statSync(f).mtimeMs)).update('\0');
  const outDir = path.join(os.tmpdir(), 'rwkv-ts-bench');
  fs.mkdirSync(outDir, { recursive: true });
  const driver = path.join(outDir, `rwkvcpp-driver-${key.digest('hex').slice(0, 16)}`);
  if (!fs.existsSync(driver)) {
    const cc = process.env.CC ?? 'cc';
    const args = ['-O2', '-o', driver, source, '-I', path.dirname(header), lib, `-Wl,-rpath,${path.dirname(lib)}`];
    const r = spawnSync(cc, args, { encoding: 'utf8' });
    if (r.error !== undefined || r.status !== 0) {
      const why = r.error?.message ?? r.stderr.trim().split('\n').slice(-3).join(' | ');
      return { ok: false, reason: `${cc} ${args.join(' ')} failed: ${why}` };
    }
  }
  return { ok: true, driver, library: lib, header };
}

/** One run of rwkv.cpp on `file`, or undefined (with the reason on stderr). */
export function runRwkvCpp(driver: string, file: string, threads: number, gen: number, prompt: number): RwkvCppResult | undefined {
  // ggml's threads spin at every barrier: on a machine whose cores are taken by others a two-thread run
  // can crawl at a few tokens/s, so a run gets at most ten minutes.
  const r = spawnSync(driver, [file, String(threads), String(gen), String(prompt)], { encoding: 'utf8', maxBuffer: 1 << 20, timeout: 600_000 });
  if (r.status !== 0) {
    process.stderr.write(`# rwkv.cpp on ${file} ×${threads} failed: ${(r.error?.message ?? r.stderr).trim().split('\n').slice(-3).join(' | ')}\n`);
    return undefined;
  }
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as RwkvCppResult;
}
