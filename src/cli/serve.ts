// `rwkv serve`: the OpenAI-compatible HTTP server (src/server/) on one model. It listens at once and
// answers /health with 503 while the model loads; SIGINT/SIGTERM let in-flight responses finish, then exit
// (a second signal exits at once).
import type { Rwkv } from '../generation/rwkv.js';
import { RwkvServer } from '../server/app.js';
import { DirectoryStateStore, MemoryStateStore, RedisStateStore, type StateStore } from '../server/state-store.js';
import { resolveTemplate } from './chat.js';
import { DEFAULT_MODEL } from './default-model.js';
import { basename, loadRwkv, type KernelArgs } from './open-model.js';

export interface ServeArgs extends KernelArgs {
  model: string;
  tokenizer?: string;
  host: string;
  port: number;
  apiKey?: string;
  alias?: string;
  maxBatch: number;
  stateDir?: string;
  redis?: string;
  template?: string;
  maxTokens: number;
  maxPromptTokens: number;
  cors: boolean;
  log?: boolean;
}

export async function runServe(args: ServeArgs): Promise<void> {
  const template = await resolveTemplate(args.template);
  const apiKey = args.apiKey ?? process.env['RWKV_API_KEY'];
  // A store that cannot be used fails now, before the model is read.
  const states: StateStore =
    args.redis !== undefined ? await RedisStateStore.open(args.redis) : args.stateDir !== undefined ? await DirectoryStateStore.open(args.stateDir) : new MemoryStateStore();
  const loading = loadRwkv(args.model, args, { batch: { maxBatch: args.maxBatch } });
  const modelId = args.alias ?? modelName(args.model);
  const server = await RwkvServer.create({
    model: loading,
    modelId,
    ...(apiKey !== undefined && apiKey !== '' ? { apiKey } : {}),
    template,
    states,
    cors: args.cors,
    maxTokens: args.maxTokens,
    maxPromptTokens: args.maxPromptTokens,
    logger: args.log === true,
  });
  let url: string;
  try {
    url = await server.listen(args.port, args.host);
  } catch (e) {
    await states.close();
    (await loading.catch(() => undefined))?.close();
    throw e;
  }
  process.stderr.write(`rwkv serve: listening on ${url} (loading the model…)\n`);
  let rwkv: Rwkv;
  try {
    rwkv = await server.ready;
  } catch (e) {
    await server.close();
    await states.close();
    throw e;
  }
  const auth = apiKey !== undefined && apiKey !== '' ? ` -H 'Authorization: Bearer ${apiKey}'` : '';
  process.stderr.write(
    [
      `rwkv serve: ${modelId} (RWKV v${rwkv.config.version}, ${rwkv.config.nLayer} layers × ${rwkv.config.nEmbd}; ${rwkv.kernels}) on ${url}/v1`,
      `  states: ${states.description}; at most ${args.maxBatch} sequences per pass`,
      `  try: curl ${url}/v1/chat/completions${auth} -H 'Content-Type: application/json' -d '{"messages":[{"role":"user","content":"Hello"}],"max_tokens":50}'`,
      '',
    ].join('\n'),
  );
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        process.stderr.write(`rwkv serve: ${signal} again: exiting now\n`);
        process.exit(130);
      }
      stopping = true;
      const inFlight = server.context.metrics.inFlight;
      void inFlight.get().then((g) => {
        const n = g.values[0]?.value ?? 0;
        process.stderr.write(`rwkv serve: ${signal}: finishing ${n} request(s) in flight, then exiting (${signal} again exits now)\n`);
      });
      void server
        .close()
        .then(() => states.close())
        .then(() => rwkv.close())
        .then(resolve, (e: unknown) => {
          process.stderr.write(`rwkv serve: ${e instanceof Error ? e.message : String(e)}\n`);
          resolve();
        });
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

/** The id clients see: the file's name without its extension ("rwkv-ts-default" for the shipped model). */
function modelName(model: string): string {
  if (model === DEFAULT_MODEL) return 'rwkv-ts-default';
  return basename(model).replace(/\.(pth|safetensors|gguf|bin)$/, '');
}
