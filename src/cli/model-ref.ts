// Model references beyond paths: `hf:OWNER/REPO[@REVISION]/FILE` names a file of a Hugging Face repository,
// downloaded once into a cache directory and used from there. Node only (the CLI's). Downloads resume from a
// `.part` file with HTTP Range, are checked against the size and the sha256 the hub announces, and never
// accept an HTML page as a model.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { RwkvError, ArgumentError, type RwkvErrorCode } from '../errors.js';
import { KNOWN_VOCABULARIES } from '../tokenizers/load.js';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';
const PREFIX = 'hf:';

/** A parsed `hf:` reference. */
export interface HfReference {
  owner: string;
  repo: string;
  /** Branch, tag or commit; `main` unless `@REVISION` is given. */
  revision: string;
  /** Path of the file inside the repository (may contain `/`). */
  file: string;
}

/** A download that failed: the URL, and the HTTP status when there was an answer. */
export class DownloadError extends RwkvError {
  readonly url: string;
  readonly status: number | undefined;
  constructor(code: RwkvErrorCode, url: string, message: string, status?: number) {
    super(code, message, { file: url });
    this.url = url;
    this.status = status;
  }
}

/** Whether `s` is a model reference (`hf:…`) rather than a path. */
export function isModelReference(s: string): boolean {
  return s.startsWith(PREFIX);
}

// One path segment of a repository name, revision or file: nothing that could climb out of the cache.
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function parseModelReference(s: string): HfReference {
  const bad = (why: string): never => {
    throw new ArgumentError(`${s}: ${why} (expected hf:OWNER/REPO/FILE or hf:OWNER/REPO@REVISION/FILE)`);
  };
  if (!isModelReference(s)) bad('not an hf: reference');
  const parts = s.slice(PREFIX.length).split('/');
  if (parts.length < 3) bad('too few parts');
  const owner = parts[0]!;
  let repo = parts[1]!;
  let revision = 'main';
  const at = repo.indexOf('@');
  if (at >= 0) {
    revision = repo.slice(at + 1);
    repo = repo.slice(0, at);
    if (!NAME.test(revision) || revision.includes('..')) bad(`bad revision '${revision}'`);
  }
  if (!NAME.test(owner)) bad(`bad owner '${owner}'`);
  if (!NAME.test(repo) || repo.includes('..')) bad(`bad repository name '${repo}'`);
  const fileParts = parts.slice(2);
  for (const p of fileParts) {
    if (p === '' || p === '.' || p === '..' || p.includes('\\') || p.includes('\0')) bad(`bad file path '${fileParts.join('/')}'`);
  }
  return { owner, repo, revision, file: fileParts.join('/') };
}

export function formatReference(r: HfReference): string {
  return `${PREFIX}${r.owner}/${r.repo}${r.revision === 'main' ? '' : `@${r.revision}`}/${r.file}`;
}

/**
 * Where downloads are kept: $RWKV_CACHE, else the user's cache directory (XDG_CACHE_HOME or ~/.cache on
 * Linux, ~/Library/Caches on macOS, %LOCALAPPDATA% on Windows) + rwkv-ts.
 */
export function cacheDir(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform, home = os.homedir()): string {
  if (env.RWKV_CACHE !== undefined && env.RWKV_CACHE !== '') return path.resolve(env.RWKV_CACHE);
  if (platform === 'win32') {
    return path.win32.join(env.LOCALAPPDATA !== undefined && env.LOCALAPPDATA !== '' ? env.LOCALAPPDATA : path.win32.join(home, 'AppData', 'Local'), 'rwkv-ts');
  }
  if (platform === 'darwin') return path.posix.join(home, 'Library', 'Caches', 'rwkv-ts');
  // The XDG spec says to ignore a relative XDG_CACHE_HOME.
  const xdg = env.XDG_CACHE_HOME;
  return path.posix.join(xdg !== undefined && path.posix.isAbsolute(xdg) ? xdg : path.posix.join(home, '.cache'), 'rwkv-ts');
}

/** The hub's address: $HF_ENDPOINT or https://huggingface.co, without a trailing slash. */
export function hubEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  const e = env.HF_ENDPOINT;
  const endpoint = (e !== undefined && e !== '' ? e : DEFAULT_ENDPOINT).replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]/.test(endpoint)) throw new ArgumentError(`HF_ENDPOINT must be an http(s) URL, got '${endpoint}'`);
  return endpoint;
}

