/** Tiny fixture models and a fixed two-row batch for the training tests. */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { IGNORE_INDEX } from "../../ffi/ops.ts";
import type { Batch } from "../../lib/data/batch.ts";
import { loadModelConfig } from "../../lib/nn/config.ts";
import type { LlamaModel } from "../../lib/nn/llama.ts";
import { buildModel, type Quantization } from "../../lib/pretrained/load_model.ts";
import { SafetensorsSource } from "../../lib/pretrained/weight_source.ts";

export const MODELS = fileURLToPath(new URL("../fixtures/model/", import.meta.url));

/** The tiny random checkpoints of tests/fixtures/model/ (make_model_fixtures.py, make_family_fixtures.py). */
export type TinyModelName = "tiny_llama" | "tiny_qwen2" | "tiny_qwen3" | "tiny_phi3" | "tiny_gemma3";

export async function tinyModel(
  name: TinyModelName,
  quantize: Quantization,
): Promise<LlamaModel> {
  const dir = join(MODELS, name);
  const config = await loadModelConfig(join(dir, "config.json"));
  using source = SafetensorsSource.open(dir);
  return buildModel(source, config, { quantize });
}

/**
 * A batch from token sequences (unpacked, right-padded with `pad`): inputs = ids[:-1], targets = ids[1:],
 * except the first `masked[r]` targets of row r, which take no loss (a prompt).
 */
export function batchOf(seqs: number[][], masked: number[] = [], pad = 0): Batch {
  const T = Math.max(...seqs.map((s) => s.length - 1));
  const B = seqs.length;
  const inputs = new Uint32Array(B * T).fill(pad);
  const targets = new Int32Array(B * T).fill(IGNORE_INDEX);
  const positions = new Uint32Array(B * T);
  let [tokens, lossTokens] = [0, 0];
  for (const [r, ids] of seqs.entries()) {
    for (let t = 0; t < T; t++) positions[r * T + t] = t;
    for (let t = 0; t + 1 < ids.length; t++) {
      inputs[r * T + t] = ids[t];
      tokens++;
      if (t >= (masked[r] ?? 0)) {
        targets[r * T + t] = ids[t + 1];
        lossTokens++;
      }
    }
  }
  return {
    rows: B,
    width: T,
    inputs,
    targets,
    positions,
    segmentStarts: seqs.map(() => [0]),
    tokens,
    lossTokens,
    examples: B,
  };
}
