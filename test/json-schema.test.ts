// JSON Schema → GBNF (issue 21): for each schema the grammar parses, accepts hand-written valid instances in
// compact and pretty layouts, rejects invalid ones, and — the core proof — every string derived at random from
// the grammar (and every string a random character-by-character walk of the matcher completes) parses and
// validates with ajv. Then unsupported or invalid schemas give errors naming their JSON pointer, and the
// shipped model, constrained by compiled schemas, always ends with text that validates.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Ajv, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { defaultModelPath } from '../src/default-model.js';
import { RwkvError } from '../src/errors.js';
import { Rwkv } from '../src/generation/rwkv.js';
import { parseGbnf, type CharSet, type Grammar } from '../src/grammar/gbnf.js';
import { JsonSchemaError, jsonSchemaToGbnf } from '../src/grammar/json-schema.js';
import { charSetMatches, GrammarMatcher } from '../src/grammar/matcher.js';
import { rng } from './helpers/seeded.js';

// ajv-formats is CommonJS: its function is the module's default export or that export's own `default`.
type AddFormats = (ajv: Ajv) => Ajv;
const addFormats: AddFormats = (addFormatsModule as unknown as { default?: AddFormats }).default ?? (addFormatsModule as unknown as AddFormats);

const ajv2020 = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv2020 as unknown as Ajv);
const ajv07 = new Ajv({ strict: false, allErrors: true });
addFormats(ajv07);

function validator(schema: unknown, draft7 = false): ValidateFunction {
  return (draft7 ? ajv07 : ajv2020).compile(schema as object | boolean);
}


/** Characters tried where a grammar allows "anything but": ASCII, escapes' letters, and some beyond ASCII. */
const ALPHABET = [...' aAzZ09_-.,:;!?\'/\\"{}[]\n\t\u0001\u007féß日本😀\u2028~'].map((c) => c.codePointAt(0)!);

function pickChar(set: CharSet, random: () => number): string {
  if (!set.negated) {
    const r = set.ranges;
    const i = Math.floor(random() * (r.length / 2)) * 2;
    const cp = r[i]! + Math.floor(random() * (r[i + 1]! - r[i]! + 1));
    return String.fromCodePoint(cp);
  }
  const ok = ALPHABET.filter((cp) => charSetMatches(set, cp));
  return String.fromCodePoint(ok[Math.floor(random() * ok.length)]!);
}

/** The shortest text each rule can derive (Infinity: none, which a compiled grammar must not have). */
function minLengths(g: Grammar): number[] {
  const len = g.rules.map(() => Infinity);
  for (let changed = true; changed; ) {
    changed = false;
    g.rules.forEach((alts, r) => {
      for (const alt of alts) {
        const n = alt.reduce((sum, e) => sum + (e.kind === 'chars' ? 1 : len[e.rule]!), 0);
        if (n < len[r]!) (len[r] = n), (changed = true);
      }
    });
  }
  return len;
}

/**
 * A random derivation of the grammar: random alternatives until the text passes `budget` characters, then
 * the shortest ones (which ends, as the grammar has no left recursion).
 */
function derive(g: Grammar, random: () => number, budget: number): string {
  const len = minLengths(g);
  const altLen = (alt: Grammar['rules'][number][number]): number => alt.reduce((s, e) => s + (e.kind === 'chars' ? 1 : len[e.rule]!), 0);
  let out = '';
  const expand = (rule: number): void => {
    const alts = g.rules[rule]!.filter((a) => altLen(a) < Infinity);
    assert.ok(alts.length > 0, `rule ${g.names[rule]} derives nothing`);
    let alt = alts[Math.floor(random() * alts.length)]!;
    if (out.length > budget) alt = alts.reduce((best, a) => (altLen(a) < altLen(best) ? a : best));
    for (const e of alt) {
      if (e.kind === 'chars') out += pickChar(e, random);
      else expand(e.rule);
    }
  };
  expand(g.root);
  return out;
}

