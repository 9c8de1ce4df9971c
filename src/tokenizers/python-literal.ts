// A small, strict parser for the Python string and bytes literals of the RWKV World vocabulary file
// ('abc', "it's", b'\xe4'). It accepts exactly what Python would, minus what the vocabulary never needs
// (raw and triple-quoted strings, \N{...}); anything else is an error, never a guess. Nothing is eval'd.

const SIMPLE_ESCAPES: Readonly<Record<string, number>> = {
  '\\': 0x5c,
  "'": 0x27,
  '"': 0x22,
  a: 0x07,
  b: 0x08,
  f: 0x0c,
  n: 0x0a,
  r: 0x0d,
  t: 0x09,
  v: 0x0b,
};

function isHex(s: string): boolean {
  return /^[0-9a-fA-F]+$/.test(s);
}

function isOctalDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '7';
}

/**
 * The bytes a Python literal stands for: a bytes literal's bytes, or a str literal's UTF-8 encoding.
 * Throws an Error whose message says what is wrong (the caller adds the file and line).
 */
export function parsePythonLiteral(src: string): Uint8Array {
  let i = 0;
  let isBytes = false;
  if (src[0] === 'b' || src[0] === 'B') {
    isBytes = true;
    i = 1;
  } else if (src[0] === 'u' || src[0] === 'U') {
    i = 1;
  }
  const quote = src[i];
  if (quote !== "'" && quote !== '"') {
    throw new Error(`expected a quoted Python str or bytes literal, got ${JSON.stringify(src.slice(0, 20))}`);
  }
  if (src.startsWith(quote.repeat(3), i) && src.length > i + 2) throw new Error('triple-quoted literals are not supported');
  i++;

  // str: code points (encoded to UTF-8 at the end, as Python's str.encode('utf-8') does); bytes: bytes.
  const units: number[] = [];
  for (;;) {
    if (i >= src.length) throw new Error(`unterminated literal (no closing ${quote})`);
    const c = src[i]!;
    if (c === quote) {
      i++;
      break;
    }
    if (c === '\n' || c === '\r') throw new Error('line break inside a literal');
    if (c !== '\\') {
      const cp = src.codePointAt(i)!;
      if (isBytes && cp > 0x7f) throw new Error(`non-ASCII character U+${hex(cp, 4)} in a bytes literal`);
      if (cp >= 0xd800 && cp <= 0xdfff) throw new Error('lone surrogate in a literal');
      units.push(cp);
      i += cp > 0xffff ? 2 : 1;
      continue;
    }
    const e = src[i + 1];
    if (e === undefined) throw new Error('backslash at the end of the literal');
    const simple = SIMPLE_ESCAPES[e];
    if (simple !== undefined) {
      units.push(simple);
      i += 2;
    } else if (isOctalDigit(e)) {
      let j = i + 1;
      while (j < i + 4 && isOctalDigit(src[j])) j++;
      const v = Number.parseInt(src.slice(i + 1, j), 8);
      if (isBytes && v > 0xff) throw new Error(`octal escape \\${src.slice(i + 1, j)} is above \\377 in a bytes literal`);
      units.push(v);
      i = j;
    } else if (e === 'x' || (!isBytes && (e === 'u' || e === 'U'))) {
      const n = e === 'x' ? 2 : e === 'u' ? 4 : 8;
      const digits = src.slice(i + 2, i + 2 + n);
      if (digits.length !== n || !isHex(digits)) throw new Error(`\\${e} needs ${n} hex digits`);
      const v = Number.parseInt(digits, 16);
      if (v > 0x10ffff) throw new Error(`\\${e}${digits} is not a Unicode code point`);
      // Python refuses to UTF-8-encode a str holding a surrogate.
      if (!isBytes && v >= 0xd800 && v <= 0xdfff) throw new Error(`\\${e}${digits} is a surrogate, which has no UTF-8 encoding`);
      units.push(v);
      i += 2 + n;
    } else {
      // Python keeps unknown escapes (with a warning), and has \N{name}; the vocabulary uses neither.
      throw new Error(`unsupported escape \\${e}`);
    }
  }
  if (i !== src.length) throw new Error(`unexpected text after the closing quote: ${JSON.stringify(src.slice(i, i + 20))}`);

  return isBytes ? Uint8Array.from(units) : encodeUtf8(units);
}

/** UTF-8 of code points (no surrogates), by hand: TextEncoder is slow on 65k tiny strings. */
function encodeUtf8(codePoints: readonly number[]): Uint8Array {
  const out: number[] = [];
  for (const c of codePoints) {
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 0x3f), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
  }
  return Uint8Array.from(out);
}

function hex(v: number, width: number): string {
  return v.toString(16).toUpperCase().padStart(width, '0');
}