export function referenceUrl(r: HfReference, endpoint = hubEndpoint()): string {
  const file = r.file.split('/').map(encodeURIComponent).join('/');
  return `${endpoint}/${r.owner}/${r.repo}/resolve/${encodeURIComponent(r.revision)}/${file}`;
}

/** The file's place in the cache: CACHE/hf/OWNER/REPO/REVISION/FILE (a tokenizer pulled from the repo lands beside it). */
export function cachedPath(r: HfReference, dir = cacheDir()): string {
  return path.join(dir, 'hf', r.owner, r.repo, r.revision, ...r.file.split('/'));
}

/** The metadata kept beside a downloaded file. */
export interface CacheMetadata {
  reference: string;
  url: string;
  size: number;
  sha256: string;
  /** Whether the hub announced the sha256 (and it was checked) or it was only computed here. */
  sha256Verified: boolean;
  etag: string | null;
  downloadedAt: string;
}

export function metadataPath(file: string): string {
  return `${file}.meta.json`;
}

export interface DownloadStart {
  url: string;
  path: string;
  /** Total bytes, when known. */
  total: number | undefined;
  /** Bytes already there from an earlier, interrupted download. */
  resumedFrom: number;
}

export interface DownloadProgress {
  loaded: number;
  total: number | undefined;
  resumedFrom: number;
}

export interface ResolveOptions {
  /** Use only the cache; never the network. Default: $HF_HUB_OFFLINE is 1/true. */
  offline?: boolean;
  /** Download again even when cached. */
  force?: boolean;
  /** After a fresh download, also try the tokenizer files of the same repository directory (absent ones are skipped). */
  withTokenizer?: boolean;
  onStart?: (info: DownloadStart) => void;
  onProgress?: (p: DownloadProgress) => void;
  /** Called when a download has ended, well or not. */
  onEnd?: () => void;
  signal?: AbortSignal;
  /** Defaults from the environment: $HF_ENDPOINT, $RWKV_CACHE…, $HF_TOKEN. */
  endpoint?: string;
  cacheDir?: string;
  token?: string | undefined;
}

export interface PulledFile {
  path: string;
  /** False when the cache already had it. */
  downloaded: boolean;
  metadata: CacheMetadata | undefined;
  /** Tokenizer files pulled beside it (withTokenizer). */
  companions: string[];
}

/** The local path of `ref`: a path is returned as is; an `hf:` reference is downloaded unless cached. */
export async function resolveModel(ref: string, options: ResolveOptions = {}): Promise<string> {
  if (!isModelReference(ref)) return ref;
  return (await pullModel(ref, options)).path;
}

function envOffline(): boolean {
  const v = process.env.HF_HUB_OFFLINE;
  return v === '1' || v?.toLowerCase() === 'true';
}

/** Downloads `ref` into the cache (unless there already), with what happened. */
export async function pullModel(ref: string, options: ResolveOptions = {}): Promise<PulledFile> {
  const r = parseModelReference(ref);
  const dir = options.cacheDir ?? cacheDir();
  const dest = cachedPath(r, dir);
  const offline = options.offline ?? envOffline();
  const cached = fs.existsSync(dest) && fs.statSync(dest).isFile();
  if (cached && options.force !== true) return { path: dest, downloaded: false, metadata: readJson<CacheMetadata>(metadataPath(dest)), companions: [] };
  if (offline) {
    throw new RwkvError(
      'FILE_NOT_FOUND',
      `not in the download cache (${dest}) and offline mode (--offline, HF_HUB_OFFLINE) forbids the network: run \`rwkv pull ${ref}\` while online`,
      { file: ref },
    );
  }
  const endpoint = (options.endpoint ?? hubEndpoint()).replace(/\/+$/, '');
  const token = 'token' in options ? options.token : process.env.HF_TOKEN;
  const url = referenceUrl(r, endpoint);
  const metadata = await download(url, dest, formatReference(r), { ...options, token: token !== '' ? token : undefined });
  const companions: string[] = [];
  if (options.withTokenizer === true) {
    const fileDir = path.posix.dirname(r.file);
    for (const k of KNOWN_VOCABULARIES) {
      if (k.file === undefined) continue;
      const c = { ...r, file: fileDir === '.' ? k.file : `${fileDir}/${k.file}` };
      if (fs.existsSync(cachedPath(c, dir))) continue;
      try {
        const p = await pullModel(formatReference(c), { ...options, withTokenizer: false, force: false });
        companions.push(p.path);
      } catch (e) {
        // Best effort: most repositories hold no tokenizer file.
        if (!(e instanceof DownloadError)) throw e;
      }
    }
  }
  return { path: dest, downloaded: true, metadata, companions };
}

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

