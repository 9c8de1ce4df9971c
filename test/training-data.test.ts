// Training data beyond plain text: JSONL files ({"text"} lines trained whole, {"messages"} conversations
// trained on the assistant's answers only), the loss mask in the token file (version 2; version 1 still
// reads), the mask through the split and the batches (-1 targets), and the typed errors for bad data.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { FormatError } from '../src/errors.js';
import { CHAT_TEMPLATES, chatTurn, type ChatMessage, type ChatTemplate } from '../src/generation/chat-template.js';
import { loadTokenizer } from '../src/tokenizers/load.js';
import type { Tokenizer } from '../src/tokenizers/tokenizer.js';
import { chatPieces, tokenizeJsonl } from '../src/training/chat-data.js';
import { evalBatches, prepareTokens, randomBatch, readTokenFile, splitTokens } from '../src/training/data.js';
import { Rng } from '../src/util/rng.js';
import { expectRwkvError, tempDir } from './helpers/formats.js';

const tok: Tokenizer = await loadTokenizer('bytes');
const world = CHAT_TEMPLATES.world!;
const raven = CHAT_TEMPLATES.raven!;

function write(dir: string, name: string, content: string | Uint8Array): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, content);
  return f;
}

function jsonl(...records: unknown[]): string {
  return records.map((r) => JSON.stringify(r)).join('\n') + '\n';
}

/**
 * The expected bytes and mask of a conversation, computed independently of chat-data.ts from the spec:
 * the turns rendered with chatTurn and joined; an assistant turn's bytes after its "Speaker:" cue are
 * trained, every other byte is not.
 */
function expectedChat(template: ChatTemplate, messages: readonly ChatMessage[]): { bytes: number[]; mask: number[] } {
  const bytes: number[] = [];
  const mask: number[] = [];
  for (const m of messages) {
    const turn = Buffer.from(chatTurn(template, m.role, m.content), 'utf8');
    const cue = m.role === 'assistant' ? Buffer.byteLength(`${template.assistant}:`, 'utf8') : turn.length;
    for (let i = 0; i < turn.length; i++) {
      bytes.push(turn[i]!);
      mask.push(i >= cue ? 1 : 0);
    }
  }
  return { bytes, mask };
}

const conversation: ChatMessage[] = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi there — ça va?' },
  { role: 'assistant', content: 'Oui.\n\n\nAnd you? 日本' },
  { role: 'user', content: 'fine' },
  { role: 'assistant', content: '  Good  ' },
];

test('a chat line renders as the template turns joined; the mask is 1 exactly on the answers', () => {
  // The spec's plain example, written out by hand.
  const small: ChatMessage[] = [
    { role: 'user', content: 'hi' },
    { role: 'assistant', content: 'yo' },
  ];
  const r = tokenizeJsonl(Buffer.from(jsonl({ messages: small })), 'small.jsonl', tok, world);
  const text = 'User: hi\n\nAssistant: yo\n\n';
  assert.equal(Buffer.from(r.ids).toString('utf8'), text);
  const trainedFrom = text.indexOf('Assistant:') + 'Assistant:'.length;
  assert.deepEqual([...r.mask], [...text].map((_, i) => (i >= trainedFrom ? 1 : 0)));

  // A longer conversation with a system turn, multi-byte text and folded blank lines, in both templates.
  for (const template of [world, raven]) {
    const pieces = chatPieces(template, conversation);
    assert.equal(pieces.map((p) => p.text).join(''), conversation.map((m) => chatTurn(template, m.role, m.content)).join(''));
    const got = tokenizeJsonl(Buffer.from(jsonl({ messages: conversation })), 'c.jsonl', tok, template);
    const want = expectedChat(template, conversation);
    assert.deepEqual(got.ids, want.bytes);
    assert.deepEqual([...got.mask], want.mask);
    // The trained bytes are exactly the answers' " content\n\n".
    const trained = Buffer.from(got.ids.filter((_, i) => got.mask[i] === 1)).toString('utf8');
    assert.equal(trained, ' Oui.\nAnd you? 日本\n\n Good\n\n');
  }
});

