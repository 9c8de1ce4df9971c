// The chat templates RWKV models were tuned on, in one place for `rwkv chat` and the server: every turn is
// "SPEAKER: text\n\n", and the model's answer (after "ASSISTANT:") ends at a blank line.
import { ArgumentError } from '../errors.js';

/** Who speaks in a chat template. */
export interface ChatTemplate {
  user: string;
  assistant: string;
  /** The system turn's speaker; undefined: the system text is a plain paragraph. */
  system: string | undefined;
}

/** World (and v5–v7) models, and Raven (RWKV-4 chat) models. */
export const CHAT_TEMPLATES: Readonly<Record<string, ChatTemplate>> = {
  world: { user: 'User', assistant: 'Assistant', system: 'System' },
  raven: { user: 'Bob', assistant: 'Alice', system: undefined },
};

export type ChatRole = 'system' | 'user' | 'assistant';

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

/** Checks a template given as JSON ({ user, assistant, system? }); `source` names it in errors. */
export function parseChatTemplate(parsed: unknown, source: string): ChatTemplate {
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ArgumentError(`${source}: expected a JSON object { "user", "assistant", "system" }`);
  }
  const t = parsed as Partial<Record<'user' | 'assistant' | 'system', unknown>>;
  const field = (k: 'user' | 'assistant' | 'system', required: boolean): string | undefined => {
    const v = t[k];
    if (v === undefined && !required) return undefined;
    if (typeof v !== 'string' || v === '' || v.includes('\n')) {
      throw new ArgumentError(`${source}: "${k}" must be a speaker's name (one line of text)${required ? '' : ' or absent'}`);
    }
    return v;
  };
  return { user: field('user', true)!, assistant: field('assistant', true)!, system: field('system', false) };
}

/** A turn's text: blank lines would end the turn early, so runs of newlines fold into one. */
export function foldTurnText(text: string): string {
  return text.replace(/\r\n/g, '\n').replace(/\n{2,}/g, '\n').trim();
}

/** One turn, "SPEAKER: text\n\n" (a system text without a system speaker is a plain paragraph). */
export function chatTurn(template: ChatTemplate, role: ChatRole, text: string): string {
  const folded = foldTurnText(text);
  if (role === 'system') return template.system !== undefined ? `${template.system}: ${folded}\n\n` : `${folded}\n\n`;
  return `${role === 'user' ? template.user : template.assistant}: ${folded}\n\n`;
}

/** The prompt of a conversation: every message as a turn, then the assistant's cue ("Assistant:"). */
export function renderChat(template: ChatTemplate, messages: readonly ChatMessage[]): string {
  return messages.map((m) => chatTurn(template, m.role, m.content)).join('') + `${template.assistant}:`;
}
