// Where the shared fixtures are, and what to do when they are not: skip with a printed reason, or fail
// under CI=true (where a missing fixture directory means a broken checkout, not an optional extra).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';

function findRepoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg) && JSON.parse(fs.readFileSync(pkg, 'utf8')).name === 'rwkv-ts') return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the rwkv-ts package root');
    dir = up;
  }
}

export const REPO_ROOT = findRepoRoot();

/** $RWKV_FIXTURES, or ../shared/fixtures beside the repository. */
export const FIXTURES_DIR = process.env.RWKV_FIXTURES ?? path.resolve(REPO_ROOT, '..', 'shared', 'fixtures');

export const IN_CI = process.env.CI === 'true';

/**
 * The path of fixture `name`, or undefined after marking the test skipped (with the reason printed) when
 * it is absent. Under CI=true an absent fixture fails the test instead.
 */
export function fixture(t: TestContext, name: string): string | undefined {
  const p = path.join(FIXTURES_DIR, name);
  if (fs.existsSync(p)) return p;
  const reason = `fixture ${p} is absent (set RWKV_FIXTURES or place ../shared/fixtures beside the repo)`;
  if (IN_CI) throw new Error(`${reason}; CI=true requires it`);
  console.log(`# skip: ${reason}`);
  t.skip(reason);
  return undefined;
}

export function readF32(p: string): Float32Array {
  const b = fs.readFileSync(p);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** The bytes `"in`, which the expected-logits files follow. */
export const PROMPT_IN = [0x22, 0x69, 0x6e] as const;
