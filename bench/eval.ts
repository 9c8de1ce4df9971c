// The evaluation harness's speed against the engine's own prompt speed, on a random model of the RWKV-4
// 169M shape with the GPT-NeoX 20B tokenizer (the paper's setting), run as `rwkv eval` runs it (16 items in
// flight, ≤ 32 sequences and 512 rows a pass). Eval tokens counts every token the harness feeds the model
// (prefix + context once per item, continuations less their last token).
// - engine busy: the share of the evaluation's wall time spent inside the model's passes (RwkvModel.run);
//   the rest is the harness's own work (tokenizing, log-softmax, scheduling).
// - tokens per CPU-second (user + system time of the process, every thread), beside tokens per wall-second:
//   on a machine shared with other jobs the wall clock swings by 2× within a minute, CPU time much less.
// - the engine's prompt path on one 512-token prompt, with the last position's logits and with every
//   position's, measured just before and after each row. Continuation tokens need every position's logits
//   for their log-softmax: that head product is part of the task, not of the harness, so "engine-equivalent"
//   puts contexts at the first rate and continuations at the second.
//   npm run bench:eval -- [--limit 32] [--threads 2] [--tasks lambada,piqa,...] [--concurrency 16]
//                         [--max-batch 32] [--max-rows 512] [--no-save]
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DataFiles } from '../src/eval/data.js';
import { evaluate } from '../src/eval/evaluate.js';
import { loadTask, parseTasks, type TaskName } from '../src/eval/tasks.js';
import { Rwkv } from '../src/generation/rwkv.js';
import { WasmBackend } from '../src/kernels/wasm-backend.js';
import { modelFromSource } from '../src/models/load.js';
import { randomSource, RWKV4_169M } from '../src/models/random.js';
import { ByteTokenizer } from '../src/tokenizers/bytes.js';
import { loadTokenizer } from '../src/tokenizers/load.js';
import type { Tokenizer } from '../src/tokenizers/tokenizer.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Tokens per second of wall time and of CPU time. */
interface Rate {
  wall: number;
  cpu: number;
}

interface Row {
  task: string;
  items: number;
  tokens: number;
  contextTokens: number;
  continuationTokens: number;
  passes: number;
  rowsPerPass: number;
  /** Share of the scoring's wall time inside RwkvModel.run. */
  engineBusy: number;
  eval: Rate;
  promptLast: Rate;
  promptAll: Rate;
  engineEquivalent: Rate;
  /** eval ÷ prompt (last logits) and eval ÷ engine-equivalent, by wall and by CPU time. */
  ofPromptLast: Rate;
  ofEngineEquivalent: Rate;
}

