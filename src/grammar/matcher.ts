// Matching text against a grammar (gbnf.ts) one code point at a time, as a set of pushdown stacks: each stack
// is a path through the rules whose top is the next character set to match; a reference is expanded into one
// stack per alternative of the rule it names. The set shrinks to what the text so far allows; the empty stack
// in it means the grammar could end here. Stacks are persistent linked lists, so the stacks that share their
// lower part share its memory, and a state is cheap to keep (token masks explore many from one).
import type { CharSet, Grammar } from './gbnf.js';

/** A stack: `pos` (an index into the flattened grammar) on top of `next`. null is the empty stack. */
interface Stack {
  readonly pos: number;
  readonly next: Stack | null;
  /** A string key of the whole stack, for removing duplicates (computed once). */
  readonly key: string;
}

const END = -1;

/** The grammar laid out flat: each alternative's elements in a row, then END. */
export class CompiledGrammar {
  /** Per slot: a character set, a rule index (a reference), or END. */
  readonly chars: (CharSet | undefined)[] = [];
  readonly refs: number[] = [];
  /** Start slot of each alternative of each rule. */
  readonly starts: number[][] = [];
  readonly root: number;

  constructor(grammar: Grammar) {
    this.root = grammar.root;
    for (const alternatives of grammar.rules) {
      const starts: number[] = [];
      for (const seq of alternatives) {
        starts.push(this.refs.length);
        for (const e of seq) {
          this.chars.push(e.kind === 'chars' ? e : undefined);
          this.refs.push(e.kind === 'ref' ? e.rule : END);
        }
        this.chars.push(undefined);
        this.refs.push(END);
      }
      this.starts.push(starts);
    }
  }

  isEnd(pos: number): boolean {
    return this.chars[pos] === undefined && this.refs[pos] === END;
  }
}

function push(pos: number, next: Stack | null): Stack {
  return { pos, next, key: next === null ? String(pos) : `${pos},${next.key}` };
}

export function charSetMatches(set: CharSet, cp: number): boolean {
  const r = set.ranges;
  let inside = false;
  for (let i = 0; i < r.length; i += 2) {
    if (cp >= r[i]! && cp <= r[i + 1]!) {
      inside = true;
      break;
    }
  }
  return inside !== set.negated;
}

/** Whether some code point in [lo, hi] is in the set (for a UTF-8 character not yet complete). */
function charSetMeets(set: CharSet, lo: number, hi: number): boolean {
  const r = set.ranges;
  if (!set.negated) {
    for (let i = 0; i < r.length; i += 2) if (r[i]! <= hi && r[i + 1]! >= lo) return true;
    return false;
  }
  // Negated: some code point of [lo, hi] lies outside every range.
  const sorted: [number, number][] = [];
  for (let i = 0; i < r.length; i += 2) sorted.push([r[i]!, r[i + 1]!]);
  sorted.sort((a, b) => a[0] - b[0]);
  let next = lo;
  for (const [a, b] of sorted) {
    if (a > next) return true;
    if (b >= next) next = b + 1;
    if (next > hi) return false;
  }
  return next <= hi;
}

/**
 * A UTF-8 character in progress: the code point's bits so far, how many continuation bytes are missing, and
 * the smallest code point its length may encode (0x80, 0x800, 0x10000: shorter forms are invalid).
 */
export interface PartialUtf8 {
  value: number;
  missing: number;
  min: number;
}

export const NO_PARTIAL: PartialUtf8 = { value: 0, missing: 0, min: 0 };

/**
 * Feeds one byte to a UTF-8 decoder: the completed code point (or undefined while one is in progress, or
 * -1 for an invalid byte) and the new partial state.
 */
export function decodeByte(partial: PartialUtf8, byte: number): { cp: number | undefined; partial: PartialUtf8 } {
  if (partial.missing === 0) {
    if (byte < 0x80) return { cp: byte, partial: NO_PARTIAL };
    if (byte >= 0xc2 && byte < 0xe0) return { cp: undefined, partial: { value: byte & 0x1f, missing: 1, min: 0x80 } };
    if (byte >= 0xe0 && byte < 0xf0) return { cp: undefined, partial: { value: byte & 0x0f, missing: 2, min: 0x800 } };
    if (byte >= 0xf0 && byte < 0xf5) return { cp: undefined, partial: { value: byte & 0x07, missing: 3, min: 0x10000 } };
    return { cp: -1, partial: NO_PARTIAL };
  }
  if ((byte & 0xc0) !== 0x80) return { cp: -1, partial: NO_PARTIAL };
  const value = (partial.value << 6) | (byte & 0x3f);
  if (partial.missing === 1) return { cp: value >= partial.min && value <= 0x10ffff && (value < 0xd800 || value > 0xdfff) ? value : -1, partial: NO_PARTIAL };
  const next = { value, missing: partial.missing - 1, min: partial.min };
  // Overlong forms are invalid: the bits so far must leave room for a code point of at least `min`.
  if (((value + 1) << (6 * next.missing)) - 1 < partial.min) return { cp: -1, partial: NO_PARTIAL };
  return { cp: undefined, partial: next };
}

