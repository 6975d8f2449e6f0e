/**
 * The requests we accept, as zod schemas: the parts of OpenAI's chat and text completion APIs that a local
 * single-sequence CPU server can honour. Fields we do not support are refused by name (a client relying on
 * them should know) unless they carry their neutral value (`n: 1`, `presence_penalty: 0`, …).
 */
import { z } from "zod";
import { ApiError } from "./errors.ts";

const number = (min: number, max: number) =>
  z.number({ error: `must be a number from ${min} to ${max}` }).min(min, { error: `must be ≥ ${min}` })
    .max(max, { error: `must be ≤ ${max}` });
const positiveInt = z.number({ error: "must be an integer ≥ 1" }).int({ error: "must be an integer ≥ 1" })
  .min(1, { error: "must be an integer ≥ 1" });
const only = <T extends number | boolean>(value: T, what: string) =>
  z.literal(value, { error: `only ${JSON.stringify(value)} is supported (${what})` }).nullish();

/** Options of both endpoints. */
const common = {
  model: z.string({ error: "must be a string naming a model (see GET /v1/models)" }),
  max_tokens: positiveInt.nullish(),
  temperature: number(0, 2).nullish(),
  top_p: number(0, 1).nullish(),
  /** Not OpenAI's, but common among local servers. */
  top_k: z.number({ error: "must be an integer ≥ 0" }).int({ error: "must be an integer ≥ 0" })
    .min(0, { error: "must be an integer ≥ 0" }).nullish(),
  seed: z.number({ error: "must be an integer" }).int({ error: "must be an integer" }).nullish(),
  stop: z.union([
    z.string(),
    z.array(z.string()).max(4, { error: "at most 4 stop sequences" }),
  ], { error: "must be a string or a list of up to 4 strings" }).nullish(),
  stream: z.boolean({ error: "must be true or false" }).nullish(),
  stream_options: z.object({ include_usage: z.boolean({ error: "must be true or false" }).nullish() }, {
    error: 'must be an object like {"include_usage": true}',
  }).nullish(),
  n: only(1, "one choice per request"),
  presence_penalty: only(0, "no penalties"),
  frequency_penalty: only(0, "no penalties"),
  logit_bias: z.record(z.string(), z.number()).refine((bias) => Object.keys(bias).length === 0, {
    error: "logit biases are not supported",
  }).nullish(),
  user: z.string({ error: "must be a string" }).nullish(),
};

const textPart = z.object({
  type: z.literal("text", { error: 'only "text" content parts are supported' }),
  text: z.string({ error: "must be a string" }),
});

const message = z.object({
  role: z.enum(["system", "developer", "user", "assistant"], {
    error: 'must be "system", "developer", "user" or "assistant"',
  }),
  content: z.union([z.string(), z.array(textPart)], {
    error: "must be a string or a list of text parts",
  }),
  name: z.string({ error: "must be a string" }).optional(),
});

export const chatCompletionRequest = z.strictObject({
  ...common,
  messages: z.array(message, { error: "must be a list of messages" }).min(1, {
    error: "must hold at least one message",
  }),
  max_completion_tokens: positiveInt.nullish(),
  logprobs: only(false, "no log probabilities"),
});
export type ChatCompletionRequest = z.infer<typeof chatCompletionRequest>;

export const completionRequest = z.strictObject({
  ...common,
  prompt: z.union([
    z.string(),
    z.array(z.string()).length(1, { error: "one prompt per request" }),
    z.array(z.number().int().min(0)).min(1, { error: "must not be empty" }),
  ], { error: "must be a string (or a list of token ids)" }),
  echo: only(false, "the prompt is not echoed"),
  suffix: z.null({ error: "suffixes are not supported" }).optional(),
  best_of: only(1, "one candidate per request"),
  logprobs: z.null({ error: "log probabilities are not supported" }).optional(),
});
export type CompletionRequest = z.infer<typeof completionRequest>;

/** Validates a parsed JSON body; the first problem becomes a 400 naming the field. */
export function parseRequest<T>(schema: z.ZodType<T>, body: unknown): T {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new ApiError(400, "the request body must be a JSON object");
  }
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  if (issue.code === "unrecognized_keys") {
    const keys = issue.keys.join(", ");
    throw new ApiError(
      400,
      `unrecognized or unsupported request argument(s): ${keys}`,
      undefined,
      issue.keys[0],
    );
  }
  const param = fieldName(issue.path);
  const missing = issue.code === "invalid_type" && issue.input === undefined;
  throw new ApiError(400, `${param}: ${missing ? "is required" : issue.message}`, undefined, param);
}

/** `["messages", 0, "content"]` → `messages[0].content`. */
function fieldName(path: readonly PropertyKey[]): string {
  return path.map((key, i) => typeof key === "number" ? `[${key}]` : `${i > 0 ? "." : ""}${String(key)}`)
    .join("");
}
