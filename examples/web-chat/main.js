// The web chat demo of rwkv-ts: the browser bundle imported by a relative URL, no build step, so the page runs
// wherever the repository root is served (by `npm run demo`, or any static file server after `npm run build`).
// The model runs in the bundle's worker; this file only drives the page.
import { Rwkv } from '../../dist/browser/rwkv.js';

// The shipped model, beside the page in the repository. A URL typed in the field is read relative to this
// folder too; `?model=URL` preselects another one.
const DEFAULT_MODEL = '../../models/default/model.safetensors';

// The chat template the models were tuned on (src/generation/chat-template.ts): "User: …\n\nAssistant:",
// and an answer ends at a blank line.
const USER = 'User';
const ASSISTANT = 'Assistant';
// `rwkv chat`'s sampling besides temperature and top-p (ChatRWKV's): the penalties keep a small model from
// repeating itself, and the end-of-text token (0) is never drawn, so an answer ends at its blank line.
const CHAT_OPTIONS = { stop: ['\n\n'], bannedTokens: [0], presencePenalty: 0.5, frequencyPenalty: 0.5, penaltyDecay: 0.996 };

const $ = (id) => document.getElementById(id);
const ui = {
  modelForm: $('model-form'),
  modelUrl: $('model-url'),
  modelFile: $('model-file'),
  loadUrl: $('load-url'),
  progress: $('load-progress'),
  modelStatus: $('model-status'),
  threadsInfo: $('threads-info'),
  log: $('chat-log'),
  error: $('error'),
  chatForm: $('chat-form'),
  message: $('message'),
  send: $('send'),
  stop: $('stop'),
  temperature: $('temperature'),
  topP: $('top-p'),
  maxTokens: $('max-tokens'),
  saveState: $('save-state'),
  loadState: $('load-state'),
  stateFile: $('state-file'),
  reset: $('reset'),
  stateInfo: $('state-info'),
};

let rwkv; // the loaded model (undefined until one loads)
let state; // the conversation: every turn is fed into this one state, so nothing is read twice
let current; // the AbortController of the load or answer in progress; Stop aborts it

/** 'loading', 'generating', 'ready' (a model, nothing running) or 'empty' (no model): on <body> for CSS and tests. */
function setStatus(status) {
  document.body.dataset.status = status;
  const busy = status === 'loading' || status === 'generating';
  const ready = status === 'ready';
  ui.send.disabled = !ready;
  ui.stop.disabled = !busy;
  ui.loadUrl.disabled = busy;
  ui.modelFile.disabled = busy;
  ui.saveState.disabled = !ready;
  ui.loadState.disabled = !ready;
  ui.reset.disabled = !ready;
  ui.stateInfo.textContent = state !== undefined ? `${state.tokenCount} tokens in the conversation` : '';
}

function showError(e) {
  ui.error.hidden = e === undefined;
  ui.error.textContent = e === undefined ? '' : `${e.name ?? 'Error'}: ${e.message ?? String(e)}`;
}

