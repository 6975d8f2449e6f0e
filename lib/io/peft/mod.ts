/** LoRA adapters in PEFT's format (read, write) and as llama.cpp GGUF adapters (write). */
export {
  type AdapterConfig,
  adapterConfigJson,
  ALL_LINEAR,
  createAdapterConfig,
  parseAdapterConfig,
  parseAdapterConfigText,
} from "./config.ts";
export { isTargeted, linearModules, loraScale, type LoraTarget, rankOf, resolveTargets } from "./targets.ts";
export { type LoraWeights, type PeftAdapter, peftTensorName, readPeftAdapter } from "./read.ts";
export { writePeftAdapter, type WritePeftOptions } from "./write.ts";
export { type GgufLoraOptions, writeGgufLora } from "./gguf_lora.ts";
