/**
 * Which files of a hub repo a fine-tune needs: the config, the tokenizer files and the safetensors weights.
 * Repos often carry the same weights several times (pytorch_model*.bin, consolidated.*.pth, onnx/, *.gguf);
 * those are never downloaded, and a repo with only pickled weights is refused with a reason.
 */
import { CONFIG_FILE, SINGLE_WEIGHTS_FILE, WEIGHTS_INDEX_FILE } from "./cache.ts";
import { HubError } from "./error.ts";

/** Small files fetched when the repo has them; only config.json is required. */
export const OPTIONAL_FILES = [
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
] as const;

export interface DownloadPlan {
  /** Small files, in download order (fetched before the weights, so complete weights imply them). */
  files: string[];
  /** The weights: one file, or an index whose shards are known once it is read. */
  weights: { kind: "single"; file: string } | { kind: "sharded"; index: string };
  /** Things the user should know but that do not stop the download. */
  warnings: string[];
}

/** The files to fetch from a repo holding `names` (top-level and nested paths, as the hub lists them). */
export function planDownload(repo: string, names: readonly string[]): DownloadPlan {
  const present = new Set(names);
  if (!present.has(CONFIG_FILE)) {
    throw new HubError(
      `${repo} has no ${CONFIG_FILE}, so it is not a transformers model repo.${hint(names)}`,
    );
  }
  const files = [CONFIG_FILE, ...OPTIONAL_FILES.filter((name) => present.has(name))];
  const warnings = present.has("tokenizer.json")
    ? []
    : [`${repo} has no tokenizer.json; the tokenizer cannot be loaded from this repo.`];
  if (present.has(WEIGHTS_INDEX_FILE)) {
    return { files, weights: { kind: "sharded", index: WEIGHTS_INDEX_FILE }, warnings };
  }
  if (present.has(SINGLE_WEIGHTS_FILE)) {
    return { files, weights: { kind: "single", file: SINGLE_WEIGHTS_FILE }, warnings };
  }
  throw new HubError(`${repo} has no ${SINGLE_WEIGHTS_FILE} or ${WEIGHTS_INDEX_FILE}.${hint(names)}`);
}

/** Checks that every shard an index names is a file of the repo. */
export function checkShards(repo: string, shards: readonly string[], names: readonly string[]): void {
  const present = new Set(names);
  const missing = shards.filter((shard) => !present.has(shard));
  if (missing.length > 0) {
    throw new HubError(
      `${repo}: ${WEIGHTS_INDEX_FILE} names shard${missing.length > 1 ? "s" : ""} ${missing.join(", ")}, ` +
        `which the repo does not have.`,
    );
  }
}

/** Explains what the repo holds instead, and what to do about it. */
function hint(names: readonly string[]): string {
  const top = names.filter((name) => !name.includes("/"));
  const pickled = top.filter((name) =>
    /\.(bin|pth|pt|ckpt)$/.test(name) && !name.startsWith("training_args")
  );
  const gguf = names.filter((name) => name.endsWith(".gguf"));
  const safetensors = top.filter((name) => name.endsWith(".safetensors"));
  if (top.includes("adapter_config.json")) {
    return " It is a PEFT adapter (adapter_config.json), not a base model: pass its base model instead.";
  }
  if (safetensors.length > 0) {
    return ` Its safetensors files (${list(safetensors)}) are not a transformers model layout.`;
  }
  if (pickled.length > 0) {
    return ` Only PyTorch pickle weights were found (${list(pickled)}), which qlora-deno does not load: ` +
      `use a repo (or revision) with safetensors weights.`;
  }
  if (gguf.length > 0) {
    return ` It holds GGUF files (${list(gguf)}): download one and pass its path to --model.`;
  }
  return top.length > 0 ? ` It holds: ${list(top)}.` : " It holds no files.";
}

function list(names: readonly string[]): string {
  return names.length <= 5
    ? names.join(", ")
    : `${names.slice(0, 5).join(", ")} and ${names.length - 5} more`;
}
