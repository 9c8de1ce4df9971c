// A chat template named on a command line (Node only: it may be a JSON file): `rwkv chat --template`,
// `rwkv serve --template`, `rwkv train --chat-template`.
import * as fs from 'node:fs';
import { ArgumentError } from '../errors.js';
import { CHAT_TEMPLATES, parseChatTemplate, type ChatTemplate } from './chat-template.js';

/** A known name ('world', 'raven') or a JSON file naming the speakers; `flag` names the option in errors. */
export async function resolveTemplate(spec: string | undefined, flag = '--template'): Promise<ChatTemplate> {
  const name = spec ?? 'world';
  const known = CHAT_TEMPLATES[name];
  if (known !== undefined) return known;
  if (!/[./\\]/.test(name)) {
    throw new ArgumentError(`${flag} must be ${Object.keys(CHAT_TEMPLATES).join(', ')} or a JSON file, got '${name}'`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(await fs.promises.readFile(name, 'utf8'));
  } catch (e) {
    throw new ArgumentError(`${flag} ${name}: cannot read it as JSON (${e instanceof Error ? e.message.split('\n')[0] : String(e)})`);
  }
  return parseChatTemplate(parsed, `${flag} ${name}`);
}