test('text lines are trained whole; lines are concatenated in order; blank lines are skipped', () => {
  const body = jsonl({ text: 'alpha ' }) + '\n   \n' + jsonl({ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }] }) + jsonl({ text: 'ωmega' });
  const r = tokenizeJsonl(Buffer.from(body), 'mixed.jsonl', tok, world);
  const chat = expectedChat(world, [
    { role: 'user', content: 'q' },
    { role: 'assistant', content: 'a' },
  ]);
  const a = [...Buffer.from('alpha ')];
  const o = [...Buffer.from('ωmega')];
  assert.deepEqual(r.ids, [...a, ...chat.bytes, ...o]);
  assert.deepEqual([...r.mask], [...a.map(() => 1), ...chat.mask, ...o.map(() => 1)]);
});

test('token file: tokens and mask round-trip; a text-only file has no mask; the template is part of the cache key', () => {
  const dir = tempDir('data-roundtrip');
  const data = write(dir, 'chat.jsonl', jsonl({ messages: conversation }, { text: 'plain' }));
  const cache = path.join(dir, 'tokens.bin');
  const first = prepareTokens([data], tok, 'bytes', cache);
  assert.equal(first.reused, false);
  const want = expectedChat(world, conversation);
  const wantIds = [...want.bytes, ...Buffer.from('plain')];
  const wantMask = [...want.mask, 1, 1, 1, 1, 1];
  assert.deepEqual([...first.tokens], wantIds);
  assert.deepEqual([...first.mask!], wantMask);
  const read = readTokenFile(cache);
  assert.equal(read.header.version, 2);
  assert.deepEqual([...read.tokens], wantIds);
  assert.deepEqual([...read.mask!], wantMask);
  // The file's layout: tokens then one mask byte per token at the very end.
  const buf = fs.readFileSync(cache);
  assert.deepEqual([...buf.subarray(buf.length - wantMask.length)], wantMask);
  // A damaged mask section is refused: cut short, or a byte that is not 0 or 1.
  const cut = write(dir, 'cut.bin', buf.subarray(0, buf.length - 1));
  expectRwkvError(() => readTokenFile(cut), 'TRUNCATED', [cut]);
  const two = Buffer.from(buf);
  two[two.length - 1] = 2;
  expectRwkvError(() => readTokenFile(write(dir, 'two.bin', two)), 'BAD_HEADER', ['not 0 or 1']);
  // Reused with the same template; re-tokenized with another, and the new one reused in turn.
  assert.equal(prepareTokens([data], tok, 'bytes', cache).reused, true);
  const other = prepareTokens([data], tok, 'bytes', cache, undefined, [], raven);
  assert.equal(other.reused, false);
  assert.deepEqual([...other.tokens], [...expectedChat(raven, conversation).bytes, ...Buffer.from('plain')]);
  assert.equal(prepareTokens([data], tok, 'bytes', cache, undefined, [], raven).reused, true);
  // A token file given as data keeps its mask.
  const given = prepareTokens([cache], tok, 'bytes', path.join(dir, 'unused.bin'));
  assert.deepEqual([...given.mask!], [...expectedChat(raven, conversation).mask, 1, 1, 1, 1, 1]);

  // Text only: no mask, and the template does not matter.
  const txt = write(dir, 'a.txt', 'just text');
  const tcache = path.join(dir, 'text.bin');
  const t = prepareTokens([txt], tok, 'bytes', tcache);
  assert.equal(t.mask, undefined);
  assert.equal(readTokenFile(tcache).mask, undefined);
  assert.equal(fs.statSync(tcache).size % 4, (Buffer.byteLength('just text') * 2) % 4); // no mask bytes after the u16 tokens
  assert.equal(prepareTokens([txt], tok, 'bytes', tcache, undefined, [], raven).reused, true);
});

/** A version-1 token file written by hand: magic, header length, JSON header, padding, u16 tokens. */
function writeV1(file: string, tokens: readonly number[], sources: { path: string; size: number; mtimeMs: number }[]): void {
  const json = Buffer.from(JSON.stringify({ version: 1, tokenizer: 'bytes', vocabSize: 256, dtype: 'u16', count: tokens.length, sources }));
  const headLen = Math.ceil((12 + json.length) / 4) * 4;
  const buf = Buffer.alloc(headLen + tokens.length * 2);
  buf.write('RWKVTOKS', 0, 'latin1');
  buf.writeUInt32LE(json.length, 8);
  json.copy(buf, 12);
  tokens.forEach((t, i) => buf.writeUInt16LE(t, headLen + 2 * i));
  fs.writeFileSync(file, buf);
}

