// `rwkv plot LOG... --out loss.svg`: draws the training and held-out loss curves of one or more training
// logs (log.jsonl, or a run directory holding one) as an SVG, or as an HTML page when --out ends in .html.
// A results JSON of `rwkv experiment` adds all its runs' held-out curves; with one, the chart defaults to
// held-out loss in bits against training tokens on a log axis (the comparison such files are for).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArgumentError, RwkvError } from '../errors.js';
import { parseLog, renderHtml, renderSvg, type PlotOptions, type Run } from '../training/plot.js';
import { isParityResults, parityRuns } from './experiment.js';
import { LOG_FILE } from '../training/train.js';

export interface PlotArgs {
  logs: string[];
  out: string;
  title?: string;
  x?: 'step' | 'tokens';
  logX?: boolean;
  heldOut?: boolean;
  bits?: boolean;
}

export function runPlot(args: PlotArgs): { runs: number; points: number } {
  if (args.logs.length === 0) throw new ArgumentError('no log given (rwkv plot LOG.jsonl --out loss.svg)');
  // The plot is SVG (or an HTML page around it): a .png or .pdf name would hold SVG text that viewers reject.
  const ext = path.extname(args.out).toLowerCase();
  if (!['.svg', '.html', '.htm'].includes(ext)) {
    throw new ArgumentError(`--out ${args.out}: rwkv plot writes .svg or .html (open either in a browser; convert an SVG to PNG with e.g. rsvg-convert), not ${ext === '' ? 'a file without an extension' : ext}`);
  }
  let results = false;
  const runs: Run[] = args.logs.flatMap((p) => {
    const file = fs.existsSync(p) && fs.statSync(p).isDirectory() ? path.join(p, LOG_FILE) : p;
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      throw new RwkvError('FILE_NOT_FOUND', 'cannot read the training log', { file });
    }
    if (file.toLowerCase().endsWith('.json')) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new ArgumentError(`${file} is not JSON`);
      }
      if (!isParityResults(parsed)) throw new ArgumentError(`${file} is not a results file of rwkv experiment`);
      results = true;
      return parityRuns(parsed);
    }
    const label = path.basename(path.dirname(path.resolve(file)));
    return [{ label, entries: parseLog(text) }];
  });
  const points = runs.reduce((a, r) => a + r.entries.length, 0);
  if (points === 0) throw new ArgumentError(`no loss entries in ${args.logs.join(', ')}`);
  const options: PlotOptions = {
    title: args.title ?? (runs.length === 1 ? `Loss — ${runs[0]!.label}` : results ? 'Held-out loss' : 'Loss'),
    x: args.x ?? (results ? 'tokens' : 'step'),
    logX: args.logX ?? results,
    heldOutOnly: args.heldOut ?? results,
    bits: args.bits ?? results,
    ...(runs.length > 4 ? { width: 1000 } : {}), // room for the legend beside the chart
  };
  const html = args.out.toLowerCase().endsWith('.html') || args.out.toLowerCase().endsWith('.htm');
  const text = html ? renderHtml(runs, options) : renderSvg(runs, options);
  const tmp = `${args.out}.${process.pid}.partial`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, args.out);
  process.stderr.write(`wrote ${args.out}: ${runs.length} run(s), ${points} points\n`);
  return { runs: runs.length, points };
}
