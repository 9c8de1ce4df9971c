// A model's tokenizer in GGUF metadata (tokenizer.ggml.*), both ways, as llama.cpp's converter
// (convert_hf_to_gguf.py) writes it and its loader (llama-vocab.cpp) reads it:
//   "rwkv" (RWKV World): each token is the escaped text of its bytes — Python's repr of the bytes without
//     the b'…' (\t \n \r \\ \xNN, the quote in use escaped); llama.cpp unescapes \t \n \r \xNN and takes
//     any other escaped character as itself. Id 0 is "<s>" (CONTROL), ids the vocabulary file lacks up
//     to the model's size "[PAD<id>]" (UNUSED), the rest NORMAL; bos = eos = 0, eot = 261 ("\n\n" in the
//     World vocabulary, a fixed id the converter writes whatever the size), and a chat template.
//   "gpt2" (byte-level BPE, e.g. GPT-NeoX 20B): tokens in GPT-2's byte-to-character form, merges "a b".
// A byte-level model (256 ids) is written as a World vocabulary of the single bytes 1..255 with id 0 as
// "<s>" — how llama.cpp's converter sees it given a 255-line vocabulary file — and that exact layout is read
// back as the byte-level tokenizer (id 0 is byte 0 to the model, and must stay encodable).
import { ArgumentError, FormatError } from '../errors.js';
import type { GgufKv, GgufMetaValue, GgufScalar } from '../formats/gguf.js';
import { BpeTokenizer } from './bpe.js';
import { ByteTokenizer } from './bytes.js';
import type { Tokenizer } from './tokenizer.js';
import { WorldTokenizer } from './world.js';

// GGUF value types (as in gguf.ts; repeated here so that the two modules do not import each other).
const GGUF_I32 = 5;
const GGUF_F32 = 6;
const GGUF_STRING = 8;
const TYPE_NAMES: Readonly<Record<number, string>> = {
  0: 'uint8',
  1: 'int8',
  2: 'uint16',
  3: 'int16',
  4: 'uint32',
  5: 'int32',
  6: 'float32',
  7: 'bool',
  8: 'string',
  10: 'uint64',
  11: 'int64',
  12: 'float64',
};

/** llama.cpp's token types (llama_token_type). */
export const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

/** The chat template llama.cpp's converter writes for RWKV World models (at the commit of the fixtures' README). */
export const RWKV_WORLD_CHAT_TEMPLATE = [
  '{%- if not add_generation_prompt is defined -%}',
  '    {%- set add_generation_prompt = true -%}',
  '{%- endif -%}',
  "{%- set ns = namespace(system_prompt='') -%}",
  '{%- for message in messages -%}',
  "    {%- if message['role'] == 'system' -%}",
  "        {%- set ns.system_prompt = message['content'] -%}",
  '    {%- endif -%}',
  '{%- endfor -%}',
  '{{bos_token}}',
  "{%- if ns.system_prompt != '' -%}",
  "{{- 'System: ' + ns.system_prompt + '\\n\\n' -}}",
  '{%- endif -%}',
  '{%- for message in messages -%}',
  "    {%- if message['role'] == 'user' -%}",
  "        {{- 'User: ' + message['content']|trim + '\\n\\n' -}}",
  '    {%- endif -%}',
  "    {%- if message['role'] == 'assistant' and message['content'] is  not none -%}",
  "        {%- set content = message['content'] -%}",
  "        {%- if '</think>' in content -%}",
  "            {%- set content = content.split('</think>')[-1] -%}",
  '        {%- endif -%}',
  "        {{- 'Assistant: ' + content|trim + '\\n\\n' -}}",
  '    {%- endif -%}',
  '{%- endfor -%}',
  '{%- if add_generation_prompt -%}',
  "    {{- 'Assistant:' -}}",
  '    {%- if enable_thinking is defined and enable_thinking is false %}',
  "        {{- ' <think>\\n</think>' }}",
  '    {%- endif %}',
  '    {%- if enable_thinking is defined and enable_thinking is true %}',
  "        {{- ' <think>' }}",
  '    {%- endif %}',
  '{%- endif -%}',
].join('\n');

const WORLD_BOS_EOS = 0;
const WORLD_EOT = 261;

/** A World token's bytes as the converter stores them: Python's repr of the bytes, without b'…'. */
export function escapeRwkvToken(bytes: Uint8Array): string {
  // Python quotes with " only when the bytes hold ' and no ", and escapes just the quote it uses.
  const quote = bytes.includes(0x27) && !bytes.includes(0x22) ? 0x22 : 0x27;
  let s = '';
  for (const b of bytes) {
    if (b === quote || b === 0x5c) s += `\\${String.fromCharCode(b)}`;
    else if (b === 0x09) s += '\\t';
    else if (b === 0x0a) s += '\\n';
    else if (b === 0x0d) s += '\\r';
    else if (b < 0x20 || b >= 0x7f) s += `\\x${b.toString(16).padStart(2, '0')}`;
    else s += String.fromCharCode(b);
  }
  return s;
}

