// String operations as Python 3 does them, so that prompts rebuilt here are byte for byte those of
// lm-evaluation-harness v0.3.0: Python's whitespace (str.isspace, and `\s` in a str regex) is not
// JavaScript's (Python has \x1c–\x1f and \x85, JavaScript has \ufeff), and len() counts code points.

/** The characters Python's str.isspace() and the str-pattern `\s` accept, as a regex class body. */
export const PY_WS = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

const LEADING = new RegExp(`^[${PY_WS}]+`);
const TRAILING = new RegExp(`[${PY_WS}]+$`);
const RUNS = new RegExp(`[${PY_WS}]+`);

/** Python's str.strip() with no argument. */
export function pyStrip(s: string): string {
  return s.replace(LEADING, '').replace(TRAILING, '');
}

/** Python's len(s): code points, not UTF-16 units. */
export function pyLen(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** len(re.split(r"\s+", s)) in Python — empty pieces at either end count, as they do there. */
export function pySplitCount(s: string): number {
  return s.split(RUNS).length;
}

/** UTF-8 bytes of `s` (Python's len(s.encode("utf-8"))). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}
