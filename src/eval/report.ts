// The results as markdown tables: accuracies in percent (as the paper prints them) with their standard
// errors, perplexities, bits per byte.
import type { EvalResults, TextResult } from './evaluate.js';
import type { ChoiceMetrics, LambadaMetrics, PerplexityMetrics } from './metrics.js';
import { TASK_NAMES } from './tasks.js';

const pct = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '' : (100 * x).toFixed(2));
const num = (x: number, digits = 2): string => (Number.isFinite(x) ? x.toFixed(digits) : String(x));

/** One row per metric: | Task | n | Metric | Value | ± Stderr |. */
export function resultsTable(results: EvalResults): string {
  const rows: string[] = ['| Task | n | Metric | Value | ± Stderr |', '|---|---:|---|---:|---:|'];
  for (const name of TASK_NAMES) {
    const m = results.tasks[name];
    if (m === undefined) continue;
    const lines: [string, string, string][] = [];
    if (name === 'lambada') {
      const l = m as LambadaMetrics;
      lines.push(['ppl', num(l.ppl), ''], ['acc (%)', pct(l.acc), pct(l.acc_stderr)]);
    } else if (name === 'wikitext') {
      const w = m as PerplexityMetrics;
      lines.push(['word_perplexity', num(w.word_perplexity), ''], ['byte_perplexity', num(w.byte_perplexity, 4), ''], ['bits_per_byte', num(w.bits_per_byte, 4), '']);
    } else {
      const c = m as ChoiceMetrics;
      lines.push(['acc (%)', pct(c.acc), pct(c.acc_stderr)]);
      if (c.acc_norm !== undefined) lines.push(['acc_norm (%)', pct(c.acc_norm), pct(c.acc_norm_stderr)]);
    }
    lines.forEach(([metric, value, err], i) => rows.push(`| ${i === 0 ? name : ''} | ${i === 0 ? m.n : ''} | ${metric} | ${value} | ${err} |`));
  }
  return `${rows.join('\n')}\n`;
}

/** One row per text. */
export function textTable(names: readonly string[], results: readonly TextResult[]): string {
  const rows = ['| Text | tokens | bytes | token ppl | word ppl | byte ppl | bits/byte |', '|---|---:|---:|---:|---:|---:|---:|'];
  results.forEach((r, i) => {
    rows.push(
      `| ${names[i]!.replaceAll('|', '\\|')} | ${r.tokens} | ${r.bytes} | ${num(r.token_perplexity, 3)} | ${num(r.word_perplexity)} | ${num(r.byte_perplexity, 4)} | ${num(r.bits_per_byte, 4)} |`,
    );
  });
  return `${rows.join('\n')}\n`;
}
