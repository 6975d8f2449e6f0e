/**
 * ShareGPT conversations (`{"conversations": [{"from": "human", "value": "…"}, …], "system"?, "tools"?}`),
 * the layout of many published chat sets, read as OpenAI messages: `from` names the role in one of the
 * spellings in use (human/user, gpt/assistant/model, system, tool/observation). Function-call turns of the
 * glaive variant carry their call as free text, which no chat template can place; they are refused.
 */
import { z } from "zod";
import type { ChatRole, ChatTurn } from "./openai.ts";

const ROLE_OF: Record<string, ChatRole> = {
  human: "user",
  user: "user",
  gpt: "assistant",
  assistant: "assistant",
  model: "assistant",
  chatgpt: "assistant",
  system: "system",
  tool: "tool",
  observation: "tool",
  function_response: "tool",
};

const turn = z.strictObject({
  from: z.string({ error: "expected a string" }).refine((from) => from in ROLE_OF, {
    error: (issue) =>
      issue.input === "function_call"
        ? `"function_call" turns are not supported: write the record as OpenAI messages with tool_calls`
        : `expected one of ${Object.keys(ROLE_OF).join(", ")}, found ${JSON.stringify(issue.input)}`,
  }),
  value: z.string({ error: "expected a string" }),
  weight: z.union([z.literal(0), z.literal(1)], { error: "expected 0 or 1" }).optional(),
});

export const conversationsSchema = z.array(turn).min(1, "must hold at least one turn");

/** The turns as chat messages, a record-level system prompt first. */
export function sharegptTurns(turns: z.output<typeof conversationsSchema>, system?: string): ChatTurn[] {
  const out: ChatTurn[] = system ? [{ role: "system", content: system }] : [];
  for (const t of turns) {
    const message: ChatTurn = { role: ROLE_OF[t.from], content: t.value };
    if (t.weight !== undefined) message.weight = t.weight;
    out.push(message);
  }
  return out;
}