/** The code points a character in progress can still become. */
function partialRange(p: PartialUtf8): [number, number] {
  return [Math.max(p.min, p.value << (6 * p.missing)), Math.min(0x10ffff, ((p.value + 1) << (6 * p.missing)) - 1)];
}

/** Where the match stands: the stacks (null: the grammar may end here) and a UTF-8 character in progress. */
export interface MatchState {
  readonly stacks: readonly (Stack | null)[];
  readonly partial: PartialUtf8;
}

export class GrammarMatcher {
  readonly grammar: CompiledGrammar;

  constructor(grammar: Grammar | CompiledGrammar) {
    this.grammar = grammar instanceof CompiledGrammar ? grammar : new CompiledGrammar(grammar);
  }

  /** Before any text: the root rule's alternatives, expanded. */
  initial(): MatchState {
    const out = new Map<string, Stack | null>();
    for (const start of this.grammar.starts[this.grammar.root]!) this.expand(push(start, null), out);
    return { stacks: [...out.values()], partial: NO_PARTIAL };
  }

  /** Adds to `out` every stack reachable from `stack` whose top is a character set (or null: complete). */
  private expand(stack: Stack | null, out: Map<string, Stack | null>): void {
    const g = this.grammar;
    for (;;) {
      if (stack === null) {
        out.set('', null);
        return;
      }
      if (g.isEnd(stack.pos)) {
        stack = stack.next;
        continue;
      }
      if (g.chars[stack.pos] !== undefined) {
        if (!out.has(stack.key)) out.set(stack.key, stack);
        return;
      }
      // A reference: continue after it once the referred rule is done, in each of its alternatives.
      const after = stack.pos + 1;
      const cont = g.isEnd(after) ? stack.next : push(after, stack.next);
      const starts = g.starts[g.refs[stack.pos]!]!;
      for (let i = 0; i < starts.length - 1; i++) this.expand(push(starts[i]!, cont), out);
      stack = push(starts[starts.length - 1]!, cont);
    }
  }

  /** The stacks after one more code point (empty: the text left the grammar). */
  acceptCodePoint(stacks: readonly (Stack | null)[], cp: number): (Stack | null)[] {
    const g = this.grammar;
    const out = new Map<string, Stack | null>();
    for (const s of stacks) {
      if (s === null) continue;
      if (charSetMatches(g.chars[s.pos]!, cp)) this.expand(push(s.pos + 1, s.next), out);
    }
    return [...out.values()];
  }

  /** Whether some stack can take a code point in [lo, hi] next. */
  canMeet(stacks: readonly (Stack | null)[], lo: number, hi: number): boolean {
    for (const s of stacks) if (s !== null && charSetMeets(this.grammar.chars[s.pos]!, lo, hi)) return true;
    return false;
  }

  /** The state after `bytes` (UTF-8), or undefined when they leave the grammar. */
  acceptBytes(state: MatchState, bytes: ArrayLike<number>): MatchState | undefined {
    let stacks = state.stacks;
    let partial = state.partial;
    for (let i = 0; i < bytes.length; i++) {
      const step = decodeByte(partial, bytes[i]!);
      partial = step.partial;
      if (step.cp === -1) return undefined;
      if (step.cp === undefined) {
        const [lo, hi] = partialRange(partial);
        if (!this.canMeet(stacks, lo, hi)) return undefined;
        continue;
      }
      stacks = this.acceptCodePoint(stacks, step.cp);
      if (stacks.length === 0) return undefined;
    }
    return { stacks, partial };
  }

  /** The state after a string, or undefined. */
  acceptText(state: MatchState, text: string): MatchState | undefined {
    return this.acceptBytes(state, new TextEncoder().encode(text));
  }

  /** The grammar may end here (no character in progress). */
  isComplete(state: MatchState): boolean {
    return state.partial.missing === 0 && state.stacks.includes(null);
  }

  /** Some character may still follow. */
  canContinue(state: MatchState): boolean {
    return state.stacks.some((s) => s !== null);
  }

  /** @internal For the token trie's walk: whether a partial character keeps the state alive. */
  partialAlive(stacks: readonly (Stack | null)[], partial: PartialUtf8): boolean {
    const [lo, hi] = partialRange(partial);
    return this.canMeet(stacks, lo, hi);
  }
}