/**
 * The bytes of an escaped World token, as llama.cpp unescapes it; undefined when the escape is malformed
 * (a trailing backslash, or \x not followed by two lower-case hex digits, which llama.cpp would misread).
 */
export function unescapeRwkvToken(text: string): Uint8Array | undefined {
  const utf8 = new TextEncoder().encode(text);
  const out: number[] = [];
  for (let i = 0; i < utf8.length; i++) {
    const c = utf8[i]!;
    if (c !== 0x5c) {
      out.push(c);
      continue;
    }
    const e = utf8[++i];
    if (e === undefined) return undefined;
    if (e === 0x74) out.push(0x09);
    else if (e === 0x6e) out.push(0x0a);
    else if (e === 0x72) out.push(0x0d);
    else if (e === 0x78) {
      const hex = String.fromCharCode(utf8[i + 1] ?? 0, utf8[i + 2] ?? 0);
      if (!/^[0-9a-f]{2}$/.test(hex)) return undefined;
      out.push(parseInt(hex, 16));
      i += 2;
    } else out.push(e);
  }
  return Uint8Array.from(out);
}

type MetaArray = Exclude<GgufMetaValue, GgufScalar>;

function typeName(t: number): string {
  return TYPE_NAMES[t] ?? `type ${t}`;
}

function describe(v: GgufMetaValue): string {
  if (typeof v === 'object') return `an array of ${v.length} ${typeName(v.arrayType)}`;
  return typeof v === 'string' ? 'a string' : `a ${typeof v}`;
}

/**
 * The tokenizer a GGUF file carries in its tokenizer.ggml.* keys, or undefined when it names none (no
 * tokenizer.ggml.model, or llama.cpp's "none"/"no_vocab"). `nVocab` is the model's vocabulary (rows of
 * token_embd), which every per-token array must match; a key of the wrong type or length is a FormatError
 * naming it. Throws for tokenizer models other than "rwkv" and "gpt2".
 */
export function tokenizerFromGguf(metadata: ReadonlyMap<string, GgufMetaValue>, nVocab: number | undefined, file: string): Tokenizer | undefined {
  const bad = (key: string, message: string): FormatError => new FormatError('BAD_HEADER', `${key}: ${message}`, { file });
  const modelValue = metadata.get('tokenizer.ggml.model');
  if (modelValue === undefined) return undefined;
  if (typeof modelValue !== 'string') throw bad('tokenizer.ggml.model', `is ${describe(modelValue)}, expected a string`);
  if (modelValue === 'none' || modelValue === 'no_vocab') return undefined;
  if (modelValue !== 'rwkv' && modelValue !== 'gpt2') {
    throw new FormatError('UNSUPPORTED_VERSION', `tokenizer.ggml.model '${modelValue}' is not supported (rwkv, gpt2); give a tokenizer explicitly`, { file });
  }

  const array = (key: string, itemType: number, perToken: boolean, required: boolean): MetaArray | undefined => {
    const v = metadata.get(key);
    if (v === undefined) {
      if (required) throw bad(key, `is missing (tokenizer.ggml.model is '${modelValue}')`);
      return undefined;
    }
    if (typeof v !== 'object') throw bad(key, `is ${describe(v)}, expected an array of ${typeName(itemType)}`);
    if (v.arrayType !== itemType) throw bad(key, `is ${describe(v)}, expected an array of ${typeName(itemType)}`);
    if (perToken && nVocab !== undefined && v.length !== nVocab) {
      throw bad(key, `has ${v.length} entries, but the model's vocabulary (token_embd) has ${nVocab}`);
    }
    // The reader keeps every value of tokenizer.* arrays; a shorter list means it was not read whole.
    if (v.values === undefined || v.values.length !== v.length) throw bad(key, 'was not read whole');
    return v;
  };
  const tokens = array('tokenizer.ggml.tokens', GGUF_STRING, true, true)!.values as readonly string[];
  const types = array('tokenizer.ggml.token_type', GGUF_I32, true, false)?.values as readonly number[] | undefined;
  array('tokenizer.ggml.scores', GGUF_F32, true, false);
  for (const key of ['bos', 'eos', 'eot', 'unknown', 'padding', 'seperator', 'sep', 'cls', 'mask'].map((k) => `tokenizer.ggml.${k}_token_id`)) {
    const v = metadata.get(key);
    // Out-of-range ids are allowed: llama.cpp warns and ignores them (its converter writes eot = 261 for any size).
    if (v !== undefined && typeof v !== 'number') throw bad(key, `is ${describe(v)}, expected an integer`);
  }
  const typeOf = (id: number): number => types?.[id] ?? TOKEN_TYPE.normal;

  if (modelValue === 'rwkv') {
    const bytes: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(tokens.length);
    tokens.forEach((text, id) => {
      // Only NORMAL tokens are text: "<s>" and "[PADn]" would otherwise be matched in ordinary input.
      if (typeOf(id) !== TOKEN_TYPE.normal) return;
      const b = unescapeRwkvToken(text);
      if (b === undefined) throw bad('tokenizer.ggml.tokens', `token ${id} (${JSON.stringify(text)}) is not a valid escaped byte string`);
      bytes[id] = b;
    });
    if (isByteLevelLayout(bytes)) return new ByteTokenizer();
    if (bytes[0] !== undefined) throw bad('tokenizer.ggml.tokens', 'token 0 is a NORMAL token; RWKV World keeps id 0 for end of text');
    return WorldTokenizer.fromTokens(bytes, 'tokenizer.ggml.tokens', file);
  }

  const merges = array('tokenizer.ggml.merges', GGUF_STRING, false, true)!.values as readonly string[];
  // As a tokenizer.json: every token in the vocabulary, CONTROL and USER_DEFINED ones also cut out of the
  // raw text first (llama.cpp matches user-defined tokens there). No normalizer: the file records none.
  const ids = new Map<string, number>();
  const added: { id: number; content: string; special: boolean; normalized: boolean }[] = [];
  tokens.forEach((t, id) => {
    const other = ids.get(t);
    if (other !== undefined) throw bad('tokenizer.ggml.tokens', `token ${id} repeats token ${other} (${JSON.stringify(t)})`);
    ids.set(t, id);
    const type = typeOf(id);
    if (type === TOKEN_TYPE.control || type === TOKEN_TYPE.userDefined) added.push({ id, content: t, special: type === TOKEN_TYPE.control, normalized: false });
  });
  // fromEntries defines own properties, so a token named "__proto__" stays a token.
  const vocab = Object.fromEntries(ids);
  try {
    // Built without a file name so that its message can be given again under the keys' names.
    return BpeTokenizer.fromJson({ model: { type: 'BPE', vocab, merges }, pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, use_regex: true }, added_tokens: added });
  } catch (e) {
    if (e instanceof FormatError) throw bad('tokenizer.ggml.tokens and tokenizer.ggml.merges', e.message.replace(/^tokenizer\.json: /, ''));
    throw e;
  }
}