function formatBytes(n) {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(0)} KiB`;
}

/** Appends a message to the log; returns its text and meta elements (an answer is streamed into its text). */
function addMessage(role, text) {
  const item = document.createElement('div');
  item.className = `message ${role}`;
  if (role !== 'note') {
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = role === 'user' ? USER : ASSISTANT;
    item.append(who);
  }
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  const meta = document.createElement('span');
  meta.className = 'meta';
  item.append(body, meta);
  ui.log.append(item);
  ui.log.scrollTop = ui.log.scrollHeight;
  return { item, body, meta };
}

/** Loads a model (a URL or a File) in place of the current one; the old one stays until the new one is ready. */
async function loadModel(source, name) {
  const controller = new AbortController();
  current = controller;
  showError(undefined);
  setStatus('loading');
  ui.progress.removeAttribute('value'); // indeterminate until the first progress report
  ui.modelStatus.textContent = `loading ${name}…`;
  try {
    let warning = '';
    const next = await Rwkv.load(source, {
      signal: controller.signal,
      // e.g. the server cannot be reached and the copy kept from an earlier visit is used
      onWarning: (message) => (warning = ` (${message})`),
      onProgress: ({ loaded, total }) => {
        // total is 0 when the server does not say the size
        if (total > 0) ui.progress.value = loaded / total;
        ui.modelStatus.textContent = `loading ${name}: ${formatBytes(loaded)}${total > 0 ? ` of ${formatBytes(total)}` : ''}`;
      },
    });
    await rwkv?.close();
    rwkv = next;
    state = rwkv.createState();
    ui.log.replaceChildren();
    const c = rwkv.config;
    ui.progress.value = 1;
    ui.modelStatus.textContent = `${name}: RWKV v${c.version}, ${c.nLayer} layers, width ${c.nEmbd}, vocabulary ${c.nVocab}${warning}`;
    const info = rwkv.info;
    ui.threadsInfo.textContent = `${info.threads} thread${info.threads === 1 ? '' : 's'}: ${info.threadsReason}. Kernels: ${info.kernels}.`;
  } catch (e) {
    ui.progress.value = 0;
    const stopped = e?.name === 'AbortError';
    ui.modelStatus.textContent = `${stopped ? 'loading stopped' : 'loading failed'}; ${rwkv !== undefined ? 'the previous model is still loaded' : 'no model loaded'}`;
    if (!stopped) showError(e);
  } finally {
    current = undefined;
    setStatus(rwkv !== undefined ? 'ready' : 'empty');
  }
}

/** One turn: the user's message and the assistant's cue go into the conversation's state, the answer streams in. */
async function send(text) {
  // A blank line would end the turn early (turns are separated by one), so runs of newlines fold into one.
  const message = text.replace(/\r\n/g, '\n').replace(/\n{2,}/g, '\n').trim();
  if (message === '' || rwkv === undefined || current !== undefined) return;
  showError(undefined);
  addMessage('user', message);
  const answer = addMessage('assistant', '');
  const controller = new AbortController();
  current = controller;
  setStatus('generating');
  try {
    const generation = rwkv.generate(`${USER}: ${message}\n\n${ASSISTANT}:`, {
      ...CHAT_OPTIONS,
      temperature: Number(ui.temperature.value),
      topP: Number(ui.topP.value),
      maxTokens: Number(ui.maxTokens.value),
      state,
      signal: controller.signal,
    });
    let reply = '';
    for await (const piece of generation) {
      reply += piece.text;
      answer.body.textContent = reply.trimStart(); // the model writes " " after "Assistant:"
      ui.log.scrollTop = ui.log.scrollHeight;
    }
    // An answer cut short (Stop, max tokens) did not write its blank line: add it, so the next turn starts
    // where the template expects.
    if (generation.finishReason !== 'stop') await rwkv.feed(state, '\n\n');
    const { generatedTokens, generateMs } = generation.stats;
    const rate = generateMs > 0 ? (generatedTokens / (generateMs / 1000)).toFixed(1) : '–';
    const why = { aborted: 'stopped · ', length: 'max tokens · ' }[generation.finishReason] ?? '';
    answer.meta.textContent = `${why}${generatedTokens} tokens · ${rate} tokens/s`;
    answer.item.classList.toggle('stopped', generation.finishReason === 'aborted');
    answer.item.dataset.finish = generation.finishReason;
  } catch (e) {
    answer.item.dataset.finish = 'error';
    showError(e);
  } finally {
    current = undefined;
    setStatus('ready');
  }
}

/** Downloads the conversation's state file (the same format `rwkv chat`'s /save writes). */
async function saveState() {
  const bytes = await rwkv.saveState(state);
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
  link.download = 'chat.state';
  link.click();
  // The download has started by the next turn of the event loop; the URL is not needed after that.
  setTimeout(() => URL.revokeObjectURL(link.href), 0);
}

/** Continues from a state file (this page's Save state, or `rwkv chat`'s /save); a state of another model is refused. */
async function loadStateFile(file) {
  const loaded = await rwkv.loadState(file);
  state.dispose();
  state = loaded;
  ui.log.replaceChildren();
  addMessage('note', `Loaded ${file.name}: the conversation goes on from its ${state.tokenCount} tokens.`);
}

function reset() {
  state.dispose();
  state = rwkv.createState();
  ui.log.replaceChildren();
}

/** Runs a click handler that may throw: its error is shown on the page (never only in the console). */
function guarded(action) {
  return async (event) => {
    event?.preventDefault();
    showError(undefined);
    try {
      await action(event);
    } catch (e) {
      showError(e);
    } finally {
      if (current === undefined && rwkv !== undefined) setStatus('ready');
    }
  };
}

ui.modelForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const url = ui.modelUrl.value.trim();
  if (url === '') return;
  let resolved;
  try {
    resolved = new URL(url, import.meta.url).href;
  } catch (e) {
    showError(e); // e.g. http://[bad
    return;
  }
  void loadModel(resolved, url.split('/').pop());
});
ui.modelFile.addEventListener('change', () => {
  const file = ui.modelFile.files?.[0];
  if (file !== undefined) void loadModel(file, file.name);
  ui.modelFile.value = ''; // choosing the same file again loads it again
});
ui.chatForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = ui.message.value;
  if (rwkv === undefined || current !== undefined || text.trim() === '') return;
  ui.message.value = '';
  void send(text);
});
ui.message.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.chatForm.requestSubmit();
  }
});
ui.stop.addEventListener('click', () => current?.abort());
ui.saveState.addEventListener('click', guarded(saveState));
ui.loadState.addEventListener('click', () => ui.stateFile.click());
ui.stateFile.addEventListener(
  'change',
  guarded(async () => {
    const file = ui.stateFile.files?.[0];
    ui.stateFile.value = '';
    if (file !== undefined) await loadStateFile(file);
  }),
);
ui.reset.addEventListener('click', guarded(reset));

// Start with the default model (or ?model=…) so that the page is ready to chat as soon as it has loaded.
ui.modelUrl.value = new URLSearchParams(location.search).get('model') ?? DEFAULT_MODEL;
ui.modelForm.requestSubmit();
