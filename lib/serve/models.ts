/**
 * The models a server offers under the names clients put in `model`: the base model, and LoRA adapters on
 * it by name. Each adapter shares the base's frozen NF4 weights (nothing is merged or copied), so one base
 * serves many adapters; an adapter's weights are read on first use, its config checked at start-up.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { FormatError } from "../errors.ts";
import { parseAdapterConfigText } from "../io/peft/config.ts";
import { ADAPTER_CONFIG_FILE, readPeftAdapter } from "../io/peft/read.ts";
import { resolveTargets } from "../io/peft/targets.ts";
import { LoraModel } from "../lora/model.ts";
import type { ModelConfig } from "../nn/config.ts";
import type { CausalLm, LlamaModel } from "../nn/llama.ts";
import { ApiError } from "./errors.ts";

/** What the request handler needs: names to list and a model for each. */
export interface ModelLookup {
  ids(): string[];
  /** The model named `id`; an ApiError 404 for a name it does not have. */
  get(id: string): CausalLm;
}

export interface NamedAdapter {
  name: string;
  /** A PEFT adapter directory (adapter_config.json + adapter_model.safetensors). */
  dir: string;
}

export class ModelRegistry implements ModelLookup {
  readonly #adapters = new Map<string, { dir: string; model?: LoraModel }>();

  constructor(
    readonly base: LlamaModel,
    readonly config: ModelConfig,
    readonly baseId = "base",
    adapters: readonly NamedAdapter[] = [],
  ) {
    for (const { name, dir } of adapters) {
      if (name === baseId || this.#adapters.has(name)) {
        throw new RangeError(`two models are named "${name}": give each adapter its own name (name=dir)`);
      }
      const configPath = join(dir, ADAPTER_CONFIG_FILE);
      let text: string;
      try {
        text = readFileSync(configPath, "utf8");
      } catch (error) {
        throw new FormatError(configPath, `cannot read the adapter config (${(error as Error).message})`);
      }
      resolveTargets(config, parseAdapterConfigText(text, configPath), configPath);
      this.#adapters.set(name, { dir });
    }
  }

  ids(): string[] {
    return [this.baseId, ...this.#adapters.keys()];
  }

  get(id: string): CausalLm {
    if (id === this.baseId) return this.base;
    const entry = this.#adapters.get(id);
    if (entry === undefined) {
      throw new ApiError(
        404,
        `the model "${id}" does not exist; this server has ${this.ids().map((m) => `"${m}"`).join(", ")}`,
        "invalid_request_error",
        "model",
        "model_not_found",
      );
    }
    entry.model ??= LoraModel.fromWeights(this.base, readPeftAdapter(entry.dir, this.config).layers);
    return entry.model;
  }
}
