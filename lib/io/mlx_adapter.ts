/**
 * Writes a LoRA adapter in mlx-lm's format (`mlx_lm.generate --adapter-path DIR`, `mlx_lm.fuse`):
 * `adapters.safetensors` + `adapter_config.json`.
 *
 * mlx-lm's `LoRALinear` computes `y = W·x + scale · (x @ lora_a) @ lora_b` with `lora_a` `[in, r]` and
 * `lora_b` `[r, out]`: the transposes of PEFT's A `[r, in]` and B `[out, r]`, and `scale` is PEFT's
 * alpha / r (not alpha). Keys are the module paths plus `.lora_a` / `.lora_b`
 * (`model.layers.0.self_attn.q_proj.lora_a`). The config has one rank, one scale and the module keys
 * relative to a layer (`self_attn.q_proj`), applied to the last `num_layers` layers — so the adapter must
 * adapt the same modules in a run of layers that ends at the last one, with one rank; a module whose scale
 * differs (rank_pattern / alpha_pattern, rsLoRA) gets the ratio folded into its `lora_b`.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { ModelConfig } from "../nn/config.ts";
import type { LoraWeights } from "../lora/weights.ts";
import type { AdapterConfig } from "./peft/config.ts";
import { writeSafetensors } from "./safetensors/writer.ts";

export interface MlxAdapterOptions {
  model: ModelConfig;
  config: AdapterConfig;
  /** Keyed by HF module path, as `readPeftAdapter` returns them. */
  layers: ReadonlyMap<string, LoraWeights>;
  /** Replace a non-empty `dir` (default false: refuse). */
  overwrite?: boolean;
}

const MODULE = /^model\.layers\.(\d+)\.(self_attn\.[a-z_]+|mlp\.[a-z_]+)$/;
const SAME_SCALE = 1e-9;

export function writeMlxAdapter(dir: string, opts: MlxAdapterOptions): { files: string[]; scale: number } {
  const { model, config, layers } = opts;
  if (existsSync(dir) && readdirSync(dir).length > 0 && !opts.overwrite) {
    throw new Error(`${dir} is not empty; refusing to overwrite it (--overwrite replaces it)`);
  }
  const byLayer = new Map<number, Set<string>>();
  let rank: number | undefined;
  let scale: number | undefined;
  for (const [module, w] of layers) {
    const m = MODULE.exec(module);
    if (m === null) throw new Error(`mlx export: ${module} is not a decoder-layer module`);
    const l = Number(m[1]);
    if (!byLayer.has(l)) byLayer.set(l, new Set());
    byLayer.get(l)!.add(m[2]);
    rank ??= w.r;
    scale ??= w.scale;
    if (w.r !== rank) {
      throw new Error(
        `mlx export: mlx-lm has one rank per adapter; ${module} has r=${w.r}, others r=${rank}`,
      );
    }
  }
  if (rank === undefined || scale === undefined) {
    throw new Error("mlx export: the adapter has no LoRA weights");
  }
  const adapted = [...byLayer.keys()].sort((a, b) => a - b);
  const numLayers = adapted.length;
  const first = model.numHiddenLayers - numLayers;
  const keys = [...byLayer.get(adapted[0])!].sort();
  adapted.forEach((l, i) => {
    const same = [...byLayer.get(l)!].sort().join() === keys.join();
    if (l !== first + i || !same) {
      throw new Error(
        `mlx export: mlx-lm adapts the same modules in the last num_layers layers; this adapter covers ` +
          `layers [${adapted.join(", ")}] of ${model.numHiddenLayers} with ${
            same ? "" : "differing "
          }modules`,
      );
    }
  });

  const tensors = [];
  for (const [module, w] of layers) {
    const [out, inDim] = [w.B.length / w.r, w.A.length / w.r];
    const factor = w.scale / scale;
    tensors.push({
      name: `${module}.lora_a`,
      dtype: "F32" as const,
      shape: [inDim, w.r],
      data: transpose(w.A, w.r, inDim),
    });
    const b = transpose(w.B, out, w.r);
    if (Math.abs(factor - 1) > SAME_SCALE) { for (let i = 0; i < b.length; i++) b[i] *= factor; }
    tensors.push({ name: `${module}.lora_b`, dtype: "F32" as const, shape: [w.r, out], data: b });
  }
  const adapterConfig = {
    fine_tune_type: "lora",
    num_layers: numLayers,
    lora_parameters: { rank, scale, dropout: config.loraDropout, keys },
    ...(config.baseModelNameOrPath ? { model: config.baseModelNameOrPath } : {}),
  };

  const tmp = `${dir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    writeSafetensors(join(tmp, "adapters.safetensors"), tensors);
    writeFileSync(join(tmp, "adapter_config.json"), JSON.stringify(adapterConfig, null, 2) + "\n");
    mkdirSync(dirname(dir), { recursive: true });
    if (existsSync(dir)) {
      const old = `${dir}.old`;
      rmSync(old, { recursive: true, force: true });
      renameSync(dir, old);
      renameSync(tmp, dir);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmp, dir);
    }
  } catch (error) {
    rmSync(tmp, { recursive: true, force: true });
    throw error;
  }
  return { files: ["adapters.safetensors", "adapter_config.json"], scale };
}

/** `[rows, cols]` → `[cols, rows]`. */
function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c];
  return t;
}
