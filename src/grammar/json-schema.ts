// JSON Schema → GBNF (gbnf.ts), for generation whose output always parses and validates against the schema.
//
// The grammar generates a subset of the schema's valid instances, never anything outside it: where the
// schema allows more than a grammar can say exactly, the grammar says less (and the choices are listed
// below); where a keyword would make that impossible, the schema is refused with a JsonSchemaError naming
// the JSON pointer of the part at fault. Supported:
//
//   type (one or a list), enum, const, properties, required, additionalProperties, items, prefixItems,
//   additionalItems, minItems, maxItems, minLength, maxLength, format (date, time, date-time, uuid; and on
//   numbers int32, int64, float, double), minimum, maximum, exclusiveMinimum, exclusiveMaximum (integer
//   bounds; on type integer any bounds), multipleOf: 1, minProperties/maxProperties where the properties
//   already decide them, uniqueItems with maxItems ≤ 1, anyOf, oneOf, allOf, $ref to "#…" JSON pointers
//   ("#/$defs/x", "#/definitions/x", "#"; recursion becomes recursive rules).
//
// Choices (all of them keep every output valid):
//   - Layout: compact JSON.stringify output and the usual pretty forms are accepted: between tokens at most
//     one space, or a newline and up to 24 spaces or tabs of indentation (`ws`). No space around the whole.
//   - Objects: the declared properties in the schema's order; required ones always, optional ones may be
//     left out (linear in the number of properties: one rule per position, "what may follow property k").
//     No property beyond the declared ones is generated, whatever additionalProperties says (leaving them
//     out is always valid). Required names without a schema in properties are generated after the declared
//     ones, with additionalProperties' schema. An object schema with no properties at all generates any
//     object (additionalProperties absent or true), `{}` (false), or a map of its additionalProperties.
//   - Schemas without `type` generate only the types their keywords speak of (properties → object,
//     minLength → string, …), or any JSON value when there are none.
//   - enum/const: each value serialized as JSON.stringify does (whitespace inside arrays and objects as
//     above), filtered by the sibling keywords.
//   - oneOf is compiled as anyOf when its branches are provably exclusive (different types, enum/const sets
//     that fail the other branch, or objects told apart by a required const/enum property or by required
//     properties the other branch cannot generate); otherwise it is refused (use anyOf).
//   - allOf (and $ref with sibling keywords) are merged into one schema; two anyOf/oneOf, two different
//     formats or two different tuples cannot be merged and are refused.
//   - Strings: JSON string syntax with its escapes; \u escapes of UTF-16 surrogates are not generated (a
//     character beyond U+FFFF is written as itself), so that minLength/maxLength count what validators count.
//   - Numbers: at most 16 integer digits, 20 fraction digits and a 2-digit exponent (always finite). With
//     bounds: no exponent, and at most 15 significant digits in all (so that the value read back compares to
//     the bounds exactly), integer parts within ±999999999999999; bounds on type number must be integers.
//   - Tuples (prefixItems, or items as an array) without a schema for the items after them generate no
//     items after them.
//   - Formats as validators check them (RFC 3339): date with its month's days (Feb 29 in leap years only),
//     time "HH:MM:SS", up to 9 fraction digits and a required offset "Z" or "±HH:MM" (no leap seconds),
//     date-time "<date>T<time>", uuid 8-4-4-4-12 hex digits.
// Refused: pattern, patternProperties, propertyNames, not, if/then/else, contains, dependencies, unevaluated*,
// $dynamicRef, references outside the document, unknown keywords and unknown formats. Ignored: annotations
// (title, description, examples, default, $schema, $id, $comment, deprecated, readOnly, …) and "x-…" keys.
import { RwkvError } from '../errors.js';
import { GrammarError, parseGbnf } from './gbnf.js';

/** A schema that cannot be compiled: `pointer` is the JSON pointer ("#/properties/date/format") at fault. */
export class JsonSchemaError extends RwkvError {
  readonly pointer: string;

  constructor(pointer: string, message: string, source?: string) {
    super('BAD_ARGUMENT', `${source !== undefined ? `${source}: ` : ''}${pointer}: ${message}`);
    this.pointer = pointer;
  }
}

export interface JsonSchemaToGbnfOptions {
  /** Names the schema in errors (a file name). */
  source?: string;
}