function writeJson(file: string, value: unknown): void {
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  fs.renameSync(tmp, file);
}

/** An entity tag without W/ and quotes. */
function bareEtag(v: string | null): string | undefined {
  if (v === null) return undefined;
  return v.replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
}

const SHA256 = /^[0-9a-f]{64}$/;

interface Answer {
  res: Response;
  /** What the hub said on its last hop (a renamed repository redirects within the hub first; then the CDN). */
  etag: string | undefined;
  sha256: string | undefined;
  size: number | undefined;
}

function httpError(url: string, res: Response, tokenSent: boolean): DownloadError {
  const status = `HTTP ${res.status}${res.statusText !== '' ? ` ${res.statusText}` : ''}`;
  if (res.status === 401 || res.status === 403) {
    const how = tokenSent
      ? 'HF_TOKEN was sent but does not give access (a gated repository needs its terms accepted on the hub)'
      : 'the repository is private, gated or does not exist: set HF_TOKEN to an access token';
    return new DownloadError('FILE_NOT_FOUND', url, `${status}: ${how}`, res.status);
  }
  if (res.status === 404) {
    return new DownloadError('FILE_NOT_FOUND', url, `${status}: the file or the repository does not exist (check OWNER/REPO, the revision and the file's path)`, res.status);
  }
  return new DownloadError('BAD_DATA', url, `${status}: the download failed`, res.status);
}

/** GET `url`, following redirects by hand so that the hub's own headers are seen and the token goes only to the hub. */
async function request(url: string, headers: Record<string, string>, token: string | undefined, signal: AbortSignal | undefined): Promise<Answer> {
  const origin = new URL(url).origin;
  let current = url;
  let hub: Response | undefined;
  for (let hop = 0; hop <= 10; hop++) {
    const h: Record<string, string> = { ...headers };
    if (token !== undefined && new URL(current).origin === origin) h.authorization = `Bearer ${token}`;
    let res: Response;
    try {
      res = await fetch(current, { headers: h, redirect: 'manual', ...(signal !== undefined ? { signal } : {}) });
    } catch (e) {
      if (signal?.aborted === true) throw e;
      throw new DownloadError('FILE_NOT_FOUND', current, `cannot reach the server (${describeCause(e)}); check the network or HF_ENDPOINT`);
    }
    if (new URL(current).origin === origin) hub = res;
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location !== null) {
      await res.body?.cancel();
      current = new URL(location, current).toString();
      continue;
    }
    const said = (hub ?? res).headers;
    const linked = bareEtag(said.get('x-linked-etag'));
    const etag = linked ?? bareEtag(said.get('etag'));
    const sha = [linked, bareEtag(said.get('etag'))].find((v) => v !== undefined && SHA256.test(v));
    const linkedSize = said.get('x-linked-size');
    return { res, etag, sha256: sha, size: linkedSize !== null && /^\d+$/.test(linkedSize) ? Number(linkedSize) : undefined };
  }
  throw new DownloadError('BAD_DATA', url, 'too many redirects');
}

function describeCause(e: unknown): string {
  const cause = e instanceof Error ? (e.cause as { code?: string; message?: string } | undefined) : undefined;
  return cause?.code ?? cause?.message ?? (e instanceof Error ? e.message : String(e));
}

interface PartInfo {
  url: string;
  etag: string | undefined;
  size: number | undefined;
}

