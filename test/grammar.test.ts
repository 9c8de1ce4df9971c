// Grammars (issue 21): GBNF parsing and its errors, the matcher over code points and split UTF-8, token
// masks on hand-made vocabularies (tokens that straddle rule boundaries, tokens that end inside a UTF-8
// character), checked against brute force; and seeded generations of the shipped model that must match.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { defaultModelPath } from '../src/default-model.js';
import { Rwkv } from '../src/generation/rwkv.js';
import { GrammarConstraint } from '../src/grammar/constraint.js';
import { GrammarError, parseGbnf } from '../src/grammar/gbnf.js';
import { JSON_OBJECT_GBNF, JSON_VALUE_GBNF } from '../src/grammar/json.js';
import { GrammarMatcher } from '../src/grammar/matcher.js';
import type { Tokenizer } from '../src/tokenizers/tokenizer.js';
import { fixture, REPO_ROOT } from './helpers/fixtures.js';
import { loadTokenizer } from '../src/tokenizers/load.js';
import { decodeText } from '../src/tokenizers/tokenizer.js';

/** Whether `text` is a complete sentence of the grammar (accepted and may end there). */
function accepts(gbnf: string, text: string): boolean {
  const m = new GrammarMatcher(parseGbnf(gbnf));
  const s = m.acceptText(m.initial(), text);
  return s !== undefined && m.isComplete(s);
}

/** Whether `text` can be continued into a sentence (a prefix). */
function prefix(gbnf: string, text: string): boolean {
  const m = new GrammarMatcher(parseGbnf(gbnf));
  return m.acceptText(m.initial(), text) !== undefined;
}

test('GBNF: literals, classes, groups, alternatives, repetitions, comments, escapes, multi-line rules', () => {
  const g = String.raw`
# a comment line
root ::= greeting " " name ("!" | "?")?   # trailing comment
greeting ::= "hi" | "hello"
name ::= [A-Z] [a-z]{1,3}
`;
  assert.ok(accepts(g, 'hi Bob'));
  assert.ok(accepts(g, 'hello Anna!'));
  assert.ok(!accepts(g, 'hello Annabel'), '{1,3} bounds the repetition');
  assert.ok(!accepts(g, 'hi bob'));
  assert.ok(prefix(g, 'hel'));
  assert.ok(!prefix(g, 'hex'));
  const esc = String.raw`root ::= "\x41\u00e9\t" [^a-c\]] "\"" .`;
  assert.ok(accepts(esc, 'Aé\td"😀'));
  assert.ok(!accepts(esc, 'Aé\tb"x'), 'negated class');
  assert.ok(!accepts(esc, 'Aé\t]"x'), 'escaped ] inside a class');
  const reps = 'root ::= "a"* "b"+ "c"? "d"{2} "e"{1,} "f"{0,2}';
  assert.ok(accepts(reps, 'bddeff'));
  assert.ok(accepts(reps, 'aaabbbcddeee'));
  assert.ok(!accepts(reps, 'bdde' + 'fff'));
  assert.ok(!accepts(reps, 'dde'), '+ needs one');
  // A body may start on the next line, and continue on indented lines or inside parentheses.
  const multi = 'root ::=\n  "x" (\n    "y" |\n    "z"\n  )\n  | "w"\nother ::= "q"';
  assert.ok(accepts(multi, 'xy') && accepts(multi, 'xz') && accepts(multi, 'w'));
});

