/**
 * An Ollama Modelfile for an exported GGUF (`ollama create NAME -f Modelfile`): `FROM` the file, a
 * `TEMPLATE` in Ollama's Go-template syntax when the model's chat template is a family we recognise
 * (ChatML: SmolLM2, Qwen2; Llama 3), `PARAMETER stop` for its end-of-turn markers, and `SYSTEM` — the one
 * given, else the default system prompt the chat template itself inserts (SmolLM2 has one), so the model
 * sees the prompt it was fine-tuned with.
 */

export type ChatFamily = "chatml" | "llama3";

const TEMPLATES: Record<ChatFamily, { template: string; stops: string[] }> = {
  chatml: {
    template: "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}" +
      "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}" +
      "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n",
    stops: ["<|im_start|>", "<|im_end|>"],
  },
  llama3: {
    template:
      "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}" +
      "{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}" +
      "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>",
    stops: ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
  },
};

/** The family of a Jinja chat template, from the markers it writes. */
export function chatFamily(chatTemplate: string | null): ChatFamily | undefined {
  if (chatTemplate === null) return undefined;
  if (chatTemplate.includes("<|im_start|>")) return "chatml";
  if (chatTemplate.includes("<|start_header_id|>")) return "llama3";
  return undefined;
}

/** The system prompt a ChatML template inserts when the conversation has none (e.g. SmolLM2's). */
export function defaultSystemPrompt(chatTemplate: string | null): string | undefined {
  // The newline after "system" is a real one in some files and a Jinja "\\n" escape in others.
  const m = chatTemplate?.match(/<\|im_start\|>system(?:\\n|\n)(.+?)<\|im_end\|>/s);
  return m?.[1];
}

export interface ModelfileOptions {
  /** The GGUF file as `FROM` names it, relative to the Modelfile (e.g. "./model.gguf"). */
  from: string;
  chatTemplate: string | null;
  /** End-of-sequence token texts, added as stops. */
  stopTokens?: readonly string[];
  system?: string;
}

export function modelfileText(opts: ModelfileOptions): { text: string; family: ChatFamily | undefined } {
  const family = chatFamily(opts.chatTemplate);
  const lines = [`FROM ${opts.from}`];
  const stops = new Set<string>();
  if (family !== undefined) {
    lines.push(`TEMPLATE """${TEMPLATES[family].template}"""`);
    for (const s of TEMPLATES[family].stops) stops.add(s);
  }
  for (const s of opts.stopTokens ?? []) stops.add(s);
  for (const s of stops) lines.push(`PARAMETER stop ${JSON.stringify(s)}`);
  const system = opts.system ?? defaultSystemPrompt(opts.chatTemplate);
  if (system !== undefined) lines.push(`SYSTEM """${system.replaceAll('"""', '\\"\\"\\"')}"""`);
  return { text: lines.join("\n") + "\n", family };
}