test('version-1 token files still read, and are reused for the same text sources but not for JSONL ones', () => {
  const dir = tempDir('data-v1');
  const v1 = path.join(dir, 'old.bin');
  writeV1(v1, [104, 105, 1000], []);
  const d = readTokenFile(v1);
  assert.equal(d.header.version, 1);
  assert.deepEqual([...d.tokens], [104, 105, 1000]);
  assert.equal(d.mask, undefined);

  const txt = write(dir, 'a.txt', 'hello');
  const st = fs.statSync(txt);
  const cache = path.join(dir, 'cache.bin');
  writeV1(cache, [...Buffer.from('hello')], [{ path: txt, size: st.size, mtimeMs: st.mtimeMs }]);
  assert.equal(prepareTokens([txt], tok, 'bytes', cache).reused, true);

  // A version-1 cache of a .jsonl file tokenized it as raw text: it is made anew, with a mask.
  const jl = write(dir, 'b.jsonl', jsonl({ text: 'x' }));
  const jst = fs.statSync(jl);
  writeV1(cache, [...fs.readFileSync(jl)], [{ path: jl, size: jst.size, mtimeMs: jst.mtimeMs }]);
  const again = prepareTokens([jl], tok, 'bytes', cache);
  assert.equal(again.reused, false);
  assert.deepEqual([...again.tokens], [...Buffer.from('x')]);
  assert.deepEqual([...again.mask!], [1]);
});

test('the mask splits with the tokens, and batches put -1 exactly where the target is not trained', () => {
  // Each token is its own position, so a target tells which token it is.
  const n = 3000;
  const tokens = Uint32Array.from({ length: n }, (_, i) => i);
  const rng = new Rng(11);
  const mask = Uint8Array.from({ length: n }, () => (rng.nextU32() % 3 === 0 ? 0 : 1));
  const split = splitTokens(tokens, 0.1, 32, mask);
  assert.equal(split.trainMask!.length, split.train.length);
  assert.equal(split.valMask!.length, split.val.length);
  assert.deepEqual([...split.trainMask!, ...split.valMask!], [...mask]);
  assert.equal(splitTokens(tokens, 0.1, 32).trainMask, undefined);
  // A training split with nothing to train on (only the first token, never a target) is refused.
  const none = new Uint8Array(n);
  none[0] = 1;
  none[n - 1] = 1;
  expectRwkvError(() => splitTokens(tokens, 0.1, 32, none), 'BAD_ARGUMENT', ['no token the loss mask trains on']);

  const check = (targets: Int32Array, plain: Int32Array, offset: number): void => {
    let masked = 0;
    for (let i = 0; i < targets.length; i++) {
      const pos = plain[i]!; // the target's position in the stream (relative to the split's start)
      const want = mask[offset + pos] === 0 ? -1 : pos;
      assert.equal(targets[i], want, `target ${i}`);
      if (want === -1) masked++;
    }
    assert.ok(masked > 0 && masked < targets.length, 'the test draws both kinds');
  };
  // Random batches: the same draws as without a mask; ids untouched.
  const a = randomBatch(split.train, 6, 32, new Rng(5), split.trainMask);
  const plain = randomBatch(split.train, 6, 32, new Rng(5));
  assert.deepEqual(a.ids, plain.ids);
  check(a.targets, plain.targets, 0);
  // Evaluation batches over the held-out part.
  const ev = evalBatches(split.val, 4, 32, 3, split.valMask);
  const evPlain = evalBatches(split.val, 4, 32, 3);
  assert.deepEqual(
    ev.map((e) => e.rows),
    evPlain.map((e) => e.rows),
  );
  const off = split.train.length;
  const shifted = (t: Int32Array): Int32Array => t.map((x) => x - off);
  const evTargets = Int32Array.from(ev.flatMap((e) => [...e.batch.targets]).map((x) => (x === -1 ? -1 : x - off)));
  check(evTargets, shifted(Int32Array.from(evPlain.flatMap((e) => [...e.batch.targets]))), off);
});

test('a .txt and a .jsonl in one --data list: the text is trained whole', () => {
  const dir = tempDir('data-mix');
  const txt = write(dir, 'a.txt', 'Some prose.\n');
  const msgs: ChatMessage[] = [
    { role: 'user', content: 'Why?' },
    { role: 'assistant', content: 'Because.' },
  ];
  const jl = write(dir, 'b.jsonl', jsonl({ messages: msgs }));
  const d = prepareTokens([txt, jl], tok, 'bytes', path.join(dir, 'tokens.bin'));
  const chat = expectedChat(world, msgs);
  const prose = [...Buffer.from('Some prose.\n')];
  assert.deepEqual([...d.tokens], [...prose, ...chat.bytes]);
  assert.deepEqual([...d.mask!], [...prose.map(() => 1), ...chat.mask]);
  // A directory holding both, too (files in name order).
  const d2 = prepareTokens([dir], tok, 'bytes', path.join(dir, 'tokens.bin'));
  assert.deepEqual([...d2.tokens], [...d.tokens]);
});

