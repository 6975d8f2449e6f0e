// qlora-deno: QLoRA fine-tuning on the CPU from TypeScript. Named re-exports only.
export {
  type Compute,
  liveNf4Weights,
  type MatmulOptions,
  type Nf4Parts,
  nf4Tables,
  Nf4Weight,
} from "./ffi/nf4.ts";
export { type GemmOptions, matmulDyTX, matmulDyW, matmulXWt, sgemm, type StridedMatrix } from "./ffi/gemm.ts";
export { availableKernels, cpuFeatures, kernelName, setKernel, setThreads, threads } from "./ffi/runtime.ts";
export { KernelError } from "./ffi/errors.ts";
export { ShardedSafetensors } from "./lib/io/safetensors/sharded.ts";
export { SafetensorsReader } from "./lib/io/safetensors/reader.ts";
export { type TensorToWrite, writeSafetensors } from "./lib/io/safetensors/writer.ts";
export { type Bnb4bitLinear, findBnb4bitLinears, readBnb4bitLinear } from "./lib/io/bnb4bit.ts";
export { GgufFile } from "./lib/io/gguf/file.ts";
export { GgufHfView } from "./lib/io/gguf/hf_view.ts";
export { defaultModelPath } from "./lib/io/default_model.ts";
export { FormatError } from "./lib/errors.ts";
export {
  blockModules,
  configFromGguf,
  LINEAR_MODULES,
  type LinearModule,
  loadModelConfig,
  type ModelConfig,
  modulePath,
  parseModelConfig,
  SUPPORTED_ARCHITECTURES,
} from "./lib/nn/config.ts";
export { Tokenizer } from "./lib/text/tokenizer.ts";
export { loadGgufTokenizer } from "./lib/text/gguf_tokenizer.ts";
export { type ChatMessage, ChatTemplate } from "./lib/text/chat_template.ts";
export { buildModel, type LoadedModel, loadModel, type LoadOptions } from "./lib/pretrained/load_model.ts";
export { type CausalLm, LlamaModel } from "./lib/nn/llama.ts";
export { KvCache } from "./lib/nn/kv_cache.ts";
export { DenseLinear, type Linear } from "./lib/nn/linear.ts";
export { Bf16Matrix } from "./ffi/bf16.ts";
export {
  type AsyncGenerateOptions,
  defaultStopTokens,
  generate,
  generateAsync,
  type GenerateOptions,
  type Generation,
} from "./lib/generate/generate.ts";
export { ChatSession, type ChatSessionOptions } from "./lib/generate/chat_session.ts";
export { resolveModel } from "./lib/io/resolve_model.ts";
export { describeSplit, loadDataset } from "./lib/data/dataset.ts";
export { BatchStream } from "./lib/data/batch.ts";
export { exactMatch } from "./lib/data/metrics.ts";
export { exactMatchFits } from "./lib/data/metric_choice.ts";
export { readRecords } from "./lib/data/formats.ts";
export { Rng } from "./lib/random.ts";
export { LoraLinear } from "./lib/lora/linear.ts";
export { type LoraConfig, LoraModel, type LoraWeights } from "./lib/lora/model.ts";
export { train, type TrainableModel, Trainer } from "./lib/train/trainer.ts";
export { AdamW } from "./lib/train/optimizer.ts";
export { type TrainingArgs, TrainingArgsSchema } from "./lib/train/args.ts";
export { findBestCheckpoint, findLatestCheckpoint, saveParameters } from "./lib/train/checkpoint.ts";
export { sampleGenerations, samplePrompts } from "./lib/train/sample_generations.ts";
export { readPeftAdapter } from "./lib/io/peft/read.ts";
export { writePeftAdapter } from "./lib/io/peft/write.ts";
export { writeGgufLora } from "./lib/io/peft/gguf_lora.ts";
export { trainable } from "./lib/train/trainable.ts";
export { DistributedGradients, joinMpiJob } from "./lib/train/distributed.ts";
export { orderedBatches, padTokenId } from "./lib/data/batch.ts";
export { createAdapterConfig } from "./lib/io/peft/config.ts";
export { exportMergedModel } from "./lib/pretrained/export_merged.ts";
export { exportGguf } from "./lib/pretrained/export_gguf.ts";
export { modelfileText } from "./lib/pretrained/export/modelfile.ts";
export { writeMlxAdapter } from "./lib/io/mlx_adapter.ts";
export { ggmlQuantize } from "./ffi/ggml.ts";
export { loadAdapterInto } from "./lib/lora/load_weights.ts";