test('GBNF errors name the line and column: undefined rules, no root, bad escapes, unclosed groups, left recursion', () => {
  const cases: [string, RegExp, number][] = [
    ['root ::= foo', /rule 'foo' is used but never defined/, 1],
    ['start ::= "x"', /no rule named root/, 1],
    ['root ::= "x"\nroot ::= "y"', /defined twice/, 2],
    ['root ::= "\\q"', /unknown escape/, 1],
    ['root ::= ("x" "y"', /expected '\)'/, 1],
    ['root ::= "x\n', /unterminated string/, 1],
    ['root ::= [a-', /unterminated character class/, 1],
    ['root ::= "a"{3,1}', /maximum is below the minimum/, 1],
    ['root ::= expr\nexpr ::= expr "+" "1" | "1"', /left recursion: expr → expr/, 1],
    ['root ::= "a" = "b"', /unexpected '='/, 1],
    ['\n\nroot "x"', /expected '::='/, 3],
  ];
  for (const [text, message, line] of cases) {
    assert.throws(
      () => parseGbnf(text, 'g.gbnf'),
      (e: unknown) => {
        assert.ok(e instanceof GrammarError, `${text}: ${String(e)}`);
        assert.match(e.message, message, text);
        assert.match(e.message, /^g\.gbnf:\d+:\d+: /);
        assert.equal(e.line, line, `${text}: line of ${e.message}`);
        return true;
      },
    );
  }
});

test('the JSON grammar accepts JSON texts and rejects near misses', () => {
  for (const good of ['{}', '{"a": 1}', '{ "a" : [1, 2.5, -0.5e3, true, false, null], "b": {"c": "d\\n\\u00e9"} }', '[]', '"x"', '0', '-12.5E+3']) {
    assert.ok(accepts(JSON_VALUE_GBNF, good), good);
  }
  for (const bad of ['{a: 1}', '{"a": 1,}', '[1 2]', '01', '"\\x"', '"a\nb"', 'nul', '{"a"}', '1.']) {
    assert.ok(!accepts(JSON_VALUE_GBNF, bad), bad);
  }
  assert.ok(accepts(JSON_OBJECT_GBNF, '{"k": []}') && !accepts(JSON_OBJECT_GBNF, '[1]'));
});

/** A tokenizer over a fixed list of byte strings (id = index). */
function vocabulary(pieces: (string | number[])[]): Tokenizer {
  const bytes = pieces.map((p) => (typeof p === 'string' ? new TextEncoder().encode(p) : Uint8Array.from(p)));
  return {
    name: 'hand-made',
    vocabSize: bytes.length,
    encode: () => {
      throw new Error('not used');
    },
    encodeBytes: () => {
      throw new Error('not used');
    },
    decodeBytes: (ids) => {
      const parts = ids.map((id) => bytes[id]!);
      const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
      let at = 0;
      for (const p of parts) {
        out.set(p, at);
        at += p.length;
      }
      return out;
    },
  };
}

test('token masks on a hand-made vocabulary equal brute force, with tokens straddling rules and split UTF-8 characters', () => {
  const é = [...new TextEncoder().encode('é')]; // c3 a9
  const emoji = [...new TextEncoder().encode('😀')]; // f0 9f 98 80
  const pieces: (string | number[])[] = [
    '\0', '{', '}', '"', '{"', '":', '": "', '", "', '"}', 'ab', 'a', 'b', 'é', [é[0]!], [é[1]!], [emoji[0]!, emoji[1]!], [emoji[2]!, emoji[3]!], 'x"', '"x', ' ', ',', ':', 'key',
    [0xc0, 0x80], // an overlong encoding: never valid
    [0xed, 0xa0, 0x80], // a UTF-16 surrogate: never valid
  ];
  const tokenizer = vocabulary(pieces);
  const gbnf = String.raw`root ::= "{" pair ("," " "? pair)* "}"
pair ::= "\"" [a-zé😀]+ "\":" " "? "\"" [a-z]* "\""`;
  const constraint = new GrammarConstraint(gbnf, tokenizer, pieces.length, [0]);
  const matcher = new GrammarMatcher(parseGbnf(gbnf));
  // Walk a sentence token by token; at each step the mask must equal brute force over every token.
  const path = [4 /* {" */, 13 /* c3 */, 14 /* a9 */, 15 /* f0 9f */, 16 /* 98 80 */, 9 /* ab */, 6 /* ": " */, 9, 7 /* ", " */, 22 /* key */, 5 /* ": */, 3, 8 /* "} */];
  let state = matcher.initial();
  const mask = new Uint8Array(pieces.length);
  for (const [step, id] of path.entries()) {
    constraint.mask(mask);
    for (let t = 0; t < pieces.length; t++) {
      const brute = t === 0 ? matcher.isComplete(state) : matcher.acceptBytes(state, tokenizer.decodeBytes([t])) !== undefined;
      assert.equal(mask[t] === 1, brute, `step ${step}, token ${t} (${JSON.stringify(pieces[t])})`);
      assert.equal(constraint.allows(t), brute, `allows(), step ${step}, token ${t}`);
    }
    assert.equal(mask[id], 1, `step ${step}: the path's token ${id} is allowed`);
    assert.equal(mask[23], 0, 'an overlong encoding is never allowed');
    assert.equal(mask[24], 0, 'a surrogate is never allowed');
    constraint.accept(id);
    state = matcher.acceptBytes(state, tokenizer.decodeBytes([id]))!;
  }
  assert.ok(constraint.done, 'after "}" nothing may follow');
  constraint.mask(mask);
  assert.deepEqual([...mask.keys()].filter((t) => mask[t] === 1), [0], 'only the end token remains');
});

