// Loss curves from training logs (log.jsonl) as a self-contained SVG (or an HTML page around it): the
// training loss per step (raw, faint, and smoothed), the held-out loss at each evaluation. Several runs
// share one chart; against tokens seen, on a log axis and in bits, curves of runs of different sizes and
// architectures compare (the parity experiment's chart).

export interface LogEntry {
  type: 'train' | 'val';
  step: number;
  loss: number;
  /** Training tokens seen by then (logs of this trainer have it; older val lines do not). */
  tokens?: number;
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
    const { type, step, loss, tokens } = e as Record<string, unknown>;
    if ((type === 'train' || type === 'val') && typeof step === 'number' && typeof loss === 'number' && Number.isFinite(loss)) {
      out.push(typeof tokens === 'number' ? { type, step, loss, tokens } : { type, step, loss });
    }
  }
  // Held-out lines without tokens: the run's tokens per step, from its training lines.
  const perStep = out.find((e) => e.type === 'train' && e.tokens !== undefined && e.step > 0);
  if (perStep !== undefined) {
    const k = perStep.tokens! / perStep.step;
    for (const e of out) if (e.tokens === undefined) e.tokens = e.step * k;
  }
  return out;
}

/**
 * Tick values of a log axis over [lo, hi] (lo > 0): 1, 2 and 5 times the powers of ten; only the powers when
 * those are more than 8; 1, 1.5, 2, 3, 5 and 7 times them when fewer than 3 (less than a decade).
 */
export function logTicks(lo: number, hi: number): number[] {
  const at = (mantissas: readonly number[]): { v: number; power: boolean }[] => {
    const out: { v: number; power: boolean }[] = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
      for (const m of mantissas) {
        const v = Number((m * 10 ** e).toPrecision(12));
        if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push({ v, power: m === 1 });
      }
    }
    return out;
  };
  let ticks = at([1, 2, 5]);
  if (ticks.length > 8) ticks = ticks.filter((t) => t.power);
  else if (ticks.length < 3) ticks = at([1, 1.5, 2, 3, 5, 7]);
  return ticks.map((t) => t.v);
}

