// llama.cpp's GBNF grammar format, parsed into flat rules that the matcher (matcher.ts) walks:
//
//   root  ::= "{" ws pair ("," ws pair)* "}"     # a rule: name ::= alternatives; comments run to the line's end
//   pair  ::= [a-z]+ ws ":" ws value              # [..] classes (ranges, ^ negation, escapes), "literals", .
//   value ::= ("yes" | "no") | [0-9]{1,3}         # groups, alternatives, * + ? {m} {m,} {m,n}
//
// Grammars match Unicode code points. Repetitions and groups become rules of their own, so that every rule is
// a list of alternatives and every alternative a sequence of two kinds of elements: a character set or a
// reference to a rule. A rule's body ends at the end of its line unless a group is open.
import { RwkvError } from '../errors.js';

/** A grammar that cannot be parsed: the message names the line and column. */
export class GrammarError extends RwkvError {
  readonly line: number;
  readonly column: number;

  constructor(message: string, line: number, column: number, source = 'grammar') {
    super('BAD_ARGUMENT', `${source}:${line}:${column}: ${message}`);
    this.name = 'GrammarError';
    this.line = line;
    this.column = column;
  }
}

/** Code points in [lo, hi] pairs; `negated`: every code point not in them. */
export interface CharSet {
  kind: 'chars';
  ranges: number[];
  negated: boolean;
}

export interface RuleRef {
  kind: 'ref';
  rule: number;
}

export type Element = CharSet | RuleRef;

export interface Grammar {
  /** Rule names by index (generated rules are named after their parent, e.g. "value-3"). */
  names: string[];
  /** rules[r] = its alternatives; each a sequence of elements (an empty one matches nothing). */
  rules: Element[][][];
  /** The start rule ("root"). */
  root: number;
}

const NAME = /[A-Za-z0-9-]/;

/** Parses GBNF text; `source` names it in errors (a file name). The start rule is `root`. */
export function parseGbnf(text: string, source = 'grammar'): Grammar {
  return new Parser(text, source).parse();
}

class Parser {
  private pos = 0;
  private readonly text: string;
  private readonly source: string;
  private readonly names: string[] = [];
  private readonly rules: (Element[][] | undefined)[] = [];
  private readonly byName = new Map<string, number>();
  /** Where each rule was first referred to (for "undefined rule" errors). */
  private readonly firstUse = new Map<number, number>();
  private readonly defined = new Set<number>();

  constructor(text: string, source: string) {
    this.text = text;
    this.source = source;
  }

  parse(): Grammar {
    this.skip(true);
    while (this.pos < this.text.length) {
      this.parseRule();
      this.skip(true);
    }
    const root = this.byName.get('root');
    if (root === undefined || !this.defined.has(root)) this.fail('the grammar has no rule named root', this.text.length);
    for (const [rule, at] of this.firstUse) {
      if (!this.defined.has(rule)) this.fail(`rule '${this.names[rule]}' is used but never defined`, at);
    }
    const grammar: Grammar = { names: this.names, rules: this.rules.map((r) => r ?? []), root: root! };
    checkLeftRecursion(grammar, (message) => this.fail(message, 0));
    return grammar;
  }

  private parseRule(): void {
    const start = this.pos;
    const name = this.parseName();
    this.skip(false);
    if (!this.text.startsWith('::=', this.pos)) this.fail(`expected '::=' after the rule name '${name}'`, this.pos);
    this.pos += 3;
    this.skip(true); // the body may start on the next line
    const id = this.ruleId(name);
    if (this.defined.has(id)) this.fail(`rule '${name}' is defined twice`, start);
    this.defined.add(id);
    this.rules[id] = this.parseAlternatives(name, false);
    this.skip(false);
    if (this.pos < this.text.length && this.text[this.pos] !== '\n' && this.text[this.pos] !== '\r') {
      this.fail(`unexpected '${this.text[this.pos]}' (a rule ends at the end of its line)`, this.pos);
    }
  }