/** Wall milliseconds and CPU milliseconds (every thread) since `from`. */
function clock(from?: { wall: number; cpu: NodeJS.CpuUsage }): { wall: number; cpu: NodeJS.CpuUsage; wallMs: number; cpuMs: number } {
  const wall = performance.now();
  const cpu = process.cpuUsage();
  if (from === undefined) return { wall, cpu, wallMs: 0, cpuMs: 0 };
  const d = process.cpuUsage(from.cpu);
  return { wall, cpu, wallMs: wall - from.wall, cpuMs: (d.user + d.system) / 1000 };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      limit: { type: 'string', default: '32' },
      threads: { type: 'string', default: '2' },
      tasks: { type: 'string', default: 'lambada,piqa,hellaswag,arc_easy,winogrande,copa' },
      concurrency: { type: 'string', default: '16' },
      'max-batch': { type: 'string', default: '32' },
      'max-rows': { type: 'string', default: '512' },
      'no-save': { type: 'boolean', default: false },
    },
  });
  const limit = Number(values.limit);
  const threads = Number(values.threads);
  const concurrency = Number(values.concurrency);
  const maxBatch = Number(values['max-batch']);
  const maxRows = Number(values['max-rows']);
  const tasks = parseTasks(values.tasks!.split(','));
  const dataDir = process.env.RWKV_DATA ?? path.resolve(ROOT, '..', 'shared', 'data');
  const fixtures = process.env.RWKV_FIXTURES ?? path.resolve(ROOT, '..', 'shared', 'fixtures');
  const tokenizerFile = path.join(fixtures, 'tokenizers', '20B_tokenizer.json');
  const tokenizer: Tokenizer = fs.existsSync(tokenizerFile) ? await loadTokenizer(tokenizerFile) : new ByteTokenizer();

  const backend = await WasmBackend.create({ threads });
  const model = modelFromSource(randomSource(RWKV4_169M, { dtype: 'f32', allocate: (n) => backend.allocateBytes(n) }), backend);
  // Time inside the model's passes (they run one at a time).
  let busyMs = 0;
  const run = model.run.bind(model);
  model.run = async (batch) => {
    const t = performance.now();
    try {
      return await run(batch);
    } finally {
      busyMs += performance.now() - t;
    }
  };
  const rwkv = await Rwkv.fromModel(model, { tokenizer, prefixCache: false, batch: { maxBatch, maxRows } });
  const vocab = model.config.nVocab;
  const ids = (n: number): number[] => Array.from({ length: n }, (_, i) => (i * 7919 + 13) % vocab);

  const prompt = async (all: boolean): Promise<Rate> => {
    const c0 = clock();
    await model.forwardSequence(ids(512), model.createState(), { allLogits: all });
    const c = clock(c0);
    return { wall: 512 / (c.wallMs / 1000), cpu: 512 / (c.cpuMs / 1000) };
  };
  const mean = (a: Rate, b: Rate): Rate => ({ wall: (a.wall + b.wall) / 2, cpu: (a.cpu + b.cpu) / 2 });
  const ratio = (a: Rate, b: Rate): Rate => ({ wall: a.wall / b.wall, cpu: a.cpu / b.cpu });
  await prompt(false); // warm-up

  const files = new DataFiles(dataDir);
  const split = async (names: readonly TaskName[]): Promise<{ context: number; continuation: number; items: number }> => {
    let context = 0;
    let continuation = 0;
    let items = 0;
    for (const name of names) {
      const task = await loadTask(name, files, limit);
      items += task.items.length;
      if (task.kind === 'perplexity') {
        for (const d of task.items) {
          context += 1;
          continuation += Math.max(0, tokenizer.encode(d.text).length - 1);
        }
        continue;
      }
      for (const item of task.items) {
        for (const c of new Set(item.requests.map((r) => r.context))) context += 1 + tokenizer.encode(c).length;
        for (const r of item.requests) continuation += Math.max(0, tokenizer.encode(r.continuation).length - 1);
      }
    }
    return { context, continuation, items };
  };

  const rows: Row[] = [];
  const measure = async (label: string, names: readonly TaskName[]): Promise<void> => {
    const last0 = await prompt(false);
    const all0 = await prompt(true);
    let tokens = 0;
    let start: ReturnType<typeof clock> | undefined;
    let end: ReturnType<typeof clock> | undefined;
    let busyAtStart = 0;
    let passesAtStart = 0;
    await evaluate(rwkv, {
      tasks: names,
      data: dataDir,
      limit,
      concurrency,
      onProgress: (p) => {
        if (p.done === 0) {
          // Scoring starts now: the data files have been read.
          start = clock();
          busyAtStart = busyMs;
          passesAtStart = rwkv.batcher.stats.passes;
        } else {
          tokens = p.tokens;
          if (p.done === p.total) end = clock(start);
        }
      },
    });
    const busy = busyMs - busyAtStart;
    const passes = rwkv.batcher.stats.passes - passesAtStart;
    const promptLast = mean(last0, await prompt(false));
    const promptAll = mean(all0, await prompt(true));
    const s = await split(names);
    if (s.context + s.continuation !== tokens) throw new Error(`${label}: the harness fed ${tokens} tokens, the items hold ${s.context + s.continuation}`);
    const rate: Rate = { wall: tokens / (end!.wallMs / 1000), cpu: tokens / (end!.cpuMs / 1000) };
    const equivalent: Rate = {
      wall: tokens / (s.context / promptLast.wall + s.continuation / promptAll.wall),
      cpu: tokens / (s.context / promptLast.cpu + s.continuation / promptAll.cpu),
    };
    rows.push({
      task: label,
      items: s.items,
      tokens,
      contextTokens: s.context,
      continuationTokens: s.continuation,
      passes,
      rowsPerPass: tokens / passes,
      engineBusy: busy / end!.wallMs,
      eval: rate,
      promptLast,
      promptAll,
      engineEquivalent: equivalent,
      ofPromptLast: ratio(rate, promptLast),
      ofEngineEquivalent: ratio(rate, equivalent),
    });
    process.stderr.write(`  ${label}: ${tokens} tokens in ${(end!.wallMs / 1000).toFixed(1)} s (${(end!.cpuMs / 1000).toFixed(1)} s of CPU)\n`);
  };
  await measure('(warm-up)', tasks.slice(0, 1));
  rows.length = 0;
  for (const name of tasks) await measure(name, [name]);
  if (tasks.length > 1) await measure('all together', tasks);

  const f = (x: number, d = 0): string => x.toFixed(d);
  const pair = (r: Rate, scale = 1, d = 0, unit = ''): string => `${f(scale * r.wall, d)}${unit} / ${f(scale * r.cpu, d)}${unit}`;
  const lines = [
    `RWKV-4 169M shape (random weights, f32), ${backend.description}, tokenizer ${tokenizer.name}, --limit ${limit}, ` +
      `${concurrency} items in flight, ≤ ${maxBatch} sequences and ${maxRows} rows a pass. Rates: per wall-second / per CPU-second.`,
    '',
    '| task | items | tokens (context + continuation) | rows/pass | engine busy | eval tok/s | prompt tok/s, last logits | prompt tok/s, all logits | eval ÷ prompt (last) | eval ÷ engine-equivalent |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.task} | ${r.items} | ${r.tokens} (${r.contextTokens} + ${r.continuationTokens}) | ${f(r.rowsPerPass)} | ${f(100 * r.engineBusy, 1)} % | ` +
        `${pair(r.eval)} | ${pair(r.promptLast)} | ${pair(r.promptAll)} | ${pair(r.ofPromptLast, 100, 0, ' %')} | ${pair(r.ofEngineEquivalent, 100, 0, ' %')} |`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  if (values['no-save'] !== true) {
    const date = new Date().toISOString().slice(0, 10);
    const out = path.join(ROOT, 'docs', 'results', `eval-${date}.json`);
    const json = { date, shape: 'RWKV-4 169M (random, f32)', kernels: backend.description, threads, tokenizer: tokenizer.name, limit, concurrency, maxBatch, maxRows, rows };
    fs.writeFileSync(out, `${JSON.stringify(json, null, 2)}\n`);
    process.stderr.write(`wrote ${path.relative(process.cwd(), out)}\n`);
  }
  await rwkv.close();
  await backend.close();
}

await main();
