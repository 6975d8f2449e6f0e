/** Server-sent events as OpenAI streams them: one `data: <json>` event per chunk, then `data: [DONE]`. */
const utf8 = new TextEncoder();

export function sseEvent(data: unknown): Uint8Array {
  return utf8.encode(`data: ${JSON.stringify(data)}\n\n`);
}

export const SSE_DONE: Uint8Array = utf8.encode("data: [DONE]\n\n");

export const SSE_HEADERS: Record<string, string> = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  "connection": "keep-alive",
};
