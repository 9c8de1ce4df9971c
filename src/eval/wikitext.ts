// WikiText as lm-evaluation-harness v0.3.0 reads it: the raw test file cut into documents the way the
// `wikitext_document_level` dataset cuts it (a new document at every top-level heading line " = Title = "),
// and each document detokenized by lm-eval's wikitext detokenizer before it is scored. Word and byte counts
// are taken on the raw document, as lm-eval does.
import { PY_WS, pyStrip } from './text.js';

/**
 * The documents of a raw WikiText file (e.g. wiki.test.raw): split on "\n"; a line that, once "= = =" and
 * "= =" are squeezed and it is stripped, starts with "= " and ends with " =" begins a new document; the
 * lines before it, joined with "\n", are the previous document (kept unless all whitespace); the last one is
 * always kept. The test file gives 62 documents.
 */
export function wikitextDocuments(raw: string): string[] {
  const docs: string[] = [];
  let lines: string[] = [];
  for (const line of raw.split('\n')) {
    const r = pyStrip(line.replaceAll('= = =', '===').replaceAll('= =', '=='));
    if (r.startsWith('= ') && r.endsWith(' =')) {
      const page = lines.join('\n');
      if (pyStrip(page) !== '') docs.push(page);
      lines = [];
    }
    lines.push(line);
  }
  docs.push(lines.join('\n'));
  return docs;
}

const S = `[${PY_WS}]*`;
const BRACKETS: readonly [RegExp, string][] = [
  [new RegExp(`\\(${S}([^)]*?)${S}\\)`, 'g'), '($1)'],
  [new RegExp(`\\[${S}([^\\]]*?)${S}\\]`, 'g'), '[$1]'],
  [new RegExp(`\\{${S}([^}]*?)${S}\\}`, 'g'), '{$1}'],
  [new RegExp(`"${S}([^"]*?)${S}"`, 'g'), '"$1"'],
  [new RegExp(`'${S}([^']*?)${S}'`, 'g'), "'$1'"],
];

/** lm-eval v0.3.0's wikitext_detokenizer, step for step (its one regex for "/' 9/" is kept as it is). */
export function wikitextDetokenize(page: string): string {
  let s = page;
  // contractions
  s = s.replaceAll("s '", "s'");
  s = s.replace(/\/' [0-9]\//g, "/'[0-9]/");
  // number separators
  s = s.replaceAll(' @-@ ', '-').replaceAll(' @,@ ', ',').replaceAll(' @.@ ', '.');
  // punctuation
  for (const p of [':', ';', '.', '!', '?', ',']) s = s.replaceAll(` ${p} `, `${p} `);
  // brackets and quotes: no space inside
  for (const [re, to] of BRACKETS) s = s.replace(re, to);
  // miscellaneous
  s = s.replaceAll('= = = =', '====').replaceAll('= = =', '===').replaceAll('= =', '==');
  s = s.replaceAll(' \u00b0 ', '\u00b0');
  s = s.replaceAll(' \n', '\n').replaceAll('\n ', '\n');
  s = s.replaceAll(' N ', ' 1 ');
  s = s.replaceAll(" 's", "'s");
  return s;
}
