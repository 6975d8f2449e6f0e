/** What the chatting tasks share: the model (with a PEFT adapter if asked), its stop tokens and chat template. */
import { resolveModel } from "../lib/io/resolve_model.ts";
import { readPeftAdapter } from "../lib/io/peft/read.ts";
import { LoraModel } from "../lib/lora/model.ts";
import type { CausalLm } from "../lib/nn/llama.ts";
import { type LoadedModel, loadModel } from "../lib/pretrained/load_model.ts";
import { defaultStopTokens } from "../lib/generate/generate.ts";
import { ChatTemplate } from "../lib/text/chat_template.ts";
import { userCwd, userPath } from "./user_path.ts";

export interface GenerationSetup {
  loaded: LoadedModel;
  /** The base model, or the base with the adapter (sharing its weights). */
  model: CausalLm;
  stopTokens: number[];
  /** null when the tokenizer has none (a base model: raw text only). */
  template: ChatTemplate | null;
}

export async function loadForGeneration(
  opts: { model: string; adapter?: string; quantize?: boolean },
): Promise<GenerationSetup> {
  const resolved = await resolveModel(opts.model === "default" ? undefined : opts.model, { cwd: userCwd() });
  const loaded = await loadModel(resolved.kind === "gguf" ? resolved.path : resolved.dir, {
    quantize: opts.quantize === false ? "none" : "nf4",
  });
  const { tokenizer, config } = loaded;
  const model = opts.adapter === undefined
    ? loaded.model
    : LoraModel.fromWeights(loaded.model, readPeftAdapter(userPath(opts.adapter), config).layers);
  return {
    loaded,
    model,
    stopTokens: defaultStopTokens(tokenizer, config.eosTokenIds),
    template: tokenizer.chatTemplate === null ? null : ChatTemplate.fromTokenizer(tokenizer),
  };
}
