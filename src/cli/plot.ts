// `rwkv plot LOG... --out loss.svg`: draws the training and held-out loss curves of one or more training
// logs (log.jsonl, or a run directory holding one) as an SVG, or as an HTML page when --out ends in .html.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArgumentError, RwkvError } from '../errors.js';
import { parseLog, renderHtml, renderSvg, type Run } from '../training/plot.js';
import { LOG_FILE } from '../training/train.js';

export interface PlotArgs {
  logs: string[];
  out: string;
  title?: string;
}

export function runPlot(args: PlotArgs): { runs: number; points: number } {
  if (args.logs.length === 0) throw new ArgumentError('no log given (rwkv plot LOG.jsonl --out loss.svg)');
  // The plot is SVG (or an HTML page around it): a .png or .pdf name would hold SVG text that viewers reject.
  const ext = path.extname(args.out).toLowerCase();
  if (!['.svg', '.html', '.htm'].includes(ext)) {
    throw new ArgumentError(`--out ${args.out}: rwkv plot writes .svg or .html (open either in a browser; convert an SVG to PNG with e.g. rsvg-convert), not ${ext === '' ? 'a file without an extension' : ext}`);
  }
  const runs: Run[] = args.logs.map((p) => {
    const file = fs.existsSync(p) && fs.statSync(p).isDirectory() ? path.join(p, LOG_FILE) : p;
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      throw new RwkvError('FILE_NOT_FOUND', 'cannot read the training log', { file });
    }
    const label = path.basename(path.dirname(path.resolve(file)));
    return { label, entries: parseLog(text) };
  });
  const points = runs.reduce((a, r) => a + r.entries.length, 0);
  if (points === 0) throw new ArgumentError(`no loss entries in ${args.logs.join(', ')}`);
  const options = { title: args.title ?? (runs.length === 1 ? `Loss — ${runs[0]!.label}` : 'Loss') };
  const html = args.out.toLowerCase().endsWith('.html') || args.out.toLowerCase().endsWith('.htm');
  const text = html ? renderHtml(runs, options) : renderSvg(runs, options);
  const tmp = `${args.out}.${process.pid}.partial`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, args.out);
  process.stderr.write(`wrote ${args.out}: ${runs.length} run(s), ${points} points\n`);
  return { runs: runs.length, points };
}