  private parseName(): string {
    const start = this.pos;
    while (this.pos < this.text.length && NAME.test(this.text[this.pos]!)) this.pos++;
    if (this.pos === start) this.fail(`expected a rule name, found ${this.describe(this.pos)}`, this.pos);
    return this.text.slice(start, this.pos);
  }

  private ruleId(name: string): number {
    let id = this.byName.get(name);
    if (id === undefined) {
      id = this.names.length;
      this.names.push(name);
      this.rules.push(undefined);
      this.byName.set(name, id);
    }
    return id;
  }

  /** A new rule for a group or a repetition, named after the rule it appears in. */
  private helperRule(parent: string, alternatives: Element[][]): number {
    const id = this.names.length;
    this.names.push(`${parent}-${id}`);
    this.rules.push(alternatives);
    this.defined.add(id);
    return id;
  }

  private parseAlternatives(rule: string, nested: boolean): Element[][] {
    const alternatives = [this.parseSequence(rule, nested)];
    while (this.peek() === '|') {
      this.pos++;
      this.skip(nested);
      alternatives.push(this.parseSequence(rule, nested));
    }
    return alternatives;
  }

  private parseSequence(rule: string, nested: boolean): Element[] {
    const out: Element[] = [];
    this.skip(nested);
    for (;;) {
      const c = this.text[this.pos];
      if (c === undefined) break;
      const start = this.pos;
      let item: Element[];
      if (c === '"') item = this.parseLiteral();
      else if (c === '[') item = [this.parseClass()];
      else if (c === '.') {
        this.pos++;
        item = [{ kind: 'chars', ranges: [], negated: true }];
      } else if (c === '(') {
        this.pos++;
        this.skip(true);
        const inner = this.parseAlternatives(rule, true);
        this.skip(true);
        if (this.text[this.pos] !== ')') this.fail(`expected ')' to close the group opened at column ${this.columnOf(start)}`, this.pos);
        this.pos++;
        item = [{ kind: 'ref', rule: this.helperRule(rule, inner) }];
      } else if (NAME.test(c)) {
        const nameStart = this.pos;
        const name = this.parseName();
        // The next rule's "name ::=" ends this one (rules may follow each other without a blank line).
        const after = this.pos;
        this.skip(nested);
        if (this.text.startsWith('::=', this.pos)) {
          this.pos = nameStart;
          break;
        }
        this.pos = after;
        const id = this.ruleId(name);
        if (!this.firstUse.has(id)) this.firstUse.set(id, nameStart);
        item = [{ kind: 'ref', rule: id }];
      } else break;
      this.skip(nested);
      item = this.parseRepetition(rule, item, start, nested);
      out.push(...item);
    }
    return out;
  }

  /** `item` followed by * + ? or {m,n}: the item as it stands in the sequence. */
  private parseRepetition(rule: string, item: Element[], start: number, nested: boolean): Element[] {
    let current = item;
    for (;;) {
      const c = this.text[this.pos];
      let min: number;
      let max: number | undefined;
      if (c === '*' || c === '+' || c === '?') {
        this.pos++;
        [min, max] = c === '*' ? [0, undefined] : c === '+' ? [1, undefined] : [0, 1];
      } else if (c === '{') {
        this.pos++;
        this.skip(nested);
        min = this.parseCount();
        this.skip(nested);
        max = min;
        if (this.text[this.pos] === ',') {
          this.pos++;
          this.skip(nested);
          max = /[0-9]/.test(this.text[this.pos] ?? '') ? this.parseCount() : undefined;
          this.skip(nested);
        }
        if (this.text[this.pos] !== '}') this.fail("expected '}' to close the repetition", this.pos);
        this.pos++;
        if (max !== undefined && max < min) this.fail(`repetition {${min},${max}}: the maximum is below the minimum`, start);
      } else return current;
      current = this.repeat(rule, current, min, max);
      this.skip(nested);
    }
  }