test('bad data: typed errors naming the file and the line', () => {
  const dir = tempDir('data-errors');
  const good = JSON.stringify({ text: 'ok' });
  const cases: [string, string, number][] = [
    ['not-json.jsonl', `${good}\n\n{"text": "unclosed\n`, 3],
    ['trailing.jsonl', `${good}\n{"text": "a"} x\n`, 2],
    ['array.jsonl', `${good}\n[1, 2]\n`, 2],
    ['number.jsonl', `42\n`, 1],
    ['null.jsonl', `${good}\n${good}\nnull\n`, 3],
    ['string.jsonl', `"text"\n`, 1],
    ['no-text.jsonl', `${good}\n{"txt": "a"}\n`, 2],
    ['text-number.jsonl', `{"text": 5}\n`, 1],
    ['text-null.jsonl', `${good}\n{"text": null}\n`, 2],
    ['both.jsonl', `{"text": "a", "messages": []}\n`, 1],
    ['messages-object.jsonl', `${good}\n{"messages": {"role": "user"}}\n`, 2],
    ['message-not-object.jsonl', `{"messages": ["hi"]}\n`, 1],
    ['bad-role.jsonl', `${good}\n${good}\n${good}\n{"messages": [{"role": "bot", "content": "x"}, {"role": "assistant", "content": "y"}]}\n`, 4],
    ['no-role.jsonl', `{"messages": [{"content": "x"}, {"role": "assistant", "content": "y"}]}\n`, 1],
    ['bad-content.jsonl', `${good}\n{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "y"}]}\n`, 2],
    ['no-content.jsonl', `{"messages": [{"role": "user", "content": "x"}, {"role": "assistant"}]}\n`, 1],
    ['no-assistant.jsonl', `${good}\n{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "x"}]}\n`, 2],
    ['empty-messages.jsonl', `{"messages": []}\n`, 1],
  ];
  for (const [name, body, line] of cases) {
    const f = write(dir, name, body);
    const e = expectRwkvError(() => prepareTokens([f], tok, 'bytes', path.join(dir, `${name}.bin`)), 'BAD_DATA', [f, `line ${line}:`]);
    assert.ok(e instanceof FormatError, name);
    assert.ok(!fs.existsSync(path.join(dir, `${name}.bin`)), `${name}: no token file is left behind`);
  }
  // Invalid UTF-8 on a line.
  const bin = write(dir, 'latin1.jsonl', Buffer.concat([Buffer.from(`${good}\n{"text": "`), Buffer.from([0xe9]), Buffer.from('"}\n')]));
  assert.ok(expectRwkvError(() => prepareTokens([bin], tok, 'bytes', path.join(dir, 'l.bin')), 'BAD_DATA', [bin, 'line 2:']) instanceof FormatError);
  // CRLF line ends are fine, and the line count still holds with them.
  const crlf = write(dir, 'crlf.jsonl', `${good}\r\n${good}\r\n{"text": 1}\r\n`);
  expectRwkvError(() => prepareTokens([crlf], tok, 'bytes', path.join(dir, 'c.bin')), 'BAD_DATA', [crlf, 'line 3:']);
  const crlfOk = write(dir, 'crlf-ok.jsonl', `${good}\r\n\r\n${good}\r\n`);
  assert.equal(Buffer.from(prepareTokens([crlfOk], tok, 'bytes', path.join(dir, 'ok.bin')).tokens).toString(), 'okok');

  // Empty files, text or JSONL: zero bytes or only whitespace.
  for (const [name, body] of [
    ['empty.txt', ''],
    ['blank.txt', ' \n\t\r\n'],
    ['empty.jsonl', ''],
    ['blank.jsonl', '\n  \n\r\n'],
  ] as const) {
    const f = write(dir, name, body);
    const other = write(dir, `fine-${name}.txt`, 'fine');
    const e = expectRwkvError(() => prepareTokens([other, f], tok, 'bytes', path.join(dir, `${name}.bin`)), 'BAD_DATA', [f, 'empty']);
    assert.ok(e instanceof FormatError, name);
  }
});
