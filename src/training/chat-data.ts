// JSONL training data: one JSON object per line (blank lines skipped), either
//   {"text": "..."}                                   every token is a training target (RWKV-LM's jsonl), or
//   {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
// a conversation rendered with the chat template `rwkv chat` uses (every message one chatTurn,
// "Speaker: text\n\n"), where only the assistant's answers are trained: of an assistant turn
// "Assistant: content\n\n" the speaker cue "Assistant:" is not a target, the rest (" content\n\n") is;
// system and user turns are not targets.
//
// Tokenization: the pieces of a line are grouped into maximal runs of the same trainedness and each run
// is tokenized on its own, the ids concatenated. So the untrained run "User: hi\n\nAssistant:" is one
// piece of text, exactly the prompt `rwkv chat` feeds before the model answers, and the answer starts a
// fresh tokenization just as generation does; no token straddles a mask boundary. Each line is tokenized
// on its own and the lines' ids are concatenated with no separator (like text files, which are concatenated
// as they are); a conversation ends in its blank line anyway.
import { FormatError } from '../errors.js';
import { CHAT_TEMPLATES, chatTurn, type ChatMessage, type ChatRole, type ChatTemplate } from '../generation/chat-template.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';

/** Whether `file` is read as JSONL training data (by its name: ends in .jsonl, any case). */
export function isJsonlFile(file: string): boolean {
  return file.toLowerCase().endsWith('.jsonl');
}

/** A piece of rendered text and whether its tokens are training targets. */
export interface TextPiece {
  text: string;
  trained: boolean;
}

/** One parsed JSONL line. */
export type JsonlRecord = { kind: 'text'; text: string } | { kind: 'messages'; messages: ChatMessage[] };

const ROLES: readonly ChatRole[] = ['system', 'user', 'assistant'];

function lineError(file: string, line: number, message: string): FormatError {
  return new FormatError('BAD_DATA', `line ${line}: ${message}`, { file });
}

/**
 * The record on one line (`line` is 1-based, for errors). Throws a FormatError (code BAD_DATA) whose
 * message names `file` and the line: not JSON, not an object, "text" not a string, "messages" not an
 * array, a message without a valid role or string content, a conversation with no assistant message.
 */
