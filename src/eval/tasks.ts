// The tasks of the RWKV paper's table, each rebuilt from the files of shared/data exactly as
// lm-evaluation-harness v0.3.0 words it: the context, the continuations whose log-likelihoods are compared,
// the gold answer, and (for acc_norm) each choice's length in characters. The templates are plain functions
// of a record's fields, so that tests can check them on hand-made items.
import { ArgumentError } from '../errors.js';
import { DataFiles, EvalDataError, indexField, stringField, stringsField } from './data.js';
import { pyLen, pySplitCount, pyStrip, utf8Length } from './text.js';
import { wikitextDetokenize, wikitextDocuments } from './wikitext.js';

/** Every task, in the order of the paper's table. */
export const TASK_NAMES = ['lambada', 'piqa', 'hellaswag', 'winogrande', 'arc_easy', 'arc_challenge', 'openbookqa', 'copa', 'boolq', 'wikitext'] as const;
export type TaskName = (typeof TASK_NAMES)[number];

/** What `--preset paper` runs: every task above, whole, after the token for "\n". */
export const PAPER_PRESET = { tasks: TASK_NAMES, prefixToken: '\n' } as const;

/**
 * How a task is scored. lambada: one continuation, ppl and greedy acc; choice: acc (argmax of the
 * log-likelihoods); choice_norm: acc and acc_norm (argmax of ll ÷ the choice's length in characters);
 * perplexity: whole documents, word/byte perplexity and bits per byte.
 */
export type TaskKind = 'lambada' | 'choice' | 'choice_norm' | 'perplexity';

/** One log-likelihood request: p(continuation | context), each tokenized on its own, then concatenated. */
export interface EvalRequest {
  readonly context: string;
  readonly continuation: string;
}

/** One item of a multiple-choice (or LAMBADA) task. */
export interface ChoiceItem {
  /** 0-based index of the record in the file's order. */
  readonly doc: number;
  /** Index of the right request (0 for LAMBADA). */
  readonly gold: number;
  readonly requests: readonly EvalRequest[];
  /** For acc_norm: each choice's length in characters (code points), without the leading space. */
  readonly normLengths?: readonly number[];
}

/** One WikiText document. */
export interface DocumentItem {
  readonly doc: number;
  /** The detokenized text that is scored. */
  readonly text: string;
  /** len(re.split(r"\s+", page)) and UTF-8 bytes of the raw page (before detokenization), as lm-eval counts. */
  readonly words: number;
  readonly bytes: number;
}

export type LoadedTask =
  | { readonly name: TaskName; readonly kind: 'lambada' | 'choice' | 'choice_norm'; readonly items: readonly ChoiceItem[] }
  | { readonly name: 'wikitext'; readonly kind: 'perplexity'; readonly items: readonly DocumentItem[] };

interface TaskDef {
  readonly kind: TaskKind;
  /** Paths under the data directory. */
  readonly files: readonly string[];
  load(files: DataFiles, limit: number): Promise<LoadedTask>;
}

/** A malformed record: what a template refuses, before a file and line are put to it. */
class RecordError extends Error {}

// ---- templates (lm-eval v0.3.0) ----

/** lambada_openai: the text up to its last space; the target is " " + the last word. */
export function lambadaRequest(text: string): EvalRequest {
  const cut = text.lastIndexOf(' ');
  if (cut < 0) throw new RecordError('the text has no space, so it has no last word to predict');
  return { context: text.slice(0, cut), continuation: ` ${text.slice(cut + 1)}` };
}

/** piqa: "Question: {goal}\nAnswer:" → " {sol1}" | " {sol2}". */
export function piqaRequests(goal: string, sol1: string, sol2: string): EvalRequest[] {
  const context = `Question: ${goal}\nAnswer:`;
  return [sol1, sol2].map((s) => ({ context, continuation: ` ${s}` }));
}

/** arc_easy / arc_challenge: "{query}\nAnswer:" (the query starts with "Question: ") → " {choice}". */
export function arcRequests(query: string, choices: readonly string[]): EvalRequest[] {
  if (!query.startsWith('Question: ')) throw new RecordError('the query must start with "Question: "');
  const context = `${query}\nAnswer:`;
  return choices.map((c) => ({ context, continuation: ` ${c}` }));
}

/** openbookqa: "{question_stem}" → " {choice}". */
export function openbookqaRequests(query: string, choices: readonly string[]): EvalRequest[] {
  return choices.map((c) => ({ context: query, continuation: ` ${c}` }));
}

/**
 * copa: the file's query is "{premise without its period}, therefore|because"; lm-eval's context is the same
 * without the comma. Choices: " " + the choice with its first letter lower-cased.
 */