/** 1200 → 1.2k, 3000000 → 3M: tick labels of token counts. */
export function shortNumber(v: number): string {
  for (const [d, s] of [
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ] as const) {
    if (Math.abs(v) >= d) return `${Number((v / d).toPrecision(3))}${s}`;
  }
  return String(Number(v.toPrecision(6)));
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

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

export interface PlotOptions {
  title?: string;
  width?: number;
  height?: number;
  /** Smoothing of the training curve, 0 (none) to < 1 (default 0.9 when a run has > 50 steps). */
  smoothing?: number;
  /** The x axis: optimizer steps (default) or training tokens seen. */
  x?: 'step' | 'tokens';
  /** A logarithmic x axis (points at x ≤ 0 are left out). */
  logX?: boolean;
  /** Only the held-out curves (solid): the comparison of runs. */
  heldOutOnly?: boolean;
  /** The loss in bits (per token; per byte with a byte tokenizer) instead of nats. */
  bits?: boolean;
}

export function renderSvg(runs: readonly Run[], options: PlotOptions = {}): string {
  const W = options.width ?? 800;
  const H = options.height ?? 460;
  // Many curves: the legend goes beside the chart instead of over it.
  const aside = runs.length > 4;
  const m = { left: 64, right: aside ? 250 : 20, top: 40, bottom: 52 };
  const xOf = (e: LogEntry): number => (options.x === 'tokens' ? (e.tokens ?? Number.NaN) : e.step);
  const yScale = options.bits === true ? 1 / Math.LN2 : 1;
  const logX = options.logX === true;
  // The entries drawn, with x and y in the chart's units.
  const drawn: Run[] = runs.map((r) => ({
    label: r.label,
    entries: r.entries
      .filter((e) => (options.heldOutOnly !== true || e.type === 'val') && Number.isFinite(xOf(e)) && (!logX || xOf(e) > 0))
      .map((e) => ({ type: e.type, step: xOf(e), loss: e.loss * yScale })),
  }));
  const all = drawn.flatMap((r) => r.entries);
  const steps = all.map((e) => e.step);
  const losses = all.map((e) => e.loss);
  let x0 = all.length > 0 ? (logX ? Math.min(...steps) : Math.min(0, ...steps)) : logX ? 1 : 0;
  let x1 = all.length > 0 ? Math.max(logX ? x0 * 1.0001 : x0 + 1, ...steps) : logX ? 10 : 1;
  if (logX) {
    x0 = 10 ** (Math.floor(Math.log10(x0) * 4) / 4);
    x1 = 10 ** (Math.ceil(Math.log10(x1) * 4) / 4);
  }
  let y0 = all.length > 0 ? Math.min(...losses) : 0;
  let y1 = all.length > 0 ? Math.max(...losses) : 1;
  if (y1 - y0 < 1e-9) {
    y0 -= 0.5;
    y1 += 0.5;
  }
  const pad = (y1 - y0) * 0.05;
  y0 = Math.max(0, y0 - pad);
  y1 += pad;
  const px = logX
    ? (s: number): number => m.left + ((Math.log(s) - Math.log(x0)) / (Math.log(x1) - Math.log(x0))) * (W - m.left - m.right)
    : (s: number): number => m.left + ((s - x0) / (x1 - x0)) * (W - m.left - m.right);
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
  for (const t of logX ? logTicks(x0, x1) : niceTicks(x0, x1)) {
    parts.push(`<line x1="${f(px(t))}" x2="${f(px(t))}" y1="${m.top}" y2="${H - m.bottom}" stroke="#f0f0f0"/>`);
    parts.push(`<text x="${f(px(t))}" y="${H - m.bottom + 16}" text-anchor="middle">${options.x === 'tokens' ? shortNumber(t) : t}</text>`);
  }
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${W - m.left - m.right}" height="${H - m.top - m.bottom}" fill="none" stroke="#999"/>`);
  const xLabel = `${options.x === 'tokens' ? 'training tokens' : 'step'}${logX ? ' (log scale)' : ''}`;
  parts.push(`<text x="${(m.left + W - m.right) / 2}" y="${H - 12}" text-anchor="middle">${xLabel}</text>`);
  parts.push(`<text transform="translate(16 ${(m.top + H - m.bottom) / 2}) rotate(-90)" text-anchor="middle">${options.heldOutOnly === true ? 'held-out ' : ''}loss (${options.bits === true ? 'bits' : 'nats'}/token)</text>`);
  // Curves.
  const legend: string[] = [];
  drawn.forEach((run, i) => {
    const color = COLORS[i % COLORS.length]!;
    const train = run.entries.filter((e) => e.type === 'train').sort((a, b) => a.step - b.step);
    const val = run.entries.filter((e) => e.type === 'val').sort((a, b) => a.step - b.step);
    const path = (pts: [number, number][]): string => pts.map(([s, l], j) => `${j === 0 ? 'M' : 'L'}${f(px(s))},${f(py(l))}`).join('');
    const prefix = drawn.length > 1 ? `${run.label}: ` : '';
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
      const dash = options.heldOutOnly === true ? '' : ' stroke-dasharray="6 4"';
      parts.push(`<path d="${path(val.map((e) => [e.step, e.loss]))}" fill="none" stroke="${color}" stroke-width="2"${dash}/>`);
      for (const e of val) parts.push(`<circle cx="${f(px(e.step))}" cy="${f(py(e.loss))}" r="3" fill="${color}"/>`);
      const what = options.heldOutOnly === true ? (drawn.length > 1 ? run.label : 'held-out') : `${prefix}held-out`;
      legend.push(`<line x1="0" x2="22" y1="${legend.length * 18}" y2="${legend.length * 18}" stroke="${color}" stroke-width="2"${dash}/><text x="28" y="${legend.length * 18 + 4}">${escapeXml(what)}</text>`);
    }
  });
  if (legend.length > 0) {
    parts.push(`<g transform="translate(${aside ? W - m.right + 14 : W - m.right - 240} ${m.top + 16})">${legend.join('')}</g>`);
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