export function parseJsonlLine(text: string, file: string, line: number): JsonlRecord {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw lineError(file, line, `not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw lineError(file, line, `expected a JSON object {"text": ...} or {"messages": [...]}, got ${v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v}`);
  }
  const o = v as Record<string, unknown>;
  const hasText = Object.prototype.hasOwnProperty.call(o, 'text');
  const hasMessages = Object.prototype.hasOwnProperty.call(o, 'messages');
  if (hasText && hasMessages) throw lineError(file, line, 'an object with both "text" and "messages"; give one of them');
  if (hasMessages) {
    const ms = o.messages;
    if (!Array.isArray(ms)) throw lineError(file, line, '"messages" must be an array of {"role", "content"}');
    const messages: ChatMessage[] = [];
    ms.forEach((m: unknown, i) => {
      if (m === null || typeof m !== 'object' || Array.isArray(m)) throw lineError(file, line, `messages[${i}] is not an object {"role", "content"}`);
      const { role, content } = m as Record<string, unknown>;
      if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role)) {
        throw lineError(file, line, `messages[${i}] has role ${JSON.stringify(role) ?? 'undefined'}; expected "system", "user" or "assistant"`);
      }
      if (typeof content !== 'string') throw lineError(file, line, `messages[${i}] ("${role}") has no string "content"`);
      messages.push({ role: role as ChatRole, content });
    });
    if (!messages.some((m) => m.role === 'assistant')) {
      throw lineError(file, line, 'a conversation with no "assistant" message has nothing to train on');
    }
    return { kind: 'messages', messages };
  }
  if (!hasText) throw lineError(file, line, 'expected a "text" string or a "messages" array');
  if (typeof o.text !== 'string') throw lineError(file, line, `"text" must be a string, got ${o.text === null ? 'null' : Array.isArray(o.text) ? 'an array' : typeof o.text}`);
  return { kind: 'text', text: o.text };
}

/**
 * A conversation as pieces: every message one chatTurn; of an assistant turn the cue "ASSISTANT:" is not
 * trained and the rest (" content\n\n") is. The pieces' texts joined are the turns joined.
 */
export function chatPieces(template: ChatTemplate, messages: readonly ChatMessage[]): TextPiece[] {
  const pieces: TextPiece[] = [];
  const cue = `${template.assistant}:`;
  for (const m of messages) {
    const turn = chatTurn(template, m.role, m.content);
    if (m.role === 'assistant') {
      // chatTurn renders it as `${assistant}: ${folded}\n\n`.
      pieces.push({ text: cue, trained: false }, { text: turn.slice(cue.length), trained: true });
    } else {
      pieces.push({ text: turn, trained: false });
    }
  }
  return pieces;
}

/** The pieces of one record. */
export function recordPieces(record: JsonlRecord, template: ChatTemplate): TextPiece[] {
  return record.kind === 'text' ? [{ text: record.text, trained: true }] : chatPieces(template, record.messages);
}

/** Token ids and their loss mask (1 = a training target), aligned. */
export interface MaskedIds {
  ids: number[];
  mask: Uint8Array;
}

/** Pieces → ids and mask: maximal runs of the same trainedness are tokenized each on its own. */
export function tokenizePieces(pieces: readonly TextPiece[], tokenizer: Tokenizer): MaskedIds {
  const ids: number[] = [];
  const flags: number[] = [];
  let i = 0;
  while (i < pieces.length) {
    const trained = pieces[i]!.trained;
    let text = '';
    while (i < pieces.length && pieces[i]!.trained === trained) text += pieces[i++]!.text;
    if (text === '') continue;
    const run = tokenizer.encode(text);
    for (const id of run) {
      ids.push(id);
      flags.push(trained ? 1 : 0);
    }
  }
  return { ids, mask: Uint8Array.from(flags) };
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Whether `bytes` holds nothing but whitespace (or nothing at all). */
export function isBlank(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b !== 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d && b !== 0x0b && b !== 0x0c) return false;
  return true;
}

/**
 * The records of a JSONL file's bytes, with their 1-based line numbers; `file` names it in errors. A
 * leading byte-order mark is skipped; a line that is not UTF-8 is an error; a file with no record (empty,
 * or only blank lines) is an error.
 */
export function parseJsonl(bytes: Uint8Array, file: string): { line: number; record: JsonlRecord }[] {
  const out: { line: number; record: JsonlRecord }[] = [];
  let start = bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  let line = 1;
  while (start <= bytes.length) {
    let end = bytes.indexOf(0x0a, start);
    if (end < 0) end = bytes.length;
    const raw = bytes.subarray(start, end);
    if (!isBlank(raw)) {
      let text: string;
      try {
        text = utf8.decode(raw);
      } catch {
        throw lineError(file, line, 'not valid UTF-8');
      }
      out.push({ line, record: parseJsonlLine(text, file, line) });
    }
    start = end + 1;
    line++;
  }
  if (out.length === 0) throw new FormatError('BAD_DATA', 'the file is empty: no JSON lines to train on', { file });
  return out;
}

/** A JSONL file's bytes → ids and mask (lines concatenated in order, no separator). */
export function tokenizeJsonl(bytes: Uint8Array, file: string, tokenizer: Tokenizer, template: ChatTemplate = CHAT_TEMPLATES.world!): MaskedIds {
  const parts: MaskedIds[] = [];
  let n = 0;
  for (const { record } of parseJsonl(bytes, file)) {
    const p = tokenizePieces(recordPieces(record, template), tokenizer);
    parts.push(p);
    n += p.ids.length;
  }
  const ids: number[] = new Array<number>(n);
  const mask = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    for (let i = 0; i < p.ids.length; i++) ids[o + i] = p.ids[i]!;
    mask.set(p.mask, o);
    o += p.ids.length;
  }
  return { ids, mask };
}