export function copaRequests(query: string, choices: readonly string[]): EvalRequest[] {
  const m = /, (therefore|because)$/.exec(query);
  if (m === null) throw new RecordError('the query must end in ", therefore" or ", because"');
  const context = `${query.slice(0, m.index)} ${m[1]}`;
  return choices.map((c) => ({ context, continuation: ` ${lowerFirst(c)}` }));
}

function lowerFirst(s: string): string {
  const first = s.codePointAt(0);
  if (first === undefined) return s;
  const ch = String.fromCodePoint(first);
  return ch.toLowerCase() + s.slice(ch.length);
}

/**
 * boolq: the file's query is "Passage: {passage}\nQuestion: {question}?"; lm-eval's context is
 * "{passage}\nQuestion: {question}?\nAnswer:". Choices " no", " yes" (gold 1 = yes).
 */
export function boolqRequests(query: string): EvalRequest[] {
  if (!query.startsWith('Passage: ')) throw new RecordError('the query must start with "Passage: "');
  if (!query.includes('\nQuestion: ')) throw new RecordError('the query must contain "\\nQuestion: "');
  if (!query.endsWith('?')) throw new RecordError('the query must end with "?"');
  const context = `${query.slice('Passage: '.length)}\nAnswer:`;
  return [' no', ' yes'].map((continuation) => ({ context, continuation }));
}

/** winogrande (partial scoring): " {continuation}" after each of the two contexts (sentence up to the blank + option). */
export function winograndeRequests(contextOptions: readonly string[], continuation: string): EvalRequest[] {
  if (contextOptions.length !== 2) throw new RecordError('"context_options" must hold two contexts');
  return contextOptions.map((context) => ({ context, continuation: ` ${continuation}` }));
}

/** hellaswag's preprocess: strip, " [title]" → ". ", every "[…]" removed, double spaces folded (one pass). */
export function hellaswagPreprocess(text: string): string {
  return pyStrip(text).replaceAll(' [title]', '. ').replace(/\[[^\n]*?\]/g, '').replaceAll('  ', ' ');
}

/** hellaswag: preprocess("{activity_label}: {ctx}") → " " + preprocess(ending). */
export function hellaswagRequests(contextLine: string, endings: readonly string[]): EvalRequest[] {
  const context = hellaswagPreprocess(contextLine);
  return endings.map((e) => ({ context, continuation: ` ${hellaswagPreprocess(e)}` }));
}

/** Lengths for acc_norm: each continuation without its leading space, in code points (Python's len). */
function normLengths(requests: readonly EvalRequest[]): number[] {
  return requests.map((r) => pyLen(r.continuation.slice(1)));
}

// ---- loading ----

function atLine<T>(where: string, line: number, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof RecordError) throw new EvalDataError(e.message, where, line);
    throw e;
  }
}

/** A JSON Lines task whose records become items through `make`. */
function jsonlTask(
  name: Exclude<TaskName, 'wikitext'>,
  kind: 'lambada' | 'choice' | 'choice_norm',
  file: string,
  make: (record: Record<string, unknown>, where: string, line: number) => { requests: EvalRequest[]; gold: number },
): TaskDef {
  return {
    kind,
    files: [file],
    async load(files, limit) {
      const where = await files.where(file);
      const records = await files.jsonl(file, limit);
      const items = records.map(({ record, line }, doc): ChoiceItem => {
        const { requests, gold } = atLine(where, line, () => make(record, where, line));
        return kind === 'choice_norm' ? { doc, gold, requests, normLengths: normLengths(requests) } : { doc, gold, requests };
      });
      return { name, kind, items };
    },
  };
}

/** query / choices / gold records (ARC, OpenBookQA, COPA). */
function queryChoices(template: (query: string, choices: readonly string[]) => EvalRequest[]) {
  return (r: Record<string, unknown>, where: string, line: number): { requests: EvalRequest[]; gold: number } => {
    const query = stringField(r, 'query', where, line);
    const choices = stringsField(r, 'choices', where, line);
    return { requests: template(query, choices), gold: indexField(r, 'gold', choices.length, where, line) };
  };
}

