/**
 * The words of LoRA used across the project. An adapter on a frozen linear W `[out, in]` adds `s · B · A`:
 * A `[r, in]`, B `[out, r]`, scale s = alpha / r (alpha / √r with rsLoRA). Adapters are keyed by the HF module
 * path of the linear they adapt (`model.layers.0.self_attn.q_proj`, see `modulePath`), as PEFT keys them.
 */
import type { LinearModule } from "../nn/config.ts";

/** One adapter's matrices as plain f32 row-major arrays: what files hold and merges take. */
export interface LoraWeights {
  /** `[r, in]` */
  A: Float32Array;
  /** `[out, r]` */
  B: Float32Array;
  r: number;
  /** alpha / r (alpha / √r with rsLoRA). */
  scale: number;
}

/** What LoRA to put on a model (the trainer's options, PEFT's adapter_config). */
export interface LoraConfig {
  rank: number;
  alpha: number;
  /** Dropout on each adapter's input in training mode (default 0). */
  dropout?: number;
  /** alpha / √rank scaling (default false). */
  rslora?: boolean;
  /** Which block linears get an adapter (default all seven, PEFT's "all-linear"). */
  targetModules?: readonly LinearModule[];
  /** Which blocks get adapters (default all; PEFT's layers_to_transform). */
  layers?: readonly number[];
  /** Seed of the generator that initialises A and draws dropout masks (default 0). */
  seed?: number;
}

/** The scale an adapter of rank `r` gets from `alpha`. */
export function loraScale(alpha: number, r: number, rslora = false): number {
  return rslora ? alpha / Math.sqrt(r) : alpha / r;
}

/** Checks that `w` fits a linear `[out, in]`; `module` names it in the error. */
export function checkLoraShape(w: LoraWeights, out: number, inDim: number, module: string): void {
  if (!Number.isInteger(w.r) || w.r < 1 || w.A.length !== w.r * inDim || w.B.length !== out * w.r) {
    throw new RangeError(
      `${module}: LoRA A has ${w.A.length} and B ${w.B.length} values, expected ` +
        `[${w.r}, ${inDim}] and [${out}, ${w.r}]`,
    );
  }
}