/** Downloads `url` to `dest` through `dest.part` (resumed when possible); returns the metadata written beside it. */
async function download(url: string, dest: string, reference: string, options: ResolveOptions & { token: string | undefined }): Promise<CacheMetadata> {
  const part = `${dest}.part`;
  const partInfoFile = `${part}.json`;
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  const info = readJson<PartInfo>(partInfoFile);
  let start = fs.existsSync(part) && info?.url === url ? fs.statSync(part).size : 0;
  const tokenSent = options.token !== undefined;

  let answer: Answer | undefined;
  for (let attempt = 0; answer === undefined; attempt++) {
    // At most two tries: a restart from 0 sends no Range, so it cannot loop.
    // identity: sizes and hashes are of the bytes as stored, not of a compressed transfer.
    const headers: Record<string, string> = { 'accept-encoding': 'identity', ...(start > 0 ? { range: `bytes=${start}-` } : {}) };
    const a = await request(url, headers, options.token, options.signal);
    const { res } = a;
    if (res.status === 416 && start > 0 && attempt === 0) {
      // The part is as long as the file or longer: start again.
      await res.body?.cancel();
      start = 0;
      continue;
    }
    if (res.status !== 200 && res.status !== 206) {
      await res.body?.cancel();
      throw httpError(url, res, tokenSent);
    }
    const type = res.headers.get('content-type') ?? '';
    if (/^\s*text\/html/i.test(type)) {
      await res.body?.cancel();
      throw new DownloadError('BAD_DATA', url, `HTTP ${res.status} answered with an HTML page (${type}), not a model file (a login or error page?): check the reference and HF_ENDPOINT`, res.status);
    }
    const total = a.size ?? totalOf(res);
    if (start > 0) {
      const range = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
      const changed = info === undefined || info.etag !== a.etag || (info.size !== undefined && total !== undefined && info.size !== total);
      if (res.status === 206 && (changed || range === null || Number(range[1]) !== start)) {
        // The file changed since the part was written, or the server answered another range: start again.
        await res.body?.cancel();
        start = 0;
        continue;
      }
      if (res.status === 200) start = 0; // the server ignored Range: the whole file follows
    } else if (res.status === 206) {
      await res.body?.cancel();
      throw new DownloadError('BAD_DATA', url, 'HTTP 206 to a request without Range');
    }
    answer = a;
  }

  const { res } = answer;
  const total = answer.size ?? totalOf(res);
  if (start === 0) writeJson(partInfoFile, { url, etag: answer.etag, size: total } satisfies PartInfo);
  const hash = createHash('sha256');
  if (start > 0) {
    for await (const chunk of fs.createReadStream(part, { end: start - 1 })) hash.update(chunk as Buffer);
  }
  options.onStart?.({ url, path: dest, total, resumedFrom: start });
  let loaded = start;
  const fh = await fs.promises.open(part, start > 0 ? 'a' : 'w');
  try {
    const reader = res.body?.getReader();
    for (;;) {
      if (reader === undefined) break;
      const { done, value: bytes } = await reader.read();
      if (done) break;
      {
        await fh.write(bytes);
        hash.update(bytes);
        loaded += bytes.length;
        options.onProgress?.({ loaded, total, resumedFrom: start });
      }
    }
  } catch (e) {
    if (options.signal?.aborted === true) throw e;
    // The part is kept: the next run resumes it.
    throw new DownloadError('BAD_DATA', url, `download interrupted after ${loaded} bytes (${describeCause(e)}); run it again to resume`);
  } finally {
    await fh.close();
    options.onEnd?.();
  }

  const discard = (): void => {
    fs.rmSync(part, { force: true });
    fs.rmSync(partInfoFile, { force: true });
  };
  if (total !== undefined && loaded !== total) {
    if (loaded > total) discard();
    const what = loaded < total ? 'run it again to resume' : 'the partial file was deleted';
    throw new DownloadError('TRUNCATED', url, `got ${loaded} bytes of ${total}; ${what}`);
  }
  const sha256 = hash.digest('hex');
  if (answer.sha256 !== undefined && sha256 !== answer.sha256) {
    discard();
    throw new DownloadError('BAD_DATA', url, `sha256 mismatch: the hub announced ${answer.sha256}, the download has ${sha256}; it was deleted`);
  }
  const metadata: CacheMetadata = {
    reference,
    url,
    size: loaded,
    sha256,
    sha256Verified: answer.sha256 !== undefined,
    etag: answer.etag ?? null,
    downloadedAt: new Date().toISOString(),
  };
  // Metadata first: a file in the cache always has it beside it.
  writeJson(metadataPath(dest), metadata);
  fs.renameSync(part, dest);
  fs.rmSync(partInfoFile, { force: true });
  return metadata;
}

/** The whole file's size from a 200's Content-Length or a 206's Content-Range. */
function totalOf(res: Response): number | undefined {
  if (res.status === 206) {
    const m = /\/(\d+)$/.exec(res.headers.get('content-range') ?? '');
    return m !== null ? Number(m[1]) : undefined;
  }
  const len = res.headers.get('content-length');
  return len !== null && /^\d+$/.test(len) ? Number(len) : undefined;
}