const TASKS: Record<TaskName, TaskDef> = {
  lambada: jsonlTask('lambada', 'lambada', 'lambada/lambada_test.jsonl', (r, where, line) => ({
    requests: [lambadaRequest(stringField(r, 'text', where, line))],
    gold: 0,
  })),
  piqa: {
    kind: 'choice_norm',
    files: ['piqa/valid.jsonl', 'piqa/valid-labels.lst'],
    async load(files, limit) {
      const where = await files.where('piqa/valid.jsonl');
      const labelsWhere = await files.where('piqa/valid-labels.lst');
      const records = await files.jsonl('piqa/valid.jsonl', limit);
      const labels = await files.lines('piqa/valid-labels.lst');
      const items = records.map(({ record, line }, doc): ChoiceItem => {
        const label = labels[doc];
        if (label === undefined) throw new EvalDataError(`has ${labels.length} labels, fewer than the records of ${where}`, labelsWhere);
        if (!/^[01]\r?$/.test(label)) throw new EvalDataError('a label must be 0 or 1', labelsWhere, doc + 1);
        const requests = piqaRequests(stringField(record, 'goal', where, line), stringField(record, 'sol1', where, line), stringField(record, 'sol2', where, line));
        return { doc, gold: Number(label[0]), requests, normLengths: normLengths(requests) };
      });
      return { name: 'piqa', kind: 'choice_norm', items };
    },
  },
  hellaswag: {
    kind: 'choice_norm',
    files: ['hellaswag/hellaswag_val_full.txt.bz2'],
    async load(files, limit) {
      const file = 'hellaswag/hellaswag_val_full.txt.bz2';
      const where = await files.where(file);
      const lines = await files.lines(file);
      if (lines.length % 6 !== 0) {
        throw new EvalDataError(`has ${lines.length} lines, not a multiple of 6 (label, context, gold, 4 endings per item)`, where, lines.length);
      }
      const items: ChoiceItem[] = [];
      for (let doc = 0; doc < lines.length / 6 && doc < limit; doc++) {
        const at = doc * 6;
        const goldLine = lines[at + 1]!.replace(/\r$/, '');
        if (!/^[0-3]$/.test(goldLine)) throw new EvalDataError('the gold label (2nd line of an item) must be 0, 1, 2 or 3', where, at + 2);
        const requests = hellaswagRequests(lines[at]!, lines.slice(at + 2, at + 6));
        items.push({ doc, gold: Number(goldLine), requests, normLengths: normLengths(requests) });
      }
      return { name: 'hellaswag', kind: 'choice_norm', items };
    },
  },
  winogrande: jsonlTask('winogrande', 'choice', 'winogrande/winogrande.llm-foundry.jsonl', (r, where, line) => {
    const options = stringsField(r, 'context_options', where, line);
    return {
      requests: winograndeRequests(options, stringField(r, 'continuation', where, line)),
      gold: indexField(r, 'gold', options.length, where, line),
    };
  }),
  arc_easy: jsonlTask('arc_easy', 'choice_norm', 'arc/arc_easy_test.jsonl', queryChoices(arcRequests)),
  arc_challenge: jsonlTask('arc_challenge', 'choice_norm', 'arc/arc_challenge_test.jsonl', queryChoices(arcRequests)),
  openbookqa: jsonlTask('openbookqa', 'choice_norm', 'openbookqa/openbookqa_test.llm-foundry.jsonl', queryChoices(openbookqaRequests)),
  copa: jsonlTask('copa', 'choice', 'copa/copa_val.llm-foundry.jsonl', queryChoices(copaRequests)),
  boolq: jsonlTask('boolq', 'choice', 'boolq/boolq_dev.llm-foundry.jsonl', (r, where, line) => {
    const choices = stringsField(r, 'choices', where, line);
    if (choices.length !== 2 || choices[0] !== 'no' || choices[1] !== 'yes') {
      throw new EvalDataError('field "choices" must be ["no", "yes"]', where, line);
    }
    return { requests: boolqRequests(stringField(r, 'query', where, line)), gold: indexField(r, 'gold', 2, where, line) };
  }),
  wikitext: {
    kind: 'perplexity',
    files: ['wikitext/wiki.test.raw.reconstructed'],
    async load(files, limit) {
      const pages = wikitextDocuments(await files.text('wikitext/wiki.test.raw.reconstructed')).slice(0, limit);
      const items = pages.map((page, doc): DocumentItem => ({ doc, text: wikitextDetokenize(page), words: pySplitCount(page), bytes: utf8Length(page) }));
      return { name: 'wikitext', kind: 'perplexity', items };
    },
  },
};

export function isTaskName(name: string): name is TaskName {
  return (TASK_NAMES as readonly string[]).includes(name);
}

/** The kind of scoring and the data files (under the data directory) of a task. */
export function taskInfo(name: TaskName): { kind: TaskKind; files: readonly string[] } {
  const t = TASKS[name];
  return { kind: t.kind, files: t.files };
}

/** Checks task names (unknown ones are one ArgumentError listing the known ones); drops repeats. */
export function parseTasks(names: readonly string[]): TaskName[] {
  const out: TaskName[] = [];
  for (const raw of names) {
    const name = raw.trim();
    if (!isTaskName(name)) {
      throw new ArgumentError(`unknown task '${name}' (known: ${TASK_NAMES.join(', ')})`);
    }
    if (!out.includes(name)) out.push(name);
  }
  if (out.length === 0) throw new ArgumentError(`no task given (known: ${TASK_NAMES.join(', ')})`);
  return out;
}

/** Reads a task's items (the first `limit`) from its files. */
export function loadTask(name: TaskName, files: DataFiles, limit = Infinity): Promise<LoadedTask> {
  return TASKS[name].load(files, limit);
}