/** Ids 1..255 are the single bytes 1..255 and there is nothing else: a byte-level model written as World. */
function isByteLevelLayout(bytes: readonly (Uint8Array | undefined)[]): boolean {
  if (bytes.length !== 256 || bytes[0] !== undefined) return false;
  for (let id = 1; id < 256; id++) {
    const b = bytes[id];
    if (b === undefined || b.length !== 1 || b[0] !== id) return false;
  }
  return true;
}

/**
 * The tokenizer.* keys llama.cpp's converter would write for this tokenizer and a model of `nVocab` ids,
 * in its order and types. World and byte-level tokenizers only: writing BPE merges is not supported.
 */
export function ggufTokenizerKvs(tokenizer: Tokenizer, nVocab: number): GgufKv[] {
  let tokenBytes: (id: number) => Uint8Array | undefined;
  if (tokenizer instanceof ByteTokenizer) {
    // Id 0 (byte 0) becomes "<s>", as the converter's World layout has it; the reader maps it back.
    tokenBytes = (id) => (id > 0 && id < 256 ? Uint8Array.of(id) : undefined);
  } else if (tokenizer instanceof WorldTokenizer) {
    tokenBytes = (id) => tokenizer.bytesOf(id);
  } else {
    throw new ArgumentError(`writing the ${tokenizer.name} tokenizer into a GGUF file is not supported (RWKV World and byte-level only)`);
  }
  if (tokenizer.vocabSize > nVocab) {
    throw new ArgumentError(`the tokenizer ${tokenizer.name} has ${tokenizer.vocabSize} ids, more than the model's vocabulary of ${nVocab}`);
  }
  const tokens: string[] = ['<s>'];
  const types: number[] = [TOKEN_TYPE.control];
  for (let id = 1; id < nVocab; id++) {
    const b = tokenBytes(id);
    tokens.push(b === undefined ? `[PAD${id}]` : escapeRwkvToken(b));
    types.push(b === undefined ? TOKEN_TYPE.unused : TOKEN_TYPE.normal);
  }
  return [
    { key: 'tokenizer.ggml.model', type: 'string', value: 'rwkv' },
    { key: 'tokenizer.ggml.tokens', type: 'string[]', value: tokens },
    { key: 'tokenizer.ggml.token_type', type: 'i32[]', value: types },
    { key: 'tokenizer.ggml.bos_token_id', type: 'u32', value: WORLD_BOS_EOS },
    { key: 'tokenizer.ggml.eos_token_id', type: 'u32', value: WORLD_BOS_EOS },
    { key: 'tokenizer.ggml.eot_token_id', type: 'u32', value: WORLD_EOT },
    { key: 'tokenizer.chat_template', type: 'string', value: RWKV_WORLD_CHAT_TEMPLATE },
  ];
}