test('generate({ grammar }) with the shipped model: seeded texts always match their grammar, the same seed gives the same text', async () => {
  const rwkv = await Rwkv.load(defaultModelPath(), { threads: 1 });
  try {
    const grammars = [
      { g: 'root ::= " " ("yes" | "no" | "maybe") "."', done: true },
      { g: String.raw`root ::= " " [0-9]{1,2} " " ("apples" | "pears")`, done: false },
      { g: String.raw`root ::= "{\"name\": \"" [A-Z] [a-z]{1,8} "\", \"age\": " [1-9] [0-9]? "}"`, done: true },
      { g: String.raw`root ::= " " [A-Z] [a-z ,]{5,40} "."`, done: true },
    ];
    for (const { g, done } of grammars) {
      for (const seed of [1, 2, 3, 4, 5, 6]) {
        const generation = rwkv.generate('The President said', { grammar: g, seed, maxTokens: 80, temperature: 1, topP: 0.9 });
        const text = await generation.text();
        assert.ok(accepts(g, text), `${g}, seed ${seed}: ${JSON.stringify(text)} does not match`);
        if (done) assert.equal(generation.finishReason, 'stop', `${g}, seed ${seed}: ends when the grammar is complete`);
        const again = await rwkv.generate('The President said', { grammar: g, seed, maxTokens: 80, temperature: 1, topP: 0.9 }).text();
        assert.equal(again, text);
      }
    }
    // Greedy decoding under a grammar is the most likely allowed token at each step.
    const free = await rwkv.generate('The President said', { temperature: 0, maxTokens: 12 }).text();
    const forced = await rwkv.generate('The President said', { temperature: 0, maxTokens: 12, grammar: String.raw`root ::= [^\x00]*` }).text();
    assert.equal(forced, free, 'a grammar that allows everything changes nothing');
    assert.throws(() => rwkv.generate('x', { grammar: 'root ::= nothing' }), GrammarError);
  } finally {
    await rwkv.close();
  }
});