  private parseCount(): number {
    const start = this.pos;
    while (/[0-9]/.test(this.text[this.pos] ?? '')) this.pos++;
    if (start === this.pos) this.fail('expected a number in the repetition', this.pos);
    const n = Number(this.text.slice(start, this.pos));
    if (n > 10_000) this.fail(`repetition count ${n} is too large (at most 10000)`, start);
    return n;
  }

  /** x{min,max} as elements: min copies, then (max − min) nested optional copies, or x* for no maximum. */
  private repeat(rule: string, item: Element[], min: number, max: number | undefined): Element[] {
    const out: Element[] = [];
    for (let i = 0; i < min; i++) out.push(...item);
    if (max === undefined) {
      // star ::= item star | ε
      const star = this.helperRule(rule, []);
      this.rules[star] = [[...item, { kind: 'ref', rule: star }], []];
      out.push({ kind: 'ref', rule: star });
      return out;
    }
    // opt_k ::= item opt_{k-1} | ε, nested so that "a{0,3}" accepts 0..3 copies without ambiguity.
    let tail: number | undefined;
    for (let i = 0; i < max - min; i++) {
      const seq: Element[] = [...item, ...(tail !== undefined ? [{ kind: 'ref', rule: tail } as RuleRef] : [])];
      tail = this.helperRule(rule, [seq, []]);
    }
    if (tail !== undefined) out.push({ kind: 'ref', rule: tail });
    return out;
  }

  private parseLiteral(): Element[] {
    const start = this.pos;
    this.pos++; // "
    const out: Element[] = [];
    for (;;) {
      const c = this.text[this.pos];
      if (c === undefined || c === '\n') this.fail('unterminated string literal', start);
      if (c === '"') {
        this.pos++;
        return out;
      }
      const cp = this.parseChar();
      out.push({ kind: 'chars', ranges: [cp, cp], negated: false });
    }
  }

  private parseClass(): CharSet {
    const start = this.pos;
    this.pos++; // [
    let negated = false;
    if (this.text[this.pos] === '^') {
      negated = true;
      this.pos++;
    }
    const ranges: number[] = [];
    for (;;) {
      const c = this.text[this.pos];
      if (c === undefined || c === '\n') this.fail('unterminated character class', start);
      if (c === ']') {
        this.pos++;
        return { kind: 'chars', ranges, negated };
      }
      const lo = this.parseChar();
      let hi = lo;
      if (this.text[this.pos] === '-' && this.text[this.pos + 1] !== ']' && this.text[this.pos + 1] !== undefined) {
        this.pos++;
        hi = this.parseChar();
        if (hi < lo) this.fail(`the range ${String.fromCodePoint(lo)}-${String.fromCodePoint(hi)} is reversed`, start);
      }
      ranges.push(lo, hi);
    }
  }

  /** One character of a literal or class: itself, or an escape (\n \r \t \\ \" \[ \] \- \xHH \uHHHH \UHHHHHHHH). */
  private parseChar(): number {
    const c = this.text.codePointAt(this.pos)!;
    if (c !== 0x5c) {
      this.pos += c > 0xffff ? 2 : 1;
      return c;
    }
    const e = this.text[this.pos + 1];
    const simple: Record<string, number> = { n: 10, r: 13, t: 9, '\\': 92, '"': 34, '[': 91, ']': 93, '-': 45, '/': 47 };
    if (e !== undefined && simple[e] !== undefined) {
      this.pos += 2;
      return simple[e]!;
    }
    const digits = e === 'x' ? 2 : e === 'u' ? 4 : e === 'U' ? 8 : 0;
    if (digits > 0) {
      const hex = this.text.slice(this.pos + 2, this.pos + 2 + digits);
      if (!new RegExp(`^[0-9a-fA-F]{${digits}}$`).test(hex)) this.fail(`\\${e} needs ${digits} hex digits`, this.pos);
      const cp = Number.parseInt(hex, 16);
      if (cp > 0x10ffff) this.fail(`\\${e}${hex} is beyond Unicode`, this.pos);
      this.pos += 2 + digits;
      return cp;
    }
    this.fail(`unknown escape \\${e ?? ''}`, this.pos);
  }