/** Compiles a JSON Schema (an object or a boolean, as JSON.parse gives it) to GBNF text whose `root` is the value. */
export function jsonSchemaToGbnf(schema: unknown, options: JsonSchemaToGbnfOptions = {}): string {
  const text = new Compiler(schema, options.source).run();
  try {
    parseGbnf(text, options.source ?? 'json-schema');
  } catch (e) {
    // Not the schema's fault: a bug here. Said plainly rather than as a grammar line and column.
    if (e instanceof GrammarError) throw new JsonSchemaError('#', `internal error, the compiled grammar does not parse: ${e.message}`, options.source);
    throw e;
  }
  return text;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type SchemaObject = { [key: string]: unknown };

/** A grammar element: raw GBNF terminals, a rule reference, or a repeated sequence. */
type Tok = { lit: string } | { ref: string } | { rep: Tok[]; min: number; max: number | undefined };
type Alt = Tok[];

const lit = (text: string): Tok => ({ lit: text });
const ref = (name: string): Tok => ({ ref: name });
const opt = (seq: Tok[]): Tok => ({ rep: seq, min: 0, max: 1 });
const WS = ref('ws');
const QUOTE = lit('"\\""');
const COMMA = lit('","');
const COLON = lit('":"');

/** Shared rules, emitted when used. */
const PRIMITIVES: Record<string, { body: string; uses: string[] }> = {
  ws: { body: String.raw`( " " | "\n" [ \t]{0,24} )?`, uses: [] },
  value: { body: String.raw`object | array | string | number | "true" | "false" | "null"`, uses: ['object', 'array', 'string', 'number'] },
  object: { body: String.raw`"{" ws ( string ws ":" ws value ( ws "," ws string ws ":" ws value )* ws )? "}"`, uses: ['ws', 'string', 'value'] },
  array: { body: String.raw`"[" ws ( value ( ws "," ws value )* ws )? "]"`, uses: ['ws', 'value'] },
  string: { body: String.raw`"\"" char* "\""`, uses: ['char'] },
  // No \u escape of a surrogate: a pair would count as one character for validators and two here.
  char: { body: String.raw`[^"\\\x00-\x1f] | "\\" ( ["\\/bfnrt] | "u" ( [0-9a-cA-Ce-fE-F] hex hex hex | [dD] [0-7] hex hex ) )`, uses: ['hex'] },
  hex: { body: '[0-9a-fA-F]', uses: [] },
  // A 2-digit exponent keeps every number finite (1e999 would read back as Infinity).
  number: { body: String.raw`"-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,20} )? ( [eE] [-+]? [0-9]{1,2} )?`, uses: [] },
  integer: { body: String.raw`"-"? ( "0" | [1-9] [0-9]{0,15} )`, uses: [] },
  date: {
    body: String.raw`[0-9]{4} "-" ( ( "0" [13578] | "1" [02] ) "-" ( "0" [1-9] | [12] [0-9] | "3" [01] ) | ( "0" [469] | "11" ) "-" ( "0" [1-9] | [12] [0-9] | "30" ) | "02-" ( "0" [1-9] | "1" [0-9] | "2" [0-8] ) ) | date-leap "-02-29"`,
    uses: ['date-leap'],
  },
  // Years divisible by 4 but not by 100, or by 400.
  'date-leap': { body: String.raw`[0-9]{2} ( "0" [48] | [2468] [048] | [13579] [26] ) | ( [02468] [048] | [13579] [26] ) "00"`, uses: [] },
  time: { body: String.raw`( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,9} )? ( "Z" | [-+] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )`, uses: [] },
  'date-time': { body: 'date "T" time', uses: ['date', 'time'] },
  uuid: { body: 'hex{8} "-" hex{4} "-" hex{4} "-" hex{4} "-" hex{12}', uses: ['hex'] },
};

/** String formats: their rule and the lengths their strings can have. */
const STRING_FORMATS: Record<string, { rule: string; lengths: [number, number] }> = {
  date: { rule: 'date', lengths: [10, 10] },
  time: { rule: 'time', lengths: [9, 24] },
  'date-time': { rule: 'date-time', lengths: [20, 35] },
  uuid: { rule: 'uuid', lengths: [36, 36] },
};
const NUMBER_FORMATS = new Set(['int32', 'int64', 'float', 'double']);
const FORMATS_SUPPORTED = 'supported: date, time, date-time, uuid; on numbers also int32, int64, float, double';

const ANNOTATIONS = new Set([
  'title', 'description', 'examples', 'example', 'default', '$schema', '$id', '$comment', '$anchor', '$dynamicAnchor',
  '$vocabulary', '$defs', 'definitions', 'deprecated', 'readOnly', 'writeOnly', 'contentEncoding', 'contentMediaType',
  'contentSchema', 'discriminator', 'externalDocs', 'xml',
  // OpenAPI's nullable: never generating null is valid whether or not it allows null.
  'nullable',
]);
const SUPPORTED = new Set([
  'type', 'enum', 'const', 'properties', 'required', 'additionalProperties', 'items', 'prefixItems', 'additionalItems',
  'minItems', 'maxItems', 'uniqueItems', 'minLength', 'maxLength', 'format', 'minimum', 'maximum', 'exclusiveMinimum',
  'exclusiveMaximum', 'multipleOf', 'minProperties', 'maxProperties', 'anyOf', 'oneOf', 'allOf', '$ref',
]);
const UNSUPPORTED: Record<string, string> = {
  pattern: 'regular expressions are not compiled (use enum, format or maxLength)',
  patternProperties: 'property names given by regular expressions are not compiled',
  propertyNames: 'constraints on property names are not compiled',
  not: 'a grammar cannot exclude what a subschema matches',
  if: 'conditional schemas are not compiled',
  then: 'conditional schemas are not compiled',
  else: 'conditional schemas are not compiled',
  contains: 'array contents by search are not compiled',
  minContains: 'array contents by search are not compiled',
  maxContains: 'array contents by search are not compiled',
  dependencies: 'dependencies between properties are not compiled',
  dependentRequired: 'dependencies between properties are not compiled',
  dependentSchemas: 'dependencies between properties are not compiled',
  unevaluatedProperties: 'unevaluated properties are not compiled',
  unevaluatedItems: 'unevaluated items are not compiled',
  $dynamicRef: 'dynamic references are not compiled',
  $recursiveRef: 'dynamic references are not compiled',
  $recursiveAnchor: 'dynamic references are not compiled',
};
const TYPES = ['null', 'boolean', 'object', 'array', 'string', 'number', 'integer'] as const;
type TypeName = (typeof TYPES)[number];
type Kind = Exclude<TypeName, 'integer'>;
const ALL_KINDS: readonly Kind[] = ['null', 'boolean', 'object', 'array', 'string', 'number'];

/** Which keywords make a schema without `type` speak of a type. */
const KEYWORD_TYPES: Record<string, TypeName> = {
  properties: 'object', required: 'object', additionalProperties: 'object', minProperties: 'object', maxProperties: 'object',
  items: 'array', prefixItems: 'array', additionalItems: 'array', minItems: 'array', maxItems: 'array', uniqueItems: 'array',
  minLength: 'string', maxLength: 'string',
  minimum: 'number', maximum: 'number', exclusiveMinimum: 'number', exclusiveMaximum: 'number', multipleOf: 'number',
};

/** mergeKeyword's answer when no value satisfies both sides. */
const NOTHING = Symbol('nothing');

/** The largest integer part of a bounded number: 15 digits, below 2^53, so bounds compare exactly. */
const CAP = 999_999_999_999_999;
/** Repetition counts the GBNF parser takes. */
const MAX_COUNT = 10_000;
/** $ref/allOf merges without descending into the data: more means a reference cycle. */
const MAX_HOPS = 64;

function child(ptr: string, ...keys: (string | number)[]): string {
  return ptr + keys.map((k) => `/${String(k).replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');
}

/** A GBNF string literal for `text`. */
function gbnfLiteral(text: string): string {
  let out = '"';
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (cp < 0x20 || cp === 0x7f) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else if (cp >= 0xd800 && cp <= 0xdfff) out += `\\u${cp.toString(16)}`; // a lone surrogate (never matched)
    else out += ch;
  }
  return `${out}"`;
}

function isPlainObject(x: unknown): x is SchemaObject {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isJson(x: unknown, depth = 0): x is Json {
  if (depth > 1000) return false;
  if (x === null || typeof x === 'boolean' || typeof x === 'string') return true;
  if (typeof x === 'number') return Number.isFinite(x);
  if (Array.isArray(x)) return x.every((v) => isJson(v, depth + 1));
  if (isPlainObject(x)) return Object.values(x).every((v) => isJson(v, depth + 1));
  return false;
}

function deepEqual(a: Json, b: Json): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((v, i) => deepEqual(v, b[i]!));
  if (isPlainObject(a) && isPlainObject(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && deepEqual(a[k]!, (b as { [key: string]: Json })[k]!));
  }
  return false;
}

function kindOf(v: Json): Kind {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  const t = typeof v;
  return t === 'object' ? 'object' : (t as Kind);
}

function omit(s: SchemaObject, ...keys: string[]): SchemaObject {
  const out: SchemaObject = {};
  for (const [k, v] of Object.entries(s)) if (!keys.includes(k)) out[k] = v;
  return out;
}

/** Whether a schema object says anything beyond annotations. */
function constrains(s: SchemaObject): boolean {
  return Object.keys(s).some((k) => !ANNOTATIONS.has(k) && !k.startsWith('x-'));
}

const DAYS = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
function isLeap(y: number): boolean {
  return y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
}
function validDate(s: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
  if (m === null) return false;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return mo >= 1 && mo <= 12 && d >= 1 && d <= (mo === 2 && isLeap(y) ? 29 : DAYS[mo]!);
}
/** RFC 3339 full-time as validators read it (ajv-formats: the offset's colon and minutes optional), a leap second at 23:59 UTC. */
function validTime(s: string): boolean {
  const m = /^(\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:[zZ]|([+-])(\d{2})(?::?(\d{2}))?)$/.exec(s);
  if (m === null) return false;
  const [h, mi, sec] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const sign = m[5] === '-' ? -1 : 1;
  const [oh, om] = [Number(m[6] ?? 0), Number(m[7] ?? 0)];
  if (oh > 23 || om > 59 || h > 23 || mi > 59) return false;
  if (sec < 60) return true;
  if (sec > 60) return false;
  const utc = (((h * 60 + mi - sign * (oh * 60 + om)) % 1440) + 1440) % 1440;
  return utc === 23 * 60 + 59;
}
function validFormat(format: string, s: string): boolean {
  switch (format) {
    case 'date':
      return validDate(s);
    case 'time':
      return validTime(s);
    case 'date-time': {
      const parts = s.split(/[tT\s]/);
      return parts.length === 2 && validDate(parts[0]!) && validTime(parts[1]!);
    }
    case 'uuid':
      return /^(?:urn:uuid:)?[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$/i.test(s);
    default:
      return true;
  }
}

/** Non-negative integers in [a, b] (no leading zeros) as GBNF terminal sequences, grouped by digit count. */
function uintRange(a: number, b: number): { digits: number; alts: string[] }[] {
  const out: { digits: number; alts: string[] }[] = [];
  if (a > b) return out;
  for (let d = String(a).length; d <= String(b).length; d++) {
    const lo = Math.max(a, d === 1 ? 0 : 10 ** (d - 1));
    const hi = Math.min(b, 10 ** d - 1);
    if (lo <= hi) out.push({ digits: d, alts: sameLength(String(lo), String(hi)) });
  }
  return out;
}

/** Digit strings of one length between lo and hi (inclusive). */
function sameLength(lo: string, hi: string): string[] {
  const n = lo.length;
  if (lo === hi) return [gbnfLiteral(lo)];
  if (n === 1) return [`[${lo}-${hi}]`];
  const l0 = Number(lo[0]);
  const h0 = Number(hi[0]);
  const tail = (s: string): string => s.slice(1);
  // a leading digit before a sequence ("1" + "20" → "120")
  const lead = (d: number, s: string): string => (/^"[0-9]+"/.test(s) ? `"${d}${s.slice(1)}` : `"${d}" ${s}`);
  const any = (k: number): string => (k === 1 ? '[0-9]' : `[0-9]{${k}}`);
  if (l0 === h0) return sameLength(tail(lo), tail(hi)).map((s) => lead(l0, s));
  const lowFull = /^0*$/.test(tail(lo));
  const highFull = /^9*$/.test(tail(hi));
  const out: string[] = [];
  if (!lowFull) out.push(...sameLength(tail(lo), '9'.repeat(n - 1)).map((s) => lead(l0, s)));
  const start = lowFull ? l0 : l0 + 1;
  const end = highFull ? h0 : h0 - 1;
  if (start <= end) out.push(`${start === end ? `"${start}"` : `[${start}-${end}]`} ${any(n - 1)}`);
  if (!highFull) out.push(...sameLength('0'.repeat(n - 1), tail(hi)).map((s) => lead(h0, s)));
  return out;
}

/**
 * Decimal magnitudes m with a ≤ m ≤ b (a < m, m < b when exclusive), a and b integers in [0, CAP], at most
 * 15 digits in all: then a value read back as a double is on the same side of every integer bound.
 */
function magnitudes(a: number, aEx: boolean, b: number, bEx: boolean, fractions: boolean): string[] {
  if (a > b || (a === b && (aEx || bEx))) return [];
  if (!fractions) return uintRange(aEx ? a + 1 : a, bEx ? b - 1 : b).flatMap((p) => p.alts);
  if (a === b) return [gbnfLiteral(String(a))];
  const out: string[] = [];
  const fracDigits = (digits: number): number => 15 - digits;
  const fraction = (k: number): string => (k === 1 ? '[0-9]' : `[0-9]{1,${k}}`);
  if (aEx) {
    // a itself with a fraction that is not zero
    const f = fracDigits(String(a).length);
    if (f >= 1) out.push(`${gbnfLiteral(String(a))} "."${f > 1 ? ` [0-9]{0,${f - 1}}` : ''} [1-9]`);
  }
  // b itself takes no fraction; when b's length leaves no room for one anyway, b joins the range below it.
  const bJoins = !bEx && fracDigits(String(b).length) === 0;
  for (const piece of uintRange(aEx ? a + 1 : a, bJoins ? b : b - 1)) {
    const f = fracDigits(piece.digits);
    for (const alt of piece.alts) out.push(f >= 1 ? `${alt} ( "." ${fraction(f)} )?` : alt);
  }
  if (!bEx && !bJoins) out.push(gbnfLiteral(String(b)));
  return out;
}

/** "-" before a sequence of terminals ("-" + "12" → "-12"). */
function negative(seq: string): string {
  return seq.startsWith('"') ? `"-${seq.slice(1)}` : `"-" ${seq}`;
}

interface Bound {
  v: number;
  ex: boolean;
}

/** What a oneOf branch can generate, for telling branches apart. */
interface Summary {
  kinds: Set<Kind>;
  /** Every value the schema accepts, when it is an enum/const (or a union of them). */
  literals?: Json[];
  /** For an object-only schema: the keys it generates (undefined: any) and those it requires. */
  object?: { keys: Set<string> | undefined; required: Set<string>; schemaOf: (key: string) => unknown };
}

class Compiler {
  private readonly rules = new Map<string, Alt[]>();
  private readonly taken = new Set<string>(['root', ...Object.keys(PRIMITIVES)]);
  private readonly refRules = new Map<string, string>();
  /** Why parts of the schema match nothing (for the error when the whole does). */
  private readonly conflicts: string[] = [];
  private readonly root: unknown;
  private readonly source: string | undefined;

  constructor(root: unknown, source: string | undefined) {
    this.root = root;
    this.source = source;
  }

  run(): string {
    this.rules.set('root', this.compile(this.root, '#', 0));
    this.removeUnitCycles();
    const productive = this.prune();
    if (!productive.has('root')) {
      const why = this.conflicts.length > 0 ? ` (${this.conflicts[0]})` : '';
      this.fail('#', `no JSON value satisfies the schema${why}`);
    }
    return this.emit();
  }

  private fail(ptr: string, message: string): never {
    throw new JsonSchemaError(ptr, message, this.source);
  }

  private never(ptr: string, reason: string): Alt[] {
    this.conflicts.push(`${ptr}: ${reason}`);
    return [];
  }

  private newRule(hint: string, alts: Alt[] = []): string {
    const base = hint.replace(/[^A-Za-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40) || 'r';
    let name = base;
    for (let i = 2; this.taken.has(name); i++) name = `${base}-${i}`;
    this.taken.add(name);
    this.rules.set(name, alts);
    return name;
  }

  /** Alternatives as a sequence: inline when one short one, else a rule of their own. */
  private seq(alts: Alt[], hint: string): Tok[] {
    if (alts.length === 1 && alts[0]!.length <= 5) return alts[0]!;
    return [ref(this.newRule(hint, alts))];
  }

  private hint(ptr: string): string {
    const last = ptr.slice(ptr.lastIndexOf('/') + 1);
    return ptr === '#' ? 'root' : /^[0-9]+$/.test(last) ? `${ptr.split('/').slice(-2).join('-')}` : last;
  }

  private object(schema: unknown, ptr: string): SchemaObject | boolean {
    if (typeof schema === 'boolean' || isPlainObject(schema)) return schema;
    this.fail(ptr, `a schema must be an object or a boolean, got ${Array.isArray(schema) ? 'an array' : schema === null ? 'null' : typeof schema}`);
  }

  private checkKeywords(s: SchemaObject, ptr: string): void {
    for (const key of Object.keys(s)) {
      if (ANNOTATIONS.has(key) || key.startsWith('x-') || SUPPORTED.has(key)) continue;
      const why = UNSUPPORTED[key];
      this.fail(child(ptr, key), why !== undefined ? `'${key}' is not supported: ${why}` : `unknown keyword '${key}'`);
    }
    if (Object.hasOwn(s, 'format')) {
      const f = s.format;
      if (typeof f !== 'string') this.fail(child(ptr, 'format'), 'format must be a string');
      if (STRING_FORMATS[f] === undefined && !NUMBER_FORMATS.has(f)) this.fail(child(ptr, 'format'), `format '${f}' is not supported (${FORMATS_SUPPORTED})`);
    }
  }

  private schemaList(x: unknown, ptr: string, nonEmpty = true): unknown[] {
    if (!Array.isArray(x) || (nonEmpty && x.length === 0)) this.fail(ptr, `must be a${nonEmpty ? ' non-empty' : 'n'} array of schemas`);
    x.forEach((s, i) => this.object(s, child(ptr, i)));
    return x;
  }

  private count(s: SchemaObject, key: string, ptr: string): number | undefined {
    const v = s[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) this.fail(child(ptr, key), `${key} must be a non-negative integer`);
    return v;
  }

  /** The schema a "#…" reference points at. */
  private resolve(refValue: unknown, ptr: string): { schema: unknown; ptr: string } {
    const at = child(ptr, '$ref');
    if (typeof refValue !== 'string') this.fail(at, '$ref must be a string');
    if (!refValue.startsWith('#')) this.fail(at, `only references inside the schema ("#/…") are supported, got '${refValue}'`);
    if (refValue !== '#' && !refValue.startsWith('#/')) this.fail(at, `anchors are not supported, got '${refValue}'`);
    let keys: string[];
    try {
      keys = refValue === '#' ? [] : refValue.slice(2).split('/').map((raw) => decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~'));
    } catch {
      this.fail(at, `bad reference '${refValue}'`);
    }
    let node: unknown = this.root;
    for (const key of keys) {
      if (Array.isArray(node) && /^[0-9]+$/.test(key) && Number(key) < node.length) node = node[Number(key)];
      else if (isPlainObject(node) && Object.hasOwn(node, key)) node = node[key];
      else this.fail(at, `'${refValue}' does not resolve`);
    }
    const target = child('#', ...keys);
    this.object(node, target);
    return { schema: node, ptr: target };
  }

  // ---- merging (allOf, $ref with siblings, anyOf siblings) ----

  /** A schema without $ref and allOf at its top (merged into it). */
  private flatten(schema: unknown, ptr: string, hops: number): SchemaObject | boolean {
    const s = this.object(schema, ptr);
    if (typeof s === 'boolean') return s;
    this.checkKeywords(s, ptr);
    if (hops > MAX_HOPS) this.fail(ptr, 'references and allOf merge without end (a reference cycle, or two different recursive schemas merged: not supported)');
    if (Object.hasOwn(s, '$ref')) {
      const target = this.resolve(s.$ref, ptr);
      return this.flatten(this.merge(target.schema, omit(s, '$ref'), ptr, hops + 1), ptr, hops + 1);
    }
    if (Object.hasOwn(s, 'allOf')) {
      let merged: unknown = omit(s, 'allOf');
      for (const item of this.schemaList(s.allOf, child(ptr, 'allOf'))) merged = this.merge(merged, item, ptr, hops + 1);
      return this.flatten(merged, ptr, hops + 1);
    }
    return s;
  }

  /** One schema that accepts what both accept (or a JsonSchemaError where that cannot be said). */
  private merge(a: unknown, b: unknown, ptr: string, hops: number): SchemaObject | boolean {
    // A schema merged with itself is itself (and a recursive one would otherwise be merged without end).
    if (isJson(a) && isJson(b) && deepEqual(a, b)) return this.object(a, ptr);
    const x = this.flatten(a, ptr, hops);
    const y = this.flatten(b, ptr, hops);
    if (x === false || y === false) return false;
    if (x === true) return y;
    if (y === true) return x;
    if ((Object.hasOwn(x, 'anyOf') || Object.hasOwn(x, 'oneOf')) && (Object.hasOwn(y, 'anyOf') || Object.hasOwn(y, 'oneOf'))) {
      this.fail(ptr, 'cannot merge two anyOf/oneOf (from allOf or $ref with sibling keywords)');
    }
    const out: SchemaObject = {};
    for (const key of new Set([...Object.keys(x), ...Object.keys(y)])) {
      if (ANNOTATIONS.has(key) || key.startsWith('x-')) continue;
      if (!Object.hasOwn(y, key)) out[key] = x[key];
      else if (!Object.hasOwn(x, key)) out[key] = y[key];
      else {
        const v = this.mergeKeyword(key, x[key], y[key], ptr, hops);
        if (v === NOTHING) return false;
        if (v !== undefined) out[key] = v;
      }
    }
    // A property one side declares must also satisfy the other side's additionalProperties.
    for (const [side, other] of [[x, y], [y, x]] as const) {
      const extra = other.additionalProperties;
      if (extra === undefined || extra === true || !isPlainObject(side.properties)) continue;
      const declared = isPlainObject(other.properties) ? other.properties : {};
      const props = { ...(out.properties as SchemaObject) };
      for (const k of Object.keys(side.properties)) if (!Object.hasOwn(declared, k)) props[k] = this.merge(props[k], extra, child(ptr, 'properties', k), hops + 1);
      out.properties = props;
    }
    return out;
  }

  private mergeKeyword(key: string, a: unknown, b: unknown, ptr: string, hops: number): unknown {
    const at = child(ptr, key);
    switch (key) {
      case 'type': {
        const ta = this.typeList(a, at);
        const tb = this.typeList(b, at);
        const both = ta.filter((t) => tb.includes(t) || (t === 'integer' && tb.includes('number')));
        for (const t of tb) if (t === 'integer' && ta.includes('number') && !both.includes(t)) both.push(t);
        return both;
      }
      case 'enum': {
        if (!Array.isArray(a) || !Array.isArray(b)) this.fail(at, 'enum must be an array');
        return a.filter((v) => isJson(v) && b.some((w) => isJson(w) && deepEqual(v, w)));
      }
      case 'const':
        if (isJson(a) && isJson(b) && deepEqual(a, b)) return a;
        this.conflicts.push(`${at}: two different const values`);
        return NOTHING;
      case 'required':
        if (!Array.isArray(a) || !Array.isArray(b)) this.fail(at, 'required must be an array of strings');
        return [...new Set([...a, ...b])];
      case 'properties': {
        if (!isPlainObject(a) || !isPlainObject(b)) this.fail(at, 'properties must be an object');
        const out: SchemaObject = { ...a };
        for (const [k, v] of Object.entries(b)) out[k] = Object.hasOwn(a, k) ? this.merge(a[k], v, child(at, k), hops + 1) : v;
        return out;
      }
      case 'additionalProperties':
      case 'additionalItems':
        return this.merge(a, b, at, hops + 1);
      case 'items':
        if (!Array.isArray(a) && !Array.isArray(b)) return this.merge(a, b, at, hops + 1);
        break;
      case 'minItems':
      case 'minLength':
      case 'minProperties':
      case 'minimum':
      case 'maxItems':
      case 'maxLength':
      case 'maxProperties':
      case 'maximum':
        if (typeof a !== 'number' || typeof b !== 'number') this.fail(at, `${key} must be a number`);
        return key.startsWith('min') ? Math.max(a, b) : Math.min(a, b);
      case 'exclusiveMinimum':
      case 'exclusiveMaximum':
        if (typeof a === 'number' && typeof b === 'number') return key === 'exclusiveMinimum' ? Math.max(a, b) : Math.min(a, b);
        break;
      case '$defs':
      case 'definitions':
        return undefined;
    }
    if (isJson(a) && isJson(b) && deepEqual(a, b)) return a;
    this.fail(at, `cannot merge two different '${key}' values (from allOf or $ref with sibling keywords)`);
  }

  private typeList(t: unknown, at: string): TypeName[] {
    const list = Array.isArray(t) ? t : [t];
    for (const x of list) if (!TYPES.includes(x as TypeName)) this.fail(at, `unknown type ${JSON.stringify(x)} (types: ${TYPES.join(', ')})`);
    if (Array.isArray(t) && new Set(list).size !== list.length) this.fail(at, 'type lists each type once');
    return list as TypeName[];
  }

  // ---- compiling ----

  /** The alternatives that generate exactly (a subset of) what `schema` accepts; [] when nothing. */
  private compile(schema: unknown, ptr: string, hops: number): Alt[] {
    const s = this.object(schema, ptr);
    if (s === true) return [[ref('value')]];
    if (s === false) return this.never(ptr, 'the schema is false');
    this.checkKeywords(s, ptr);
    if (hops > MAX_HOPS) this.fail(ptr, 'references and allOf merge without end (a reference cycle, or two different recursive schemas merged: not supported)');
    if (Object.hasOwn(s, '$ref')) {
      const target = this.resolve(s.$ref, ptr);
      if (!constrains(omit(s, '$ref'))) return [[ref(this.refRule(target.schema, target.ptr))]];
      return this.compile(this.flatten(s, ptr, hops), ptr, hops + 1);
    }
    if (Object.hasOwn(s, 'allOf')) return this.compile(this.flatten(s, ptr, hops), ptr, hops + 1);
    if (Object.hasOwn(s, 'anyOf') || Object.hasOwn(s, 'oneOf')) {
      if (Object.hasOwn(s, 'anyOf') && Object.hasOwn(s, 'oneOf')) this.fail(ptr, 'anyOf and oneOf side by side are not supported (wrap one in allOf… or merge them)');
      const key = Object.hasOwn(s, 'anyOf') ? 'anyOf' : 'oneOf';
      const siblings = omit(s, key);
      const branches = this.schemaList(s[key], child(ptr, key)).map((b, i) => (constrains(siblings) ? this.merge(siblings, b, child(ptr, key, i), hops + 1) : b));
      if (key === 'oneOf') this.checkExclusive(branches, child(ptr, key));
      return branches.flatMap((b, i) => this.compile(b, child(ptr, key, i), hops + 1));
    }
    if (Object.hasOwn(s, 'enum') || Object.hasOwn(s, 'const')) return this.compileEnum(s, ptr);
    const types = this.types(s, ptr);
    if (types === undefined) return [[ref('value')]];
    if (types.length === 0) return this.never(ptr, 'no type is allowed');
    return types.flatMap((t) => this.compileType(t, s, ptr));
  }

  private refRule(schema: unknown, ptr: string): string {
    let name = this.refRules.get(ptr);
    if (name === undefined) {
      name = this.newRule(ptr === '#' ? 'root-ref' : `ref-${ptr.slice(ptr.lastIndexOf('/') + 1)}`);
      this.refRules.set(ptr, name); // before compiling: a recursive reference finds it
      this.rules.set(name, this.compile(schema, ptr, 0));
    }
    return name;
  }

  /** The types to generate: `type`, else those the keywords speak of; undefined: any value. */
  private types(s: SchemaObject, ptr: string): TypeName[] | undefined {
    let types: TypeName[];
    if (Object.hasOwn(s, 'type')) types = this.typeList(s.type, child(ptr, 'type'));
    else {
      const implied = new Set<TypeName>();
      for (const k of Object.keys(s)) if (KEYWORD_TYPES[k] !== undefined) implied.add(KEYWORD_TYPES[k]);
      if (typeof s.format === 'string') implied.add(NUMBER_FORMATS.has(s.format) ? 'number' : 'string');
      if (implied.size === 0) return undefined;
      types = [...implied];
    }
    // integer ⊂ number
    return types.includes('number') ? types.filter((t) => t !== 'integer') : types;
  }

  private compileType(t: TypeName, s: SchemaObject, ptr: string): Alt[] {
    switch (t) {
      case 'null':
        return [[lit('"null"')]];
      case 'boolean':
        return [[lit('"true"')], [lit('"false"')]];
      case 'string':
        return this.compileString(s, ptr);
      case 'number':
      case 'integer':
        return this.compileNumber(s, ptr, t === 'integer');
      case 'object':
        return this.compileObject(s, ptr);
      case 'array':
        return this.compileArray(s, ptr);
    }
  }

  private compileEnum(s: SchemaObject, ptr: string): Alt[] {
    let values: Json[] | undefined;
    if (Object.hasOwn(s, 'enum')) {
      const e = s.enum;
      if (!Array.isArray(e)) this.fail(child(ptr, 'enum'), 'enum must be an array');
      e.forEach((v, i) => {
        if (!isJson(v)) this.fail(child(ptr, 'enum', i), 'not a JSON value');
      });
      values = e as Json[];
    }
    if (Object.hasOwn(s, 'const')) {
      const c = s.const;
      if (!isJson(c)) this.fail(child(ptr, 'const'), 'not a JSON value');
      values = values === undefined ? [c] : values.filter((v) => deepEqual(v, c));
    }
    const rest = omit(s, 'enum', 'const');
    const kept: Json[] = [];
    for (const v of values ?? []) if (!kept.some((w) => deepEqual(v, w)) && this.conforms(v, rest, ptr, 0)) kept.push(v);
    if (kept.length === 0) return this.never(ptr, 'no enum/const value satisfies the other keywords');
    return kept.map((v) => this.literal(v));
  }

  /** A JSON value as JSON.stringify writes it (whitespace allowed inside arrays and objects). */
  private literal(v: Json): Alt {
    if (Array.isArray(v)) {
      if (v.length === 0) return [lit('"["'), WS, lit('"]"')];
      return [lit('"["'), WS, ...v.flatMap((x, i) => [...(i > 0 ? [WS, COMMA, WS] : []), ...this.literal(x)]), WS, lit('"]"')];
    }
    if (isPlainObject(v)) {
      const entries = Object.entries(v);
      if (entries.length === 0) return [lit('"{"'), WS, lit('"}"')];
      return [
        lit('"{"'),
        WS,
        ...entries.flatMap(([k, x], i) => [...(i > 0 ? [WS, COMMA, WS] : []), lit(gbnfLiteral(JSON.stringify(k))), WS, COLON, WS, ...this.literal(x)]),
        WS,
        lit('"}"'),
      ];
    }
    return [lit(gbnfLiteral(JSON.stringify(v)))];
  }

  private compileString(s: SchemaObject, ptr: string): Alt[] {
    const min = this.count(s, 'minLength', ptr) ?? 0;
    const max = this.count(s, 'maxLength', ptr);
    const format = typeof s.format === 'string' ? STRING_FORMATS[s.format] : undefined;
    if (format !== undefined) {
      const [lo, hi] = format.lengths;
      if (min > hi || (max !== undefined && max < lo)) return this.never(ptr, `minLength/maxLength exclude every ${String(s.format)}`);
      if (min > lo || (max !== undefined && max < hi)) {
        this.fail(child(ptr, min > lo ? 'minLength' : 'maxLength'), `minLength/maxLength that cut into the lengths of format '${String(s.format)}' (${lo} to ${hi}) are not supported`);
      }
      return [[QUOTE, ref(format.rule), QUOTE]];
    }
    if (max !== undefined && min > max) return this.never(ptr, `minLength ${min} exceeds maxLength ${max}`);
    if (min > MAX_COUNT || (max !== undefined && max > MAX_COUNT)) this.fail(child(ptr, max !== undefined && max > MAX_COUNT ? 'maxLength' : 'minLength'), `lengths above ${MAX_COUNT} are not supported`);
    if (min === 0 && max === undefined) return [[ref('string')]];
    return [[QUOTE, { rep: [ref('char')], min, max }, QUOTE]];
  }

  private compileNumber(s: SchemaObject, ptr: string, integerType: boolean): Alt[] {
    let integer = integerType;
    const lower: Bound[] = [];
    const upper: Bound[] = [];
    if (Object.hasOwn(s, 'multipleOf')) {
      const m = s.multipleOf;
      if (typeof m !== 'number' || !(m > 0)) this.fail(child(ptr, 'multipleOf'), 'multipleOf must be a number above 0');
      if (m !== 1) this.fail(child(ptr, 'multipleOf'), 'multipleOf is not supported (except 1; use type integer with bounds)');
      integer = true;
    }
    if (s.format === 'int32' || s.format === 'int64') integer = true;
    if (s.format === 'int32') {
      lower.push({ v: -(2 ** 31), ex: false });
      upper.push({ v: 2 ** 31 - 1, ex: false });
    }
    const num = (key: string): number | undefined => {
      const v = s[key];
      if (v === undefined || typeof v === 'boolean') return undefined;
      if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(child(ptr, key), `${key} must be a number`);
      if (!integer && !Number.isInteger(v)) this.fail(child(ptr, key), `bounds that are not integers are not supported on type number (got ${v})`);
      return v;
    };
    const min = num('minimum');
    const max = num('maximum');
    const exMin = num('exclusiveMinimum');
    const exMax = num('exclusiveMaximum');
    // draft-04: exclusiveMinimum/exclusiveMaximum: true make minimum/maximum exclusive
    if (min !== undefined) lower.push({ v: min, ex: s.exclusiveMinimum === true });
    if (max !== undefined) upper.push({ v: max, ex: s.exclusiveMaximum === true });
    if (exMin !== undefined) lower.push({ v: exMin, ex: true });
    if (exMax !== undefined) upper.push({ v: exMax, ex: true });
    if (lower.length === 0 && upper.length === 0) return [[ref(integer ? 'integer' : 'number')]];
    let alts: string[] = [];
    if (integer) {
      // As inclusive integer bounds, within ±CAP.
      let lo = -CAP;
      let hi = CAP;
      for (const b of lower) lo = Math.max(lo, b.ex ? Math.floor(b.v) + 1 : Math.ceil(b.v));
      for (const b of upper) hi = Math.min(hi, b.ex ? Math.ceil(b.v) - 1 : Math.floor(b.v));
      if (hi >= 0) alts.push(...magnitudes(Math.max(lo, 0), false, hi, false, false));
      if (lo < 0) alts.push(...magnitudes(Math.max(1, -hi), false, -lo, false, false).map(negative));
    } else {
      // The tightest bound on each side (exclusive wins a tie), within ±CAP.
      const tight = (bs: Bound[], sign: 1 | -1): Bound => {
        let t: Bound = { v: -CAP * sign, ex: false };
        for (const b of bs) if (b.v * sign > t.v * sign || (b.v === t.v && b.ex)) t = b;
        return t.v * sign < -CAP ? { v: -CAP * sign, ex: false } : t;
      };
      const lo = tight(lower, 1);
      const hi = tight(upper, -1);
      if (lo.v > CAP || hi.v < -CAP) return this.never(ptr, `bounds beyond ±${CAP} are not supported`);
      if (hi.v > 0 || (hi.v === 0 && !hi.ex)) alts.push(...magnitudes(lo.v >= 0 ? lo.v : 0, lo.v >= 0 && lo.ex, hi.v, hi.ex, true));
      if (lo.v < 0) {
        const a: Bound = hi.v < 0 ? { v: -hi.v, ex: hi.ex } : { v: 0, ex: true };
        alts.push(...magnitudes(a.v, a.ex, -lo.v, lo.ex, true).map(negative));
      }
    }
    alts = [...new Set(alts)];
    if (alts.length === 0) return this.never(ptr, 'no number is within the bounds');
    return alts.map((a) => [lit(a)]);
  }

  private compileObject(s: SchemaObject, ptr: string): Alt[] {
    const props = s.properties ?? {};
    if (!isPlainObject(props)) this.fail(child(ptr, 'properties'), 'properties must be an object');
    const required = s.required ?? [];
    if (!Array.isArray(required) || !required.every((r) => typeof r === 'string')) this.fail(child(ptr, 'required'), 'required must be an array of strings');
    const extra = s.additionalProperties;
    if (extra !== undefined) this.object(extra, child(ptr, 'additionalProperties'));
    const minP = this.count(s, 'minProperties', ptr) ?? 0;
    const maxP = this.count(s, 'maxProperties', ptr);
    const req = new Set(required as string[]);
    const entries: { name: string; schema: unknown; ptr: string }[] = Object.keys(props).map((name) => ({ name, schema: props[name], ptr: child(ptr, 'properties', name) }));
    for (const r of req) if (!Object.hasOwn(props, r)) entries.push({ name: r, schema: extra ?? true, ptr: child(ptr, 'additionalProperties') });

    const open = lit('"{"');
    const close = lit('"}"');
    if (entries.length === 0) {
      if (extra === false) return minP > 0 ? this.never(ptr, 'minProperties with no property allowed') : [[open, WS, close]];
      if (minP > 0) this.fail(child(ptr, 'minProperties'), 'minProperties is not supported without required properties');
      const valueSeq = extra === undefined || extra === true ? [ref('value')] : this.seq(this.compile(extra, child(ptr, 'additionalProperties'), 0), `${this.hint(ptr)}-value`);
      if (maxP === undefined && valueSeq.length === 1 && 'ref' in valueSeq[0]! && valueSeq[0].ref === 'value') return [[ref('object')]];
      if (maxP === 0) return [[open, WS, close]];
      // A map: any keys (a repeated key only lowers the count of properties, so maxProperties holds).
      const kv = [ref('string'), WS, COLON, WS, ...valueSeq];
      const more: Tok = { rep: [WS, COMMA, WS, ...kv], min: 0, max: maxP === undefined ? undefined : maxP - 1 };
      if (maxP !== undefined && maxP - 1 > MAX_COUNT) this.fail(child(ptr, 'maxProperties'), `counts above ${MAX_COUNT} are not supported`);
      return [[open, WS, opt([...kv, more, WS]), close]];
    }
    if (minP > req.size) this.fail(child(ptr, 'minProperties'), `minProperties ${minP} is more than the required properties (${req.size}): not supported`);
    if (maxP !== undefined && maxP < entries.length) this.fail(child(ptr, 'maxProperties'), `maxProperties ${maxP} is less than the properties (${entries.length}): not supported`);

    const hint = this.hint(ptr);
    const members = entries.map((e) => [lit(gbnfLiteral(JSON.stringify(e.name))), WS, COLON, WS, ...this.seq(this.compile(e.schema, e.ptr, 0), `${hint}-${e.name}`)]);
    const n = members.length;
    // after[k]: the properties from k on, once one has been written (each after a comma).
    const after: Tok[][] = new Array<Tok[]>(n + 1);
    after[n] = [];
    for (let k = n - 1; k >= 0; k--) {
      const m = [WS, COMMA, WS, ...members[k]!];
      const body = req.has(entries[k]!.name) ? [...m, ...after[k + 1]!] : [opt(m), ...after[k + 1]!];
      after[k] = k === n - 1 ? body : [ref(this.newRule(`${hint}-after-${k}`, [body]))];
    }
    // first[k]: the properties from k on when none has been written yet (at least one).
    const first = (k: number): Tok[] => {
      const alts: Alt[] = [[...members[k]!, ...after[k + 1]!]];
      if (!req.has(entries[k]!.name) && k + 1 < n) alts.push(first(k + 1));
      return alts.length === 1 ? alts[0]! : [ref(this.newRule(`${hint}-from-${k}`, alts))];
    };
    const body = first(0);
    if (entries.some((e) => req.has(e.name))) return [[open, WS, ...body, WS, close]];
    return [[open, WS, opt([...body, WS]), close]];
  }

  private compileArray(s: SchemaObject, ptr: string): Alt[] {
    let prefix: unknown[] = [];
    let prefixKey = 'prefixItems';
    let rest: unknown = true;
    let restKey = 'items';
    let restGiven = false;
    if (Object.hasOwn(s, 'prefixItems')) {
      prefix = this.schemaList(s.prefixItems, child(ptr, 'prefixItems'), false);
      if (Object.hasOwn(s, 'items')) (rest = s.items), (restGiven = true);
    } else if (Array.isArray(s.items)) {
      prefixKey = 'items';
      prefix = this.schemaList(s.items, child(ptr, 'items'), false);
      restKey = 'additionalItems';
      if (Object.hasOwn(s, 'additionalItems')) (rest = s.additionalItems), (restGiven = true);
    } else if (Object.hasOwn(s, 'items')) (rest = s.items), (restGiven = true);
    if (restGiven) this.object(rest, child(ptr, restKey));
    const P = prefix.length;
    // After a tuple, no items unless a schema says what they are.
    if (P > 0 && !restGiven) rest = false;
    const min = this.count(s, 'minItems', ptr) ?? 0;
    let max = this.count(s, 'maxItems', ptr) ?? Infinity;
    if (rest === false) max = Math.min(max, P);
    if (s.uniqueItems !== undefined && typeof s.uniqueItems !== 'boolean') this.fail(child(ptr, 'uniqueItems'), 'uniqueItems must be a boolean');
    if (s.uniqueItems === true && max > 1) this.fail(child(ptr, 'uniqueItems'), 'uniqueItems is not supported (unless maxItems ≤ 1)');
    if (min > max) return this.never(ptr, `minItems ${min} exceeds the items allowed (${max})`);
    if (min > MAX_COUNT || (max !== Infinity && max - P > MAX_COUNT)) this.fail(child(ptr, 'maxItems'), `counts above ${MAX_COUNT} are not supported`);
    const open = lit('"["');
    const close = lit('"]"');
    if (max === 0) return [[open, WS, close]];

    const hint = this.hint(ptr);
    const prefixSeqs = prefix.map((p, i) => this.seq(this.compile(p, child(ptr, prefixKey, i), 0), `${hint}-${i}`));
    const restSeq = max > P ? this.seq(this.compile(rest, child(ptr, restKey), 0), `${hint}-item`) : [];
    const item = (i: number): Tok[] => (i < P ? prefixSeqs[i]! : restSeq);
    // The items from i on, once i items have been written.
    const tail = (i: number): Tok[] => {
      if (i >= max) return [];
      if (i >= P) return [{ rep: [WS, COMMA, WS, ...restSeq], min: Math.max(0, min - i), max: max === Infinity ? undefined : max - i }];
      const m = [WS, COMMA, WS, ...item(i), ...tail(i + 1)];
      return i < min ? m : [opt(m)];
    };
    const content = [...item(0), ...tail(1)];
    if (min >= 1) return [[open, WS, ...content, WS, close]];
    return [[open, WS, opt([...content, WS]), close]];
  }

  // ---- checking values (enum filtering, oneOf) ----

  /** Whether a JSON value is valid against a schema (for the keywords this module supports). */
  private conforms(v: Json, schema: unknown, ptr: string, hops: number): boolean {
    const s = this.object(schema, ptr);
    if (typeof s === 'boolean') return s;
    this.checkKeywords(s, ptr);
    if (hops > MAX_HOPS) this.fail(ptr, 'references refer to themselves without end (a reference cycle)');
    if (Object.hasOwn(s, '$ref')) {
      const t = this.resolve(s.$ref, ptr);
      if (!this.conforms(v, t.schema, t.ptr, hops + 1)) return false;
    }
    if (Object.hasOwn(s, 'allOf') && !this.schemaList(s.allOf, child(ptr, 'allOf')).every((b, i) => this.conforms(v, b, child(ptr, 'allOf', i), hops + 1))) return false;
    if (Object.hasOwn(s, 'anyOf') && !this.schemaList(s.anyOf, child(ptr, 'anyOf')).some((b, i) => this.conforms(v, b, child(ptr, 'anyOf', i), hops + 1))) return false;
    if (Object.hasOwn(s, 'oneOf') && this.schemaList(s.oneOf, child(ptr, 'oneOf')).filter((b, i) => this.conforms(v, b, child(ptr, 'oneOf', i), hops + 1)).length !== 1) return false;
    if (Object.hasOwn(s, 'enum')) {
      if (!Array.isArray(s.enum)) this.fail(child(ptr, 'enum'), 'enum must be an array');
      if (!s.enum.some((w) => isJson(w) && deepEqual(v, w))) return false;
    }
    if (Object.hasOwn(s, 'const') && !(isJson(s.const) && deepEqual(v, s.const))) return false;
    const kind = kindOf(v);
    if (Object.hasOwn(s, 'type')) {
      const types = this.typeList(s.type, child(ptr, 'type'));
      const ok = types.some((t) => t === kind || (t === 'integer' && kind === 'number' && Number.isInteger(v)));
      if (!ok) return false;
    }
    if (typeof v === 'string') {
      const n = [...v].length;
      if (n < (this.count(s, 'minLength', ptr) ?? 0) || n > (this.count(s, 'maxLength', ptr) ?? Infinity)) return false;
      if (typeof s.format === 'string' && !validFormat(s.format, v)) return false;
    } else if (typeof v === 'number') {
      const n = (key: string): number | undefined => {
        const x = s[key];
        if (x === undefined || typeof x === 'boolean') return undefined;
        if (typeof x !== 'number') this.fail(child(ptr, key), `${key} must be a number`);
        return x;
      };
      const [min, max, exMin, exMax] = [n('minimum'), n('maximum'), n('exclusiveMinimum'), n('exclusiveMaximum')];
      if (min !== undefined && (s.exclusiveMinimum === true ? v <= min : v < min)) return false;
      if (max !== undefined && (s.exclusiveMaximum === true ? v >= max : v > max)) return false;
      if ((exMin !== undefined && v <= exMin) || (exMax !== undefined && v >= exMax)) return false;
      if (Object.hasOwn(s, 'multipleOf')) {
        if (s.multipleOf !== 1) this.fail(child(ptr, 'multipleOf'), 'multipleOf is not supported (except 1; use type integer with bounds)');
        if (!Number.isInteger(v)) return false;
      }
      if (s.format === 'int32' && !(Number.isInteger(v) && v >= -(2 ** 31) && v <= 2 ** 31 - 1)) return false;
      if (s.format === 'int64' && !Number.isInteger(v)) return false;
    } else if (Array.isArray(v)) {
      if (v.length < (this.count(s, 'minItems', ptr) ?? 0) || v.length > (this.count(s, 'maxItems', ptr) ?? Infinity)) return false;
      if (s.uniqueItems === true && v.some((x, i) => v.slice(0, i).some((y) => deepEqual(x, y)))) return false;
      let prefix: unknown[] = [];
      let rest: unknown = true;
      if (Array.isArray(s.prefixItems)) (prefix = s.prefixItems), (rest = s.items ?? true);
      else if (Array.isArray(s.items)) (prefix = s.items), (rest = s.additionalItems ?? true);
      else rest = s.items ?? true;
      if (!v.every((x, i) => this.conforms(x, i < prefix.length ? prefix[i] : rest, child(ptr, 'items', i), 0))) return false;
    } else if (isPlainObject(v)) {
      const keys = Object.keys(v);
      if (keys.length < (this.count(s, 'minProperties', ptr) ?? 0) || keys.length > (this.count(s, 'maxProperties', ptr) ?? Infinity)) return false;
      if (Array.isArray(s.required) && !s.required.every((r) => typeof r === 'string' && Object.hasOwn(v, r))) return false;
      const props = isPlainObject(s.properties) ? s.properties : {};
      for (const k of keys) {
        const sub = Object.hasOwn(props, k) ? props[k] : (s.additionalProperties ?? true);
        if (!this.conforms(v[k]!, sub, child(ptr, 'properties', k), 0)) return false;
      }
    }
    return true;
  }

  /** What a schema can generate, roughly but never claiming less than it does. */
  private summarize(schema: unknown, ptr: string, hops: number): Summary {
    const all = (): Summary => ({ kinds: new Set(ALL_KINDS) });
    if (hops > MAX_HOPS) return all();
    const s = this.flatten(schema, ptr, hops);
    if (s === true) return all();
    if (s === false) return { kinds: new Set() };
    for (const key of ['anyOf', 'oneOf'] as const) {
      if (!Object.hasOwn(s, key)) continue;
      const siblings = omit(s, key);
      const parts = this.schemaList(s[key], child(ptr, key)).map((b, i) =>
        this.summarize(constrains(siblings) ? this.merge(siblings, b, ptr, hops + 1) : b, child(ptr, key, i), hops + 1),
      );
      const kinds = new Set(parts.flatMap((p) => [...p.kinds]));
      return parts.every((p) => p.literals !== undefined) ? { kinds, literals: parts.flatMap((p) => p.literals!) } : { kinds };
    }
    if (Object.hasOwn(s, 'enum') || Object.hasOwn(s, 'const')) {
      const values = [...(Array.isArray(s.enum) ? s.enum : []), ...(Object.hasOwn(s, 'const') ? [s.const] : [])].filter((v): v is Json => isJson(v));
      const literals = values.filter((v) => this.conforms(v, s, ptr, hops));
      return { kinds: new Set(literals.map(kindOf)), literals };
    }
    const types = this.types(s, ptr);
    if (types === undefined) return all();
    const kinds = new Set(types.map((t): Kind => (t === 'integer' ? 'number' : t)));
    if (kinds.size !== 1 || !kinds.has('object')) return { kinds };
    const props = isPlainObject(s.properties) ? s.properties : {};
    const required = new Set(Array.isArray(s.required) ? s.required.filter((r): r is string => typeof r === 'string') : []);
    const declared = [...Object.keys(props), ...required];
    return {
      kinds,
      object: {
        keys: declared.length > 0 ? new Set(declared) : undefined,
        required,
        schemaOf: (k) => (Object.hasOwn(props, k) ? props[k] : (s.additionalProperties ?? true)),
      },
    };
  }

  /** Refuses a oneOf whose branches might both accept one generated value. */
  private checkExclusive(branches: unknown[], ptr: string): void {
    const sums = branches.map((b, i) => this.summarize(b, child(ptr, i), 0));
    const noneConform = (values: Json[], schema: unknown, at: string): boolean => values.every((v) => !this.conforms(v, schema, at, 0));
    for (let i = 0; i < branches.length; i++) {
      for (let j = i + 1; j < branches.length; j++) {
        const [a, b] = [sums[i]!, sums[j]!];
        if (![...a.kinds].some((k) => b.kinds.has(k))) continue;
        if (a.literals !== undefined && noneConform(a.literals, branches[j], child(ptr, j))) continue;
        if (b.literals !== undefined && noneConform(b.literals, branches[i], child(ptr, i))) continue;
        if (a.object !== undefined && b.object !== undefined) {
          const [oa, ob] = [a.object, b.object];
          const lacks = (keys: Set<string> | undefined, req: Set<string>): boolean => keys !== undefined && [...req].some((k) => !keys.has(k));
          if (lacks(oa.keys, ob.required) && lacks(ob.keys, oa.required)) continue;
          // A required property whose values on each side fail the other side's schema for it.
          const told = [...oa.required].some((k) => {
            if (!ob.required.has(k)) return false;
            const [sa, sb] = [oa.schemaOf(k), ob.schemaOf(k)];
            const [la, lb] = [this.summarize(sa, child(ptr, i, 'properties', k), 0).literals, this.summarize(sb, child(ptr, j, 'properties', k), 0).literals];
            return la !== undefined && lb !== undefined && noneConform(la, sb, child(ptr, j, 'properties', k)) && noneConform(lb, sa, child(ptr, i, 'properties', k));
          });
          if (told) continue;
        }
        this.fail(ptr, `branches ${i} and ${j} may both accept one value, which oneOf forbids; use anyOf if that is fine (oneOf is compiled only when its branches differ in type, in enum/const values, or in a required const/enum property)`);
      }
    }
  }

  // ---- the grammar's shape: unit cycles, dead alternatives, text ----

  /** Collapses cycles of rules that are only other rules ("a ::= b | x", "b ::= a | y"), which would be left recursion. */
  private removeUnitCycles(): void {
    const unitTarget = (alt: Alt): string | undefined => {
      const t = alt.length === 1 ? alt[0]! : undefined;
      return t !== undefined && 'ref' in t && this.rules.has(t.ref) ? t.ref : undefined;
    };
    const reach = new Map<string, Set<string>>();
    for (const name of this.rules.keys()) {
      const seen = new Set<string>();
      const stack = [name];
      while (stack.length > 0) {
        for (const alt of this.rules.get(stack.pop()!)!) {
          const t = unitTarget(alt);
          if (t !== undefined && !seen.has(t)) seen.add(t), stack.push(t);
        }
      }
      reach.set(name, seen);
    }
    const replaced = new Map<string, Alt[]>();
    for (const [name, seen] of reach) {
      if (!seen.has(name)) continue;
      const alts: Alt[] = [];
      for (const r of new Set([name, ...seen])) for (const alt of this.rules.get(r)!) if (unitTarget(alt) === undefined) alts.push(alt);
      replaced.set(name, alts);
    }
    for (const [name, alts] of replaced) this.rules.set(name, alts);
  }

  /** Drops the alternatives that can never finish (a required part matches nothing); the productive rules. */
  private prune(): Set<string> {
    const productive = new Set<string>(Object.keys(PRIMITIVES));
    const ok = (t: Tok): boolean => ('lit' in t ? true : 'ref' in t ? productive.has(t.ref) : t.min === 0 || t.rep.every(ok));
    for (let changed = true; changed; ) {
      changed = false;
      for (const [name, alts] of this.rules) {
        if (!productive.has(name) && alts.some((alt) => alt.every(ok))) {
          productive.add(name);
          changed = true;
        }
      }
    }
    const clean = (seq: Tok[]): Tok[] => seq.flatMap((t): Tok[] => ('rep' in t ? (t.rep.every(ok) ? [{ ...t, rep: clean(t.rep) }] : []) : [t]));
    for (const [name, alts] of this.rules) this.rules.set(name, alts.filter((alt) => alt.every(ok)).map(clean));
    return productive;
  }

  private emit(): string {
    const order: string[] = [];
    const seen = new Set<string>();
    const visit = (name: string): void => {
      if (seen.has(name)) return;
      seen.add(name);
      order.push(name);
      const prim = PRIMITIVES[name];
      if (prim !== undefined && !this.rules.has(name)) {
        prim.uses.forEach(visit);
        return;
      }
      const walk = (seq: Tok[]): void => seq.forEach((t) => ('ref' in t ? visit(t.ref) : 'rep' in t ? walk(t.rep) : undefined));
      this.rules.get(name)!.forEach(walk);
    };
    visit('root');
    const seqText = (seq: Tok[]): string => (seq.length === 0 ? '""' : seq.map(tokText).filter((x) => x !== '').join(' ') || '""');
    const tokText = (t: Tok): string => {
      if ('lit' in t) return t.lit;
      if ('ref' in t) return t.ref;
      if (t.max === 0 || t.rep.length === 0) return '';
      const inner = t.rep.length === 1 && 'ref' in t.rep[0]! ? t.rep[0].ref : `( ${seqText(t.rep)} )`;
      if (t.min === 1 && t.max === 1) return seqText(t.rep);
      const q = t.min === 0 && t.max === 1 ? '?' : t.min === 0 && t.max === undefined ? '*' : t.min === 1 && t.max === undefined ? '+' : t.max === undefined ? `{${t.min},}` : t.min === t.max ? `{${t.min}}` : `{${t.min},${t.max}}`;
      return inner + q;
    };
    const width = Math.max(...order.map((n) => n.length));
    const lines = order.map((name) => {
      const body = this.rules.has(name) ? [...new Set(this.rules.get(name)!.map(seqText))].join(' | ') : PRIMITIVES[name]!.body;
      return `${name.padEnd(width)} ::= ${body}`;
    });
    return `${lines.join('\n')}\n`;
  }
}
