// 'rwkv-ts/server' (Node only): the OpenAI-compatible HTTP server of `rwkv serve`, to embed in a program —
// `const server = await RwkvServer.create({ model: Rwkv.load(file) }); const url = await server.listen(8000)`.
export { RwkvServer, type ServerOptions } from './server/app.js';
export { ApiError, type ApiErrorBody, type ApiErrorType } from './server/api-error.js';
export { MemoryStateStore, DirectoryStateStore, RedisStateStore, type StateStore } from './server/state-store.js';
export { CHAT_TEMPLATES, renderChat, chatTurn, parseChatTemplate, type ChatTemplate, type ChatMessage, type ChatRole } from './generation/chat-template.js';