test('rwkv generate --grammar / --json-schema / --json and rwkv chat --json-schema: output that matches; a bad grammar or schema is one line naming the file, before the model loads', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rwkv-grammar-'));
  const run = (...args: string[]): { status: number | null; stdout: string; stderr: string } => {
    const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js'), 'generate', ...args], { encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  try {
    const g = path.join(dir, 'answer.gbnf');
    fs.writeFileSync(g, 'root ::= " " ("yes" | "no") "."\n');
    const ok = run('Is it so?', '--grammar', g, '--seed', '3');
    assert.equal(ok.status, 0, ok.stderr);
    assert.ok([' yes.', ' no.'].includes(ok.stdout), JSON.stringify(ok.stdout));
    const schema = path.join(dir, 'schema.json');
    fs.writeFileSync(schema, JSON.stringify({ type: 'object', properties: { n: { type: 'integer', minimum: 1, maximum: 9 } }, required: ['n'], additionalProperties: false }));
    const js = run('Count:', '--json-schema', schema, '--seed', '1');
    assert.equal(js.status, 0, js.stderr);
    const value = JSON.parse(js.stdout) as { n: number };
    assert.ok(Number.isInteger(value.n) && value.n >= 1 && value.n <= 9, js.stdout);
    const bad = path.join(dir, 'bad.gbnf');
    fs.writeFileSync(bad, 'root ::= "a"\nroot2 ::= [z-a]\n');
    const b = run('x', '--grammar', bad, '--model', path.join(dir, 'no-such-model.pth'));
    assert.equal(b.status, 1);
    assert.match(b.stderr, /^rwkv: .*bad\.gbnf:2:\d+: the range z-a is reversed\n$/);
    fs.writeFileSync(schema, JSON.stringify({ type: 'string', format: 'email' }));
    const s = run('x', '--json-schema', schema, '--model', path.join(dir, 'no-such-model.pth'));
    assert.equal(s.status, 1);
    assert.match(s.stderr, /schema\.json: #\/format: .*email/);
    // rwkv chat: every answer held to the schema, the conversation going on after each.
    fs.writeFileSync(schema, JSON.stringify({ type: 'object', properties: { answer: { enum: ['yes', 'no'] }, why: { type: 'string', maxLength: 20 } }, required: ['answer', 'why'], additionalProperties: false }));
    const chat = spawnSync(process.execPath, [path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js'), 'chat', '--json-schema', schema, '--seed', '2'], {
      input: 'Is the sea big?\nAnd the sky?\n',
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(chat.status, 0, chat.stderr);
    const replies = [...chat.stdout.matchAll(/Assistant:(.*)\n/g)].map((m) => JSON.parse(m[1]!) as { answer: string; why: string });
    assert.equal(replies.length, 2, chat.stdout);
    for (const r of replies) assert.ok(['yes', 'no'].includes(r.answer) && typeof r.why === 'string' && r.why.length <= 20, JSON.stringify(r));
    const both = run('x', '--json', '--grammar', g);
    assert.equal(both.status, 1);
    assert.match(both.stderr, /one of --grammar, --json-schema and --json/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('token masks with the real World and GPT-NeoX 20B vocabularies equal token-by-token checks, at several points of a JSON text', async (t) => {
  const files = [fixture(t, 'tokenizers/rwkv_vocab_v20230424.txt'), fixture(t, 'tokenizers/20B_tokenizer.json')];
  if (files.some((f) => f === undefined)) return;
  const text = '{"name": "Zoë 😀", "tags": [1, -2.5e3], "ok": true}';
  for (const file of files as string[]) {
    const tokenizer = await loadTokenizer(file);
    const ids = tokenizer.encode(text);
    const nVocab = tokenizer.vocabSize;
    const constraint = new GrammarConstraint(JSON_OBJECT_GBNF, tokenizer, nVocab);
    const mask = new Uint8Array(nVocab);
    for (const [step, id] of ids.entries()) {
      // Every third step (the full check is 65536 acceptBytes calls).
      if (step % 3 === 0) {
        const count = constraint.mask(mask);
        let brute = 0;
        for (let tok = 0; tok < nVocab; tok++) {
          const allowed = constraint.allows(tok);
          if (allowed) brute++;
          if (allowed !== (mask[tok] === 1)) assert.fail(`${path.basename(file)}, step ${step}: token ${tok} ${JSON.stringify(decodeText(tokenizer, [tok]))}: mask ${mask[tok]}, allows ${allowed}`);
        }
        assert.equal(count, brute);
      }
      assert.ok(constraint.allows(id), `${path.basename(file)}: the text's own token ${id} at step ${step}`);
      constraint.accept(id);
    }
    assert.ok(constraint.done, `${path.basename(file)}: complete after the closing brace`);
  }
});
