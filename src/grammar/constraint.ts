// A grammar as a constraint on generation: which tokens may come next, and when the text is done. A token
// may span several grammar elements, or end inside a UTF-8 character (its bytes are fed through the
// matcher's UTF-8 decoder). The full set of allowed tokens comes from one walk of a trie of the vocabulary's
// byte strings against the stacks, pruned where no stack survives; the sampler asks for it only when its
// first draw is refused (TokenConstraint in generation/generate.ts), which inside a JSON string is rare.
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { parseGbnf, type Grammar } from './gbnf.js';
import { CompiledGrammar, decodeByte, GrammarMatcher, type MatchState, type PartialUtf8 } from './matcher.js';

/** The vocabulary's byte strings as a trie (built once per tokenizer and vocabulary size). */
export class TokenTrie {
  /** Per node: its children's first index in `childNode`/`childByte`, and how many. */
  readonly childStart: Int32Array;
  readonly childCount: Int32Array;
  readonly childByte: Uint8Array;
  readonly childNode: Int32Array;
  /** Per node: the token ids whose bytes end there. */
  readonly tokens: number[][];
  /** Each id's bytes (undefined: no text, never allowed). */
  readonly bytesOf: (Uint8Array | undefined)[];

  private constructor(fields: Omit<TokenTrie, never>) {
    this.childStart = fields.childStart;
    this.childCount = fields.childCount;
    this.childByte = fields.childByte;
    this.childNode = fields.childNode;
    this.tokens = fields.tokens;
    this.bytesOf = fields.bytesOf;
  }

  private static cache = new WeakMap<Tokenizer, Map<number, TokenTrie>>();

  static of(tokenizer: Tokenizer, nVocab: number): TokenTrie {
    let byVocab = TokenTrie.cache.get(tokenizer);
    if (byVocab === undefined) TokenTrie.cache.set(tokenizer, (byVocab = new Map()));
    let trie = byVocab.get(nVocab);
    if (trie === undefined) byVocab.set(nVocab, (trie = TokenTrie.build(tokenizer, nVocab)));
    return trie;
  }

  private static build(tokenizer: Tokenizer, nVocab: number): TokenTrie {
    // A map-based trie first, then packed into arrays (children sorted by byte).
    const children: Map<number, number>[] = [new Map()];
    const tokens: number[][] = [[]];
    const bytesOf: (Uint8Array | undefined)[] = [];
    for (let id = 0; id < nVocab; id++) {
      let bytes: Uint8Array | undefined;
      try {
        bytes = id < tokenizer.vocabSize ? tokenizer.decodeBytes([id]) : undefined;
      } catch {
        bytes = undefined;
      }
      if (bytes !== undefined && bytes.length === 0) bytes = undefined;
      bytesOf.push(bytes);
      if (bytes === undefined) continue;
      let node = 0;
      for (const b of bytes) {
        let next = children[node]!.get(b);
        if (next === undefined) {
          next = children.length;
          children.push(new Map());
          tokens.push([]);
          children[node]!.set(b, next);
        }
        node = next;
      }
      tokens[node]!.push(id);
    }
    const n = children.length;
    const childStart = new Int32Array(n);
    const childCount = new Int32Array(n);
    const childByte = new Uint8Array(n);
    const childNode = new Int32Array(n);
    let at = 0;
    for (let node = 0; node < n; node++) {
      const sorted = [...children[node]!.entries()].sort((a, b) => a[0] - b[0]);
      childStart[node] = at;
      childCount[node] = sorted.length;
      for (const [b, child] of sorted) {
        childByte[at] = b;
        childNode[at] = child;
        at++;
      }
    }
    return new TokenTrie({ childStart, childCount, childByte, childNode, tokens, bytesOf });
  }
}

/** Where generation stands against a grammar; one per generation. */
export class GrammarConstraint {
  readonly matcher: GrammarMatcher;
  private readonly trie: TokenTrie;
  private state: MatchState;
  /** Token ids that end the text (e.g. end-of-text): allowed only where the grammar may end. */
  private readonly endTokens: ReadonlySet<number>;

  constructor(grammar: Grammar | CompiledGrammar | string, tokenizer: Tokenizer, nVocab: number, endTokens: Iterable<number> = []) {
    const parsed = typeof grammar === 'string' ? parseGbnf(grammar) : grammar;
    this.matcher = new GrammarMatcher(parsed);
    this.trie = TokenTrie.of(tokenizer, nVocab);
    this.state = this.matcher.initial();
    this.endTokens = new Set(endTokens);
  }

  /** Whether token `id` may come next. */
  allows(id: number): boolean {
    if (this.endTokens.has(id)) return this.matcher.isComplete(this.state);
    const bytes = this.trie.bytesOf[id];
    return bytes !== undefined && this.matcher.acceptBytes(this.state, bytes) !== undefined;
  }

  /** Every token that may come next: mask[id] = 1. Returns how many. */
  mask(mask: Uint8Array): number {
    mask.fill(0);
    let count = 0;
    if (this.matcher.isComplete(this.state)) {
      for (const id of this.endTokens) {
        mask[id] = 1;
        count++;
      }
    }
    const trie = this.trie;
    const matcher = this.matcher;
    const visit = (node: number, stacks: MatchState['stacks'], partial: PartialUtf8): void => {
      const start = trie.childStart[node]!;
      const end = start + trie.childCount[node]!;
      for (let c = start; c < end; c++) {
        const step = decodeByte(partial, trie.childByte[c]!);
        if (step.cp === -1) continue;
        let next = stacks;
        if (step.cp === undefined) {
          if (!matcher.partialAlive(stacks, step.partial)) continue;
        } else {
          next = matcher.acceptCodePoint(stacks, step.cp);
          if (next.length === 0) continue;
        }
        const child = trie.childNode[c]!;
        for (const id of trie.tokens[child]!) {
          if (!this.endTokens.has(id) && mask[id] === 0) {
            mask[id] = 1;
            count++;
          }
        }
        visit(child, next, step.partial);
      }
    };
    visit(0, this.state.stacks, this.state.partial);
    return count;
  }

  /** Advances past token `id` (which must be allowed). */
  accept(id: number): void {
    if (this.endTokens.has(id)) return;
    const next = this.matcher.acceptBytes(this.state, this.trie.bytesOf[id] ?? new Uint8Array(0));
    if (next === undefined) throw new Error(`token ${id} is not allowed by the grammar here`);
    this.state = next;
  }

  /** The grammar is complete and nothing may follow: generation is over. */
  get done(): boolean {
    return this.matcher.isComplete(this.state) && !this.matcher.canContinue(this.state);
  }

  /** The grammar may end here. */
  get complete(): boolean {
    return this.matcher.isComplete(this.state);
  }
}
