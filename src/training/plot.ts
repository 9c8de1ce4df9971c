// Loss curves from training logs (log.jsonl) as a self-contained SVG (or an HTML page around it): the
// training loss per step (raw, faint, and smoothed), the held-out loss at each evaluation.

export interface LogEntry {
  type: 'train' | 'val';
  step: number;
  loss: number;
}

export interface Run {
  /** Legend label (e.g. the log's directory). */
  label: string;
  entries: LogEntry[];
}

/** The train/val entries of a log.jsonl text; other lines are ignored. */
export function parseLog(text: string): LogEntry[] {
  const out: LogEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let e: unknown;
    try {
      e = JSON.parse(line);
    } catch {
      continue;
    }
    if (typeof e !== 'object' || e === null) continue;
    const { type, step, loss } = e as Record<string, unknown>;
    if ((type === 'train' || type === 'val') && typeof step === 'number' && typeof loss === 'number' && Number.isFinite(loss)) {
      out.push({ type, step, loss });
    }
  }
  return out;
}

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 6): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** Exponential moving average, debiased (as TensorBoard's smoothing). */
function smooth(values: number[], alpha: number): number[] {
  let m = 0;
  let w = 0;
  return values.map((v) => {
    m = alpha * m + (1 - alpha) * v;
    w = alpha * w + (1 - alpha);
    return m / w;
  });
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

export interface PlotOptions {
  title?: string;
  width?: number;
  height?: number;
  /** Smoothing of the training curve, 0 (none) to < 1 (default 0.9 when a run has > 50 steps). */
  smoothing?: number;
}

export function renderSvg(runs: readonly Run[], options: PlotOptions = {}): string {
  const W = options.width ?? 800;
  const H = options.height ?? 460;
  const m = { left: 64, right: 20, top: 40, bottom: 52 };
  const all = runs.flatMap((r) => r.entries);
  const steps = all.map((e) => e.step);
  const losses = all.map((e) => e.loss);
  const x0 = all.length > 0 ? Math.min(0, ...steps) : 0;
  const x1 = all.length > 0 ? Math.max(x0 + 1, ...steps) : 1;
  let y0 = all.length > 0 ? Math.min(...losses) : 0;
  let y1 = all.length > 0 ? Math.max(...losses) : 1;
  if (y1 - y0 < 1e-9) {
    y0 -= 0.5;
    y1 += 0.5;
  }
  const pad = (y1 - y0) * 0.05;
  y0 = Math.max(0, y0 - pad);
  y1 += pad;
  const px = (s: number): number => m.left + ((s - x0) / (x1 - x0)) * (W - m.left - m.right);
  const py = (l: number): number => H - m.bottom - ((l - y0) / (y1 - y0)) * (H - m.top - m.bottom);
  const f = (v: number): string => v.toFixed(1);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${escapeXml(options.title ?? 'Loss')}</text>`);
  // Grid and axes.
  for (const t of niceTicks(y0, y1)) {
    parts.push(`<line x1="${m.left}" x2="${W - m.right}" y1="${f(py(t))}" y2="${f(py(t))}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.left - 6}" y="${f(py(t) + 4)}" text-anchor="end">${t}</text>`);
  }
  for (const t of niceTicks(x0, x1)) {
    parts.push(`<line x1="${f(px(t))}" x2="${f(px(t))}" y1="${m.top}" y2="${H - m.bottom}" stroke="#f0f0f0"/>`);
    parts.push(`<text x="${f(px(t))}" y="${H - m.bottom + 16}" text-anchor="middle">${t}</text>`);
  }
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${W - m.left - m.right}" height="${H - m.top - m.bottom}" fill="none" stroke="#999"/>`);
  parts.push(`<text x="${(m.left + W - m.right) / 2}" y="${H - 12}" text-anchor="middle">step</text>`);
  parts.push(`<text transform="translate(16 ${(m.top + H - m.bottom) / 2}) rotate(-90)" text-anchor="middle">loss (nats/token)</text>`);
  // Curves.
  const legend: string[] = [];
  runs.forEach((run, i) => {
    const color = COLORS[i % COLORS.length]!;
    const train = run.entries.filter((e) => e.type === 'train').sort((a, b) => a.step - b.step);
    const val = run.entries.filter((e) => e.type === 'val').sort((a, b) => a.step - b.step);
    const path = (pts: [number, number][]): string => pts.map(([s, l], j) => `${j === 0 ? 'M' : 'L'}${f(px(s))},${f(py(l))}`).join('');
    const prefix = runs.length > 1 ? `${run.label}: ` : '';
    if (train.length > 0) {
      const alpha = options.smoothing ?? (train.length > 50 ? 0.9 : 0);
      if (alpha > 0) {
        parts.push(`<path d="${path(train.map((e) => [e.step, e.loss]))}" fill="none" stroke="${color}" stroke-opacity="0.25" stroke-width="1"/>`);
      }
      const sm = alpha > 0 ? smooth(train.map((e) => e.loss), alpha) : train.map((e) => e.loss);
      parts.push(`<path d="${path(train.map((e, j) => [e.step, sm[j]!]))}" fill="none" stroke="${color}" stroke-width="2"/>`);
      legend.push(`<line x1="0" x2="22" y1="${legend.length * 18}" y2="${legend.length * 18}" stroke="${color}" stroke-width="2"/><text x="28" y="${legend.length * 18 + 4}">${escapeXml(prefix)}train${alpha > 0 ? ' (smoothed)' : ''}</text>`);
    }
    if (val.length > 0) {
      parts.push(`<path d="${path(val.map((e) => [e.step, e.loss]))}" fill="none" stroke="${color}" stroke-width="2" stroke-dasharray="6 4"/>`);
      for (const e of val) parts.push(`<circle cx="${f(px(e.step))}" cy="${f(py(e.loss))}" r="3" fill="${color}"/>`);
      legend.push(`<line x1="0" x2="22" y1="${legend.length * 18}" y2="${legend.length * 18}" stroke="${color}" stroke-width="2" stroke-dasharray="6 4"/><text x="28" y="${legend.length * 18 + 4}">${escapeXml(prefix)}held-out</text>`);
    }
  });
  if (legend.length > 0) {
    parts.push(`<g transform="translate(${W - m.right - 220} ${m.top + 16})">${legend.join('')}</g>`);
  }
  if (all.length === 0) parts.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#999">no loss entries</text>`);
  parts.push('</svg>');
  return parts.join('\n');
}

/** An HTML page around the SVG. */
export function renderHtml(runs: readonly Run[], options: PlotOptions = {}): string {
  const title = escapeXml(options.title ?? 'Loss');
  return `<!doctype html>\n<html><head><meta charset="utf-8"><title>${title}</title></head>\n<body style="margin:16px">\n${renderSvg(runs, options)}\n</body></html>\n`;
}
