// Training text for the tests: ../shared/data (or $RWKV_DATA), skipped with a printed reason when absent,
// and a failure under CI=true — the same pattern as the fixtures.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TestContext } from 'node:test';
import { Rng } from '../../src/util/rng.js';
import { IN_CI, REPO_ROOT } from './fixtures.js';

export const DATA_DIR = process.env.RWKV_DATA ?? path.resolve(REPO_ROOT, '..', 'shared', 'data');

/** The path of data file `name` (relative to the data directory), or undefined after skipping the test. */
export function dataFile(t: TestContext, name: string): string | undefined {
  const p = path.join(DATA_DIR, name);
  if (fs.existsSync(p)) return p;
  const reason = `data file ${p} is absent (set RWKV_DATA or place ../shared/data beside the repo)`;
  if (IN_CI) throw new Error(`${reason}; CI=true requires it`);
  console.log(`# skip: ${reason}`);
  t.skip(reason);
  return undefined;
}

/** The first `bytes` bytes of Tiny Shakespeare, written to `dir`, or undefined after skipping the test. */
export function shakespeare(t: TestContext, dir: string, bytes: number): string | undefined {
  const src = dataFile(t, 'tinyshakespeare/input.txt');
  if (src === undefined) return undefined;
  const out = path.join(dir, `shakespeare-${bytes}.txt`);
  fs.writeFileSync(out, fs.readFileSync(src).subarray(0, bytes));
  return out;
}

/** `bytes` of made-up prose from `words` (seeded; a sentence ends now and then): data needing no shared files. */
export function wordsText(bytes: number, words: readonly string[] = ['state', 'of', 'the', 'union', 'is', 'strong', 'and', 'congress', 'shall', 'meet'], seed = 3): string {
  const rng = new Rng(seed);
  let s = '';
  while (s.length < bytes) s += words[rng.nextU32() % words.length] + (rng.nextU32() % 7 === 0 ? '.\n' : ' ');
  return s;
}