  private peek(): string | undefined {
    return this.text[this.pos];
  }

  /** Skips spaces and comments; newlines too when `newlines` (between rules, inside groups). */
  private skip(newlines: boolean): void {
    for (;;) {
      const c = this.text[this.pos];
      if (c === ' ' || c === '\t') this.pos++;
      else if (c === '#') while (this.pos < this.text.length && this.text[this.pos] !== '\n') this.pos++;
      else if (newlines && (c === '\n' || c === '\r')) this.pos++;
      // A line that ends in the middle of a sequence may continue on the next when it is indented (as
      // llama.cpp's grammars are often written): "root ::= a\n    | b".
      else if (!newlines && (c === '\n' || c === '\r') && /^\r?\n[ \t]+[^ \t\r\n#]/.test(this.text.slice(this.pos, this.pos + 64)) && !this.nextLineIsRule()) this.pos++;
      else return;
    }
  }

  /** Whether the next line starts a rule ("name ::="), which must not be read as a continuation. */
  private nextLineIsRule(): boolean {
    const nl = this.text.indexOf('\n', this.pos);
    const line = this.text.slice(nl + 1, this.text.indexOf('\n', nl + 1) === -1 ? undefined : this.text.indexOf('\n', nl + 1));
    return /^\s*[A-Za-z0-9-]+\s*::=/.test(line);
  }

  private describe(pos: number): string {
    const c = this.text[pos];
    return c === undefined ? 'the end of the grammar' : c === '\n' ? 'the end of the line' : `'${c}'`;
  }

  private columnOf(pos: number): number {
    return pos - this.text.lastIndexOf('\n', pos - 1);
  }

  private fail(message: string, pos: number): never {
    const before = this.text.slice(0, pos);
    const line = before.split('\n').length;
    throw new GrammarError(message, line, this.columnOf(pos), this.source);
  }
}

/**
 * Refuses left recursion (a rule that can reach itself without consuming a character), which would make
 * the matcher loop: "expr ::= expr "+" term".
 */
function checkLeftRecursion(g: Grammar, fail: (message: string) => never): void {
  // nullable[r]: rule r can match the empty string.
  const nullable = new Array<boolean>(g.rules.length).fill(false);
  for (let changed = true; changed; ) {
    changed = false;
    g.rules.forEach((alts, r) => {
      if (nullable[r]) return;
      if (alts.some((seq) => seq.every((e) => e.kind === 'ref' && nullable[e.rule]))) {
        nullable[r] = true;
        changed = true;
      }
    });
  }
  // Edges r → s when s can come first in r (after nullable prefixes).
  const first = g.rules.map((alts) => {
    const out = new Set<number>();
    for (const seq of alts) {
      for (const e of seq) {
        if (e.kind === 'chars') break;
        out.add(e.rule);
        if (!nullable[e.rule]) break;
      }
    }
    return out;
  });
  const state = new Array<number>(g.rules.length).fill(0); // 0 unseen, 1 on the path, 2 done
  const path: number[] = [];
  const visit = (r: number): void => {
    state[r] = 1;
    path.push(r);
    for (const s of first[r]!) {
      if (state[s] === 1) {
        const cycle = path.slice(path.indexOf(s)).map((x) => g.names[x]);
        fail(`left recursion: ${[...cycle, g.names[s]].join(' → ')} (a rule reaches itself before matching any character)`);
      }
      if (state[s] === 0) visit(s);
    }
    path.pop();
    state[r] = 2;
  };
  for (let r = 0; r < g.rules.length; r++) if (state[r] === 0) visit(r);
}