/** A random walk of the matcher, one character at a time; undefined when it ran past `maxSteps`. */
function walk(m: GrammarMatcher, random: () => number, maxSteps: number, extra: number[]): string | undefined {
  let stacks = m.initial().stacks;
  let out = '';
  for (let step = 0; step < maxSteps; step++) {
    const options: { cp: number; next: typeof stacks; weight: number }[] = [];
    for (const cp of ALPHABET) {
      const next = m.acceptCodePoint(stacks, cp);
      // Closing characters weigh more, so that walks end.
      if (next.length > 0) options.push({ cp, next, weight: cp === 0x22 || cp === 0x5d || cp === 0x7d ? 6 : 1 });
    }
    // The rest of printable ASCII and the grammar's own characters (names in keys and enums), less often.
    for (const c of extra) {
      if (ALPHABET.includes(c)) continue;
      const next = m.acceptCodePoint(stacks, c);
      if (next.length > 0) options.push({ cp: c, next, weight: 0.2 });
    }
    const complete = stacks.includes(null);
    if (complete && (options.length === 0 || random() < 0.2)) return out;
    assert.ok(options.length > 0, `dead end after ${JSON.stringify(out)}: nothing may follow, yet the text is not complete`);
    let r = random() * options.reduce((s, o) => s + o.weight, 0);
    const pick = options.find((o) => (r -= o.weight) < 0) ?? options[options.length - 1]!;
    out += String.fromCodePoint(pick.cp);
    stacks = pick.next;
  }
  return undefined;
}

function accepts(m: GrammarMatcher, text: string): boolean {
  const s = m.acceptText(m.initial(), text);
  return s !== undefined && m.isComplete(s);
}

