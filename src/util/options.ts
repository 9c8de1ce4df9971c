// Checking a library call's options by name, as the CLI checks its flags: an unknown name (a typo such as
// `maxTokenz`) is an error rather than silently ignored, and every message shows the value received with
// its type, so `maxTokens: '5'` reads "got '5' (a string)".
import { ArgumentError } from '../errors.js';

/** A value as an error message shows it: strings quoted, with the type where it is not a number. */
export function describeValue(v: unknown): string {
  if (typeof v === 'string') return `${JSON.stringify(v)} (a string)`;
  if (typeof v === 'number') return String(v);
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return `an object (${(v as object).constructor?.name ?? 'Object'})`;
  return `${String(v)} (a ${typeof v})`;
}

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/**
 * Throws when `options` is not an object, or names an option that is not in `known` (with the closest
 * known name). `call` is how the message names the call, e.g. "generate".
 */
export function checkOptionNames(call: string, options: unknown, known: readonly string[]): void {
  if (options === undefined) return;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new ArgumentError(`${call}: options must be an object, got ${describeValue(options)}`);
  }
  for (const name of Object.keys(options)) {
    if (known.includes(name)) continue;
    let best = '';
    let bestDistance = Infinity;
    for (const k of known) {
      const d = distance(name, k);
      if (d < bestDistance) [best, bestDistance] = [k, d];
    }
    const hint = bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? ` (did you mean '${best}'?)` : '';
    throw new ArgumentError(`${call}: unknown option '${name}'${hint}; known options: ${known.join(', ')}`);
  }
}

/** Throws unless `v` is undefined or a boolean. */
export function checkBoolean(name: string, v: unknown): void {
  if (v !== undefined && typeof v !== 'boolean') throw new ArgumentError(`${name} must be true or false, got ${describeValue(v)}`);
}

/** Throws unless `v` is undefined or an integer in [min, max]. */
export function checkInteger(name: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (v === undefined) return;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `from ${min} to ${max}`;
    throw new ArgumentError(`${name} must be an integer ${range}, got ${describeValue(v)}`);
  }
}
