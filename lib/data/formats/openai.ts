/**
 * OpenAI chat messages, as fine-tuning files and the chat API write them:
 *
 * - `content` is a string, or a list of parts `[{type: "text", text}, …]` whose texts are joined (with no
 *   separator, as templates that iterate over parts render them). Other parts (images, audio) cannot be
 *   trained on by a text model and are refused, naming the message and part.
 * - An assistant message may carry `tool_calls` (`{id, type: "function", function: {name, arguments}}`;
 *   its content may then be null or missing); `tool` messages answer them (`content`, `tool_call_id`,
 *   `name`); the record may list the `tools` the model could call. These are handed to the chat template as
 *   they are, as transformers' `apply_chat_template(messages, tools=…)` does.
 * - `reasoning_content` (a thinking trace, read by e.g. Qwen3's template) and `weight` (OpenAI's per-message
 *   0/1 training switch) are accepted; `weight: 0` leaves that assistant turn untrained.
 */
import { z } from "zod";

export const ROLES = ["system", "developer", "user", "assistant", "tool"] as const;
export type ChatRole = typeof ROLES[number];

const textPart = z.object({ type: z.string(), text: z.string().optional() }).loose();

/** A string, or the text parts' texts joined; a non-text part is reported with its index. */
const content = z.union([z.string(), z.null(), z.array(textPart)], {
  error: 'expected a string or a list of {type: "text", text} parts',
}).transform((value, ctx) => {
  if (!Array.isArray(value)) return value;
  let text = "";
  for (const [i, part] of value.entries()) {
    if (part.type !== "text" || typeof part.text !== "string") {
      ctx.addIssue({
        code: "custom",
        path: [i],
        message: part.type === "text"
          ? `a text part needs a string "text"`
          : `only text parts can be trained on, found a "${part.type}" part`,
      });
      return z.NEVER;
    }
    text += part.text;
  }
  return text;
});

const toolCall = z.object({
  id: z.string().optional(),
  type: z.literal("function", { error: `expected "function"` }).optional(),
  function: z.object({
    name: z.string({ error: "expected the function's name (a string)" }).min(1, "must not be empty"),
    arguments: z.union([z.string(), z.record(z.string(), z.unknown())], {
      error: "expected a JSON string or an object",
    }),
  }, { error: "expected {name, arguments}" }).loose(),
}, { error: 'expected a tool call {type: "function", function: {name, arguments}}' }).loose();

export const messageSchema = z.strictObject({
  role: z.enum(ROLES, {
    error: (issue) => `expected one of ${ROLES.join(", ")}, found ${JSON.stringify(issue.input)}`,
  }),
  content: content.optional(),
  name: z.string().optional(),
  tool_calls: z.array(toolCall).min(1, "must hold at least one call").optional(),
  tool_call_id: z.string().optional(),
  reasoning_content: z.string().optional(),
  weight: z.union([z.literal(0), z.literal(1)], { error: "expected 0 or 1" }).optional(),
}).superRefine((m, ctx) => {
  const missing = m.content === undefined || m.content === null;
  if (missing && !(m.role === "assistant" && m.tool_calls)) {
    ctx.addIssue({
      code: "custom",
      path: ["content"],
      message: "expected a string (only an assistant message with tool_calls may omit it)",
    });
  }
  if (m.tool_calls && m.role !== "assistant") {
    ctx.addIssue({
      code: "custom",
      path: ["tool_calls"],
      message: "only assistant messages make tool calls",
    });
  }
});

/** The tools the model may call; some published sets store the list as JSON text, which is parsed. */
export const toolsSchema = z.preprocess(
  (v, ctx) => {
    if (typeof v !== "string") return v;
    try {
      return JSON.parse(v);
    } catch (error) {
      ctx.addIssue({ code: "custom", message: `not valid JSON (${(error as Error).message})` });
      return z.NEVER;
    }
  },
  z.array(
    z.object({}, { error: 'expected a tool object ({type: "function", function: {...}})' }).loose(),
    { error: "expected a list of tools" },
  ),
);

/** One turn as the chat template receives it (content always a string). */
export type ChatTurn = {
  role: ChatRole;
  content: string;
  name?: string;
  tool_calls?: z.output<typeof toolCall>[];
  tool_call_id?: string;
  reasoning_content?: string;
  /** 0: this assistant turn is not trained (OpenAI's per-message weight). */
  weight?: 0 | 1;
};

/** A parsed message → a template turn (null content becomes "": templates call string methods on it). */
export function toTurn(message: z.output<typeof messageSchema>): ChatTurn {
  const { content, role, ...rest } = message;
  // "developer" is the newer OpenAI name of the system role; chat templates know only "system".
  const turn: ChatTurn = { role: role === "developer" ? "system" : role, ...rest, content: content ?? "" };
  for (const key of Object.keys(turn) as (keyof ChatTurn)[]) if (turn[key] === undefined) delete turn[key];
  return turn;
}