/** JSON with a space after "," and ":" (Python's json.dumps layout). */
function spaced(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(spaced).join(', ')}]`;
  if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${spaced(x)}`).join(', ')}}`;
  return JSON.stringify(v);
}

interface Case {
  name: string;
  schema: unknown;
  /** Valid values: each must be accepted as JSON.stringify writes it, with 2-space and tab indents, and spaced. */
  valid: unknown[];
  /** Texts the grammar must refuse (ajv refuses them too, or they are not JSON). */
  invalid: string[];
  /** Texts ajv accepts that the grammar leaves out by design (documented choices). */
  notGenerated?: string[];
  draft7?: boolean;
}

const person = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 20 },
    age: { type: 'integer', minimum: 0, maximum: 150 },
    email: { type: 'string' },
    tags: { type: 'array', items: { type: 'string', maxLength: 10 }, maxItems: 3 },
  },
  required: ['name', 'age'],
  additionalProperties: false,
};

const CASES: Case[] = [
  {
    name: 'object: required always, optional in order, additionalProperties false',
    schema: person,
    valid: [{ name: 'Ann', age: 30 }, { name: 'Bo', age: 0, tags: [] }, { name: 'Cy', age: 150, email: 'c@d', tags: ['a', 'b', 'c'] }, { name: 'x"\\\n😀', age: 7, email: '' }],
    invalid: ['{"name":"Ann"}', '{"age":3}', '{"name":"Ann","age":30,"x":1}', '{"name":"Ann","age":"30"}', '{"name":"","age":1}', '{"name":"Ann","age":151}', '{"name":"A","age":1,"tags":["a","b","c","d"]}', '{"name":"A","age":-1}', '{"name":"A","age":1.5}'],
    notGenerated: ['{"age":30,"name":"Ann"}'],
  },
  {
    name: 'object: every subset of optional properties, none required; extra properties not generated',
    schema: { type: 'object', properties: { a: { type: 'boolean' }, b: { type: 'null' }, c: { type: 'number' }, d: { type: 'string', maxLength: 2 } } },
    valid: [{}, { a: true }, { b: null, d: 'xy' }, { a: false, b: null, c: -1.5e10, d: '' }, { c: 0 }, { d: 'q' }],
    invalid: ['{"a":1}', '{"d":"xyz"}', '{"a":true,}', '{,"a":true}', '{"a":true "b":null}'],
    notGenerated: ['{"e":1}', '{"d":"x","a":true}'],
  },
  {
    name: 'type arrays',
    schema: { type: 'object', properties: { v: { type: ['string', 'null'], maxLength: 3 }, w: { type: ['integer', 'boolean'] } }, required: ['v', 'w'] },
    valid: [{ v: null, w: 3 }, { v: 'abc', w: true }, { v: '', w: -42 }],
    invalid: ['{"v":1,"w":1}', '{"v":null,"w":1.5}', '{"v":"abcd","w":1}', '{"v":null,"w":null}'],
  },
  {
    name: 'enum of mixed values',
    schema: { enum: ['red', 1, 2.5, null, true, { a: [1, 'x'] }, [], 'with "quote"', 'ünï😀'] },
    valid: ['red', 1, 2.5, null, true, { a: [1, 'x'] }, [], 'with "quote"', 'ünï😀'],
    invalid: ['"blue"', '2', 'false', '{"a":[1]}', '[1]', '"Red"'],
    notGenerated: ['{"a":[1,"\\u0078"]}'],
  },
  {
    name: 'const: any JSON value, written as JSON.stringify writes it',
    schema: { type: 'object', properties: { k: { const: { v: 1, s: 'x"y\n\u0001', n: null, l: [true, { z: -0.5 }] } }, s: { const: 'a\\b\tc' } }, required: ['k', 's'] },
    valid: [{ k: { v: 1, s: 'x"y\n\u0001', n: null, l: [true, { z: -0.5 }] }, s: 'a\\b\tc' }],
    invalid: ['{"k":{"v":2,"s":"x\\"y\\n\\u0001","n":null,"l":[true,{"z":-0.5}]},"s":"a\\\\b\\tc"}', '{"k":1,"s":"a\\\\b\\tc"}'],
  },
  {
    name: 'strings: minLength/maxLength count code points, escapes count as one',
    schema: { type: 'array', items: { type: 'string', minLength: 2, maxLength: 4 }, maxItems: 8 },
    valid: [['ab', 'abcd', '日本', '😀😀', 'a\nb', '\u0001\u0002', 'é\\"']],
    invalid: ['["a"]', '["abcde"]', '["😀"]', '["\\n"]', '["\\ud83d"]'],
    notGenerated: ['["\\ud83d\\ude00\\ud83d\\ude00"]'],
  },
  {
    name: 'arrays: minItems/maxItems',
    schema: { type: 'array', items: { type: 'integer', minimum: 1, maximum: 9 }, minItems: 2, maxItems: 4 },
    valid: [[1, 2], [9, 9, 9, 9], [3, 1, 4]],
    invalid: ['[]', '[1]', '[1,2,3,4,5]', '[1,10]', '[0,1]', '[1,2,]', '[1.5,2]'],
    notGenerated: ['[1.0,2]'],
  },
  {
    name: 'tuples: prefixItems, then no more items unless items says',
    schema: { type: 'array', prefixItems: [{ type: 'string', maxLength: 5 }, { type: 'boolean' }, { enum: ['x', 'y'] }], minItems: 1 },
    valid: [['a'], ['abc', true], ['', false, 'y']],
    invalid: ['[]', '[true]', '["a","b"]', '["a",true,"z"]'],
    notGenerated: ['["a",true,"x",1]'],
  },
  {
    name: 'tuples: draft-07 items array with additionalItems',
    schema: { type: 'array', items: [{ type: 'integer', minimum: 0, maximum: 9 }], additionalItems: { type: 'null' }, maxItems: 3 },
    valid: [[], [5], [0, null, null]],
    invalid: ['[null]', '[1,2]', '[1,null,null,null]'],
    draft7: true,
  },
  {
    name: 'nested objects and arrays',
    schema: {
      type: 'object',
      properties: {
        team: { type: 'string', enum: ['a', 'b'] },
        members: { type: 'array', items: person, minItems: 1, maxItems: 2 },
        meta: { type: 'object', properties: { grid: { type: 'array', items: { type: 'array', items: { type: 'number', minimum: 0, maximum: 1 }, maxItems: 2 }, maxItems: 2 } }, required: ['grid'], additionalProperties: false },
      },
      required: ['team', 'members', 'meta'],
      additionalProperties: false,
    },
    valid: [
      { team: 'a', members: [{ name: 'A', age: 1 }], meta: { grid: [] } },
      { team: 'b', members: [{ name: 'A', age: 1, tags: ['t'] }, { name: 'B', age: 2 }], meta: { grid: [[0, 0.25], [1]] } },
    ],
    invalid: ['{"team":"a","members":[],"meta":{"grid":[]}}', '{"team":"a","members":[{"name":"A","age":1}],"meta":{"grid":[[2]]}}', '{"team":"a","members":[{"name":"A","age":1}],"meta":{}}'],
  },
  {
    name: 'anyOf',
    schema: { anyOf: [{ type: 'string', maxLength: 3 }, { type: 'integer', minimum: 0, maximum: 99 }, { type: 'object', properties: { x: { type: 'boolean' } }, required: ['x'] }] },
    valid: ['abc', 0, 99, { x: true }],
    invalid: ['"abcd"', '100', '-1', '{}', 'null', '1.5'],
  },
  {
    name: 'oneOf told apart by a required const property',
    schema: {
      oneOf: [
        { type: 'object', properties: { kind: { const: 'cat' }, lives: { type: 'integer', minimum: 1, maximum: 9 } }, required: ['kind', 'lives'], additionalProperties: false },
        { type: 'object', properties: { kind: { const: 'dog' }, good: { type: 'boolean' } }, required: ['kind'], additionalProperties: false },
      ],
    },
    valid: [{ kind: 'cat', lives: 9 }, { kind: 'dog' }, { kind: 'dog', good: true }],
    invalid: ['{"kind":"cat"}', '{"kind":"cow"}', '{"kind":"dog","lives":3}'],
  },
  {
    name: 'oneOf told apart by type, and siblings merged into each branch',
    schema: { description: 'a or b', oneOf: [{ type: 'string', format: 'date' }, { type: 'null' }, { type: 'array', items: { $ref: '#/$defs/small' }, maxItems: 2 }], $defs: { small: { type: 'integer', minimum: -3, maximum: 3 } } },
    valid: ['2024-02-29', null, [], [-3, 3]],
    invalid: ['"2023-02-29"', '[4]', '[1,2,3]', '1'],
  },
  {
    name: 'formats: date, time, date-time, uuid',
    schema: {
      type: 'object',
      properties: { d: { type: 'string', format: 'date' }, t: { type: 'string', format: 'time' }, dt: { type: 'string', format: 'date-time' }, u: { type: 'string', format: 'uuid' } },
      required: ['d', 't', 'dt', 'u'],
    },
    valid: [
      { d: '2024-01-31', t: '23:59:59Z', dt: '2000-02-29T00:00:00.123+05:30', u: '123e4567-e89b-12d3-a456-426614174000' },
      { d: '1900-02-28', t: '00:00:00.5-12:00', dt: '2023-12-31T12:30:00Z', u: 'ABCDEF01-2345-6789-abcd-ef0123456789' },
    ],
    invalid: [
      '{"d":"2024-13-01","t":"23:59:59Z","dt":"2023-12-31T12:30:00Z","u":"123e4567-e89b-12d3-a456-426614174000"}',
      '{"d":"2023-02-29","t":"23:59:59Z","dt":"2023-12-31T12:30:00Z","u":"123e4567-e89b-12d3-a456-426614174000"}',
      '{"d":"1900-02-29","t":"23:59:59Z","dt":"2023-12-31T12:30:00Z","u":"123e4567-e89b-12d3-a456-426614174000"}',
      '{"d":"2024-04-31","t":"23:59:59Z","dt":"2023-12-31T12:30:00Z","u":"123e4567-e89b-12d3-a456-426614174000"}',
      '{"d":"2024-01-01","t":"24:00:00Z","dt":"2023-12-31T12:30:00Z","u":"123e4567-e89b-12d3-a456-426614174000"}',
      '{"d":"2024-01-01","t":"12:00:00","dt":"2023-12-31T12:30:00Z","u":"123e4567-e89b-12d3-a456-426614174000"}',
      '{"d":"2024-01-01","t":"12:00:00Z","dt":"2023-12-31 12:30:00","u":"123e4567-e89b-12d3-a456-426614174000"}',
      '{"d":"2024-01-01","t":"12:00:00Z","dt":"2023-12-31T12:30:00Z","u":"123e4567-e89b-12d3-a456-42661417400"}',
    ],
  },
  {
    name: 'recursion through $ref (#/$defs): a tree',
    schema: {
      $ref: '#/$defs/node',
      $defs: { node: { type: 'object', properties: { value: { type: 'integer', minimum: 0, maximum: 99 }, children: { type: 'array', items: { $ref: '#/$defs/node' }, maxItems: 3 } }, required: ['value'], additionalProperties: false } },
    },
    valid: [{ value: 1 }, { value: 2, children: [] }, { value: 3, children: [{ value: 4, children: [{ value: 5 }] }, { value: 6 }] }],
    invalid: ['{"value":1,"children":[{}]}', '{"value":1,"children":[{"value":1},{"value":1},{"value":1},{"value":1}]}', '{"children":[]}'],
  },
  {
    name: 'recursion through $ref (#/definitions and #): a linked list, anyOf with null',
    schema: { definitions: { item: { type: 'object', properties: { v: { type: 'string', maxLength: 2 }, next: { anyOf: [{ $ref: '#/definitions/item' }, { type: 'null' }] } }, required: ['v', 'next'] } }, $ref: '#/definitions/item' },
    valid: [{ v: 'a', next: null }, { v: 'a', next: { v: 'bc', next: { v: '', next: null } } }],
    invalid: ['{"v":"a"}', '{"v":"a","next":{"v":"b"}}', '{"v":"a","next":1}'],
    draft7: true,
  },
  {
    name: '{} and true: any JSON value',
    schema: { anyOf: [{}, true] },
    valid: [null, 0, -1.25e-7, 'x', [], {}, { a: [1, { b: null }], 'c"d': 'e' }, [[[]]]],
    invalid: ['undefined', "'x'", '{a:1}', '[1,]', '01', '1.', '.5', 'NaN', '"\\x"'],
    notGenerated: ['"\\ud800"', '"\\ud83d\\ude00"', '1e100'],
  },
  {
    name: 'integer ranges',
    schema: { type: 'object', properties: { a: { type: 'integer', minimum: -15, maximum: 120 }, b: { type: 'integer', exclusiveMinimum: 0, exclusiveMaximum: 1000 }, c: { type: 'integer', minimum: 95 }, d: { type: 'integer', maximum: -7 } }, required: ['a', 'b', 'c', 'd'] },
    valid: [{ a: -15, b: 1, c: 95, d: -7 }, { a: 120, b: 999, c: 123456789012345, d: -100000 }, { a: 0, b: 500, c: 100, d: -10 }, { a: -9, b: 10, c: 99, d: -8 }],
    invalid: ['{"a":-16,"b":1,"c":95,"d":-7}', '{"a":121,"b":1,"c":95,"d":-7}', '{"a":0,"b":0,"c":95,"d":-7}', '{"a":0,"b":1000,"c":95,"d":-7}', '{"a":0,"b":1,"c":94,"d":-7}', '{"a":0,"b":1,"c":95,"d":-6}', '{"a":1.5,"b":1,"c":95,"d":-7}'],
  },
  {
    name: 'number bounds (integer-valued), exclusive and inclusive',
    schema: {
      type: 'object',
      properties: { p: { type: 'number', minimum: 0, maximum: 1 }, q: { type: 'number', exclusiveMinimum: 0 }, r: { type: 'number', exclusiveMinimum: -2, exclusiveMaximum: 3 }, s: { type: 'number', maximum: -1 } },
      required: ['p', 'q', 'r', 's'],
    },
    valid: [{ p: 0, q: 0.001, r: -1.999, s: -1 }, { p: 1, q: 12345.678, r: 2.5, s: -1.5 }, { p: 0.5, q: 1, r: 0, s: -123.25 }],
    invalid: ['{"p":1.5,"q":1,"r":0,"s":-1}', '{"p":1,"q":0,"r":0,"s":-1}', '{"p":1,"q":1,"r":3,"s":-1}', '{"p":1,"q":1,"r":-2,"s":-1}', '{"p":1,"q":1,"r":0,"s":-0.5}', '{"p":-0.1,"q":1,"r":0,"s":-1}'],
    notGenerated: ['{"p":1e-7,"q":1,"r":0,"s":-1}'],
  },
  {
    name: 'allOf and $ref with siblings are merged',
    schema: {
      $defs: { base: { type: 'object', properties: { id: { type: 'integer', minimum: 1, maximum: 9 }, note: { type: 'string', maxLength: 3 } }, required: ['id'] } },
      allOf: [{ $ref: '#/$defs/base' }, { properties: { extra: { type: 'boolean' }, note: { minLength: 1 } }, required: ['extra'] }],
    },
    valid: [{ id: 1, extra: true }, { id: 9, note: 'abc', extra: false }],
    invalid: ['{"id":1}', '{"extra":true}', '{"id":1,"note":"","extra":true}', '{"id":1,"note":"abcd","extra":true}'],
  },
  {
    name: 'maps: additionalProperties as a schema with no properties, maxProperties',
    schema: { type: 'object', additionalProperties: { type: 'integer', minimum: 0, maximum: 5 }, maxProperties: 3 },
    valid: [{}, { a: 1 }, { 'k"1': 0, b: 5, c: 2 }],
    invalid: ['{"a":6}', '{"a":"1"}', '{"a":1,"b":1,"c":1,"d":1}'],
  },
  {
    name: 'required names without a schema in properties, empty objects',
    schema: { type: 'object', properties: { a: { type: 'object', additionalProperties: false }, b: { type: 'object' } }, required: ['a', 'b', 'z'], additionalProperties: { type: 'string', maxLength: 1 } },
    valid: [{ a: {}, b: {}, z: '' }, { a: {}, b: { x: [1], y: null }, z: 'q' }],
    invalid: ['{"a":{},"b":{}}', '{"a":{"x":1},"b":{},"z":""}', '{"a":{},"b":{},"z":"qq"}'],
  },
  {
    name: 'property names with quotes, slashes, tildes and non-ASCII',
    schema: { type: 'object', properties: { 'we"ird': { type: 'integer', minimum: 0, maximum: 3 }, 'a/b~c': { type: 'boolean' }, ключ: { type: 'null' }, '\\': { const: 1 } }, required: ['we"ird', 'ключ'] },
    valid: [{ 'we"ird': 3, ключ: null }, { 'we"ird': 0, 'a/b~c': true, ключ: null, '\\': 1 }],
    invalid: ['{"we\\"ird":4,"ключ":null}', '{"ключ":null}'],
  },
  {
    name: 'int32, multipleOf 1, schemas without type (types from keywords)',
    schema: {
      type: 'array',
      prefixItems: [{ type: 'integer', format: 'int32' }, { type: 'number', multipleOf: 1, maximum: 10 }, { minLength: 2, maxLength: 2 }, { minimum: 0, maximum: 0 }, { properties: { a: { type: 'null' } }, required: ['a'] }],
      minItems: 5,
    },
    valid: [[2147483647, 10, 'ab', 0, { a: null }], [-2147483648, -5, 'ßß', 0, { a: null }]],
    invalid: ['[2147483648,1,"ab",0,{"a":null}]', '[1,1.5,"ab",0,{"a":null}]', '[1,1,"abc",0,{"a":null}]', '[1,1,"ab",1,{"a":null}]', '[1,1,"ab",0,{}]'],
    notGenerated: ['[1,1,3,0,{"a":null}]'],
  },
  {
    name: 'enum filtered by its sibling keywords; $ref with siblings',
    schema: { type: 'object', properties: { e: { type: 'string', enum: ['a', 1, 'bcd', null], maxLength: 2 }, r: { $ref: '#/$defs/n', maximum: 2 } }, required: ['e', 'r'], $defs: { n: { type: 'integer', minimum: 0 } } },
    valid: [{ e: 'a', r: 0 }, { e: 'a', r: 2 }],
    invalid: ['{"e":1,"r":0}', '{"e":"bcd","r":0}', '{"e":"a","r":3}', '{"e":"a","r":-1}'],
  },
  {
    name: 'recursion through "#": nested arrays; enum values checked against a format; oneOf told apart by enum values',
    schema: {
      type: 'array',
      maxItems: 2,
      items: {
        oneOf: [
          { $ref: '#' },
          { type: 'string', format: 'date', enum: ['2023-02-29', '2024-02-29', 'x', 5] },
          { enum: ['a', 'b'] },
          { type: 'string', maxLength: 0 },
        ],
      },
    },
    valid: [[], [[]], ['2024-02-29', [['a', '']]], ['b']],
    invalid: ['["2023-02-29"]', '["x"]', '[5]', '[[[]],[],[]]', '["c"]'],
  },
  {
    name: 'booleans, null, and a string at the top',
    schema: { type: ['boolean', 'null', 'string'], maxLength: 0 },
    valid: [true, false, null, ''],
    invalid: ['"a"', '0', 'True'],
  },
];

const LAYOUTS: [string, (v: unknown) => string][] = [
  ['compact', (v) => JSON.stringify(v)],
  ['2-space', (v) => JSON.stringify(v, null, 2)],
  ['tab', (v) => JSON.stringify(v, null, '\t')],
  ['spaced', spaced],
];

test('JSON Schema → GBNF: valid instances accepted in compact and pretty layouts, invalid ones refused, random derivations and walks all validate', () => {
  let derived = 0;
  let walked = 0;
  for (const c of CASES) {
    const gbnf = jsonSchemaToGbnf(c.schema);
    const grammar = parseGbnf(gbnf, c.name);
    const m = new GrammarMatcher(grammar);
    const validate = validator(c.schema, c.draft7);
    const where = (text: string): string => `${c.name}: ${JSON.stringify(text)}\n${gbnf}`;
    for (const v of c.valid) {
      assert.ok(validate(v), `${c.name}: test data ${JSON.stringify(v)} is not valid: ${JSON.stringify(validate.errors)}`);
      for (const [layout, write] of LAYOUTS) assert.ok(accepts(m, write(v)), `${layout} ${where(write(v))}`);
    }
    for (const text of c.invalid) {
      let valid = false;
      try {
        valid = validate(JSON.parse(text)) === true;
      } catch {
        valid = false;
      }
      assert.ok(!valid, `${c.name}: test data ${text} is valid`);
      assert.ok(!accepts(m, text), `refused: ${where(text)}`);
    }
    for (const text of c.notGenerated ?? []) {
      assert.ok(validate(JSON.parse(text)), `${c.name}: test data ${text} is not valid`);
      assert.ok(!accepts(m, text), `not generated: ${where(text)}`);
    }
    // The core proof: whatever the grammar derives parses and validates.
    const random = rng(derived + 1);
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const text = derive(grammar, random, 30 + (i % 5) * 40);
      assert.ok(accepts(m, text), `the matcher accepts its derivation: ${where(text)}`);
      let value: unknown;
      assert.doesNotThrow(() => (value = JSON.parse(text)), `parses: ${where(text)}`);
      assert.ok(validate(value), `validates: ${where(text)}\n${JSON.stringify(validate.errors)}`);
      seen.add(text);
      derived++;
    }
    assert.ok(seen.size >= Math.min(c.valid.length, 4), `${c.name}: derivations vary (${seen.size} distinct)`);
    // The matcher never reaches a dead end, and what a walk completes validates too.
    const extra = [...new Set([...Array.from({ length: 0x5f }, (_, i) => 0x20 + i), ...[...gbnf].map((ch) => ch.codePointAt(0)!)])];
    for (let i = 0; i < 12; i++) {
      const text = walk(m, random, 300, extra);
      if (text === undefined) continue;
      let value: unknown;
      assert.doesNotThrow(() => (value = JSON.parse(text)), `parses: ${where(text)}`);
      assert.ok(validate(value), `validates: ${where(text)}\n${JSON.stringify(validate.errors)}`);
      walked++;
    }
  }
  assert.ok(walked > CASES.length * 3, `random walks complete (${walked})`);
});

test('JSON Schema → GBNF: the grammar is small where the schema is (optional properties stay linear)', () => {
  const properties: Record<string, unknown> = {};
  for (let i = 0; i < 60; i++) properties[`p${i}`] = { type: 'integer', minimum: 0, maximum: 9 };
  const gbnf = jsonSchemaToGbnf({ type: 'object', properties, required: ['p30'] });
  assert.ok(gbnf.length < 20_000, `${gbnf.length} characters`);
  const m = new GrammarMatcher(parseGbnf(gbnf));
  assert.ok(accepts(m, '{"p30":1}'));
  assert.ok(accepts(m, '{"p0":1, "p29":2, "p30":3, "p59":4}'));
  assert.ok(!accepts(m, '{"p0":1}'));
  assert.ok(!accepts(m, '{"p31":1, "p30":3}'));
});

test('JSON Schema → GBNF: unsupported keywords and formats, and invalid schemas, name the JSON pointer', () => {
  const refused: [unknown, RegExp][] = [
    [{ type: 'object', properties: { date: { type: 'string', format: 'email' } } }, /^#\/properties\/date\/format: format 'email' is not supported \(supported: date, time, date-time, uuid/],
    [{ type: 'object', properties: { code: { type: 'string', pattern: '^[A-Z]+$' } } }, /^#\/properties\/code\/pattern: 'pattern' is not supported/],
    [{ type: 'array', items: { not: { type: 'null' } } }, /^#\/items\/not: 'not' is not supported/],
    [{ if: { type: 'string' }, then: { maxLength: 2 } }, /^#\/if: /],
    [{ type: 'object', patternProperties: { '^x': {} } }, /^#\/patternProperties: /],
    [{ type: 'object', properties: { a: { type: 'string', maxlength: 3 } } }, /^#\/properties\/a\/maxlength: unknown keyword 'maxlength'/],
    [{ type: 'array', items: { type: 'string' }, contains: { const: 'x' } }, /^#\/contains: /],
    [{ type: 'array', items: { type: 'string' }, uniqueItems: true }, /^#\/uniqueItems: uniqueItems is not supported/],
    [{ type: 'number', multipleOf: 0.5 }, /^#\/multipleOf: multipleOf is not supported/],
    [{ type: 'number', minimum: 0.5 }, /^#\/minimum: bounds that are not integers are not supported on type number/],
    [{ properties: { a: { $ref: 'https://example.com/a.json' } } }, /^#\/properties\/a\/\$ref: only references inside the schema/],
    [{ properties: { a: { $ref: '#/$defs/missing' } } }, /^#\/properties\/a\/\$ref: '#\/\$defs\/missing' does not resolve/],
    [{ $defs: { x: { type: 'strng' } }, $ref: '#/$defs/x' }, /^#\/\$defs\/x\/type: unknown type "strng"/],
    [{ type: 'string', minLength: -1 }, /^#\/minLength: minLength must be a non-negative integer/],
    [{ type: 'object', required: 'a' }, /^#\/required: required must be an array of strings/],
    [{ type: 'object', properties: [] }, /^#\/properties: properties must be an object/],
    [{ type: 'object', properties: { a: 5 } }, /^#\/properties\/a: a schema must be an object or a boolean/],
    [{ anyOf: [] }, /^#\/anyOf: must be a non-empty array of schemas/],
    [{ oneOf: [{ type: 'string' }, { type: 'string', maxLength: 3 }] }, /^#\/oneOf: branches 0 and 1 may both accept one value/],
    [{ oneOf: [{ type: 'number' }, { type: 'integer' }] }, /^#\/oneOf: branches 0 and 1/],
    [{ type: 'string', format: 'date', maxLength: 5 }, /^#: no JSON value satisfies the schema \(#: minLength\/maxLength exclude every date\)/],
    [{ type: 'object', properties: { a: { type: 'string', minLength: 5, maxLength: 2 } }, required: ['a'] }, /^#: no JSON value satisfies the schema \(#\/properties\/a: minLength 5 exceeds maxLength 2\)/],
    [{ $ref: '#' }, /^#: no JSON value satisfies the schema/],
    [{ $defs: { a: { allOf: [{ $ref: '#/$defs/a' }], type: 'string' } }, $ref: '#/$defs/a' }, /^#\/\$defs\/a: references and allOf merge without end/],
    [{ type: 'array', items: { oneOf: [{ enum: ['a', ''] }, { type: 'string', maxLength: 0 }] } }, /^#\/items\/oneOf: branches 0 and 1 may both accept one value/],
    [{ type: 'string', format: 'time', maxLength: 12 }, /^#\/maxLength: minLength\/maxLength that cut into the lengths of format 'time'/],
    [{ $defs: { a: { type: 'object', properties: { next: { $ref: '#/$defs/a' } }, required: ['next'] } }, $ref: '#/$defs/a' }, /^#: no JSON value satisfies the schema/],
    [{ allOf: [{ type: 'string', format: 'date' }, { type: 'string', format: 'uuid' }] }, /^#\/format: cannot merge two different 'format' values/],
    [{ type: 'string', maxLength: 20000 }, /^#\/maxLength: lengths above 10000 are not supported/],
    ['object', /^#: a schema must be an object or a boolean, got string/],
  ];
  for (const [schema, message] of refused) {
    assert.throws(
      () => jsonSchemaToGbnf(schema),
      (e: unknown) => {
        assert.ok(e instanceof JsonSchemaError, `${JSON.stringify(schema)}: ${String(e)}`);
        assert.ok(e instanceof RwkvError);
        assert.equal(e.code, 'BAD_ARGUMENT');
        assert.match(e.message, message, JSON.stringify(schema));
        assert.equal(e.message.startsWith(e.pointer + ':'), true);
        return true;
      },
    );
  }
  assert.throws(() => jsonSchemaToGbnf({ type: 'string', pattern: 'x' }, { source: 'reply.schema.json' }), /^JsonSchemaError: reply\.schema\.json: #\/pattern: /);
  // Unsatisfiable parts that are optional are left out rather than refused; annotations are ignored.
  const gbnf = jsonSchemaToGbnf({ $schema: 'https://json-schema.org/draft/2020-12/schema', title: 't', description: 'd', examples: [{}], $comment: 'c', default: {}, 'x-extension': 1, type: 'object', properties: { a: false, b: { type: 'integer', minimum: 3, maximum: 2 }, c: { const: 1 } } });
  const m = new GrammarMatcher(parseGbnf(gbnf));
  assert.ok(accepts(m, '{}') && accepts(m, '{"c":1}') && !accepts(m, '{"a":1}') && !accepts(m, '{"b":2}'));
});

test('generate({ grammar: jsonSchemaToGbnf(schema) }) with the shipped model: every seed ends with valid JSON', async () => {
  const schemas: unknown[] = [
    {
      type: 'object',
      properties: { name: { type: 'string', minLength: 1, maxLength: 12 }, age: { type: 'integer', minimum: 0, maximum: 120 }, role: { enum: ['admin', 'user', 'guest'] } },
      required: ['name', 'age', 'role'],
      additionalProperties: false,
    },
    {
      type: 'object',
      properties: { date: { type: 'string', format: 'date' }, time: { type: 'string', format: 'time' }, tags: { type: 'array', items: { type: 'string', maxLength: 8 }, maxItems: 3 }, done: { type: 'boolean' } },
      required: ['date', 'done'],
    },
    { type: 'array', items: { type: 'object', properties: { id: { type: 'string', format: 'uuid' }, score: { type: 'number', minimum: 0, maximum: 1 } }, required: ['id', 'score'] }, minItems: 1, maxItems: 2 },
    {
      oneOf: [
        { type: 'object', properties: { kind: { const: 'cat' }, lives: { type: 'integer', minimum: 1, maximum: 9 } }, required: ['kind', 'lives'] },
        { type: 'object', properties: { kind: { const: 'dog' }, name: { type: ['string', 'null'], maxLength: 10 } }, required: ['kind', 'name'] },
      ],
    },
  ];
  const rwkv = await Rwkv.load(defaultModelPath(), { threads: 1 });
  try {
    for (const schema of schemas) {
      const validate = validator(schema);
      const grammar = jsonSchemaToGbnf(schema);
      for (const seed of [1, 2, 3, 4]) {
        const generation = rwkv.generate('The record in JSON:\n', { grammar, maxTokens: 400, seed });
        const text = await generation.text();
        assert.equal(generation.finishReason, 'stop', `seed ${seed}: ${JSON.stringify(text)}`);
        const value: unknown = JSON.parse(text);
        assert.ok(validate(value), `seed ${seed}: ${text}\n${JSON.stringify(validate.errors)}`);
      }
    }
  } finally {
    await rwkv.close();
  }
});
