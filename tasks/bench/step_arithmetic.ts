/**
 * How many FLOPs a QLoRA training step must do per token, from the model's shape: the ceiling any trainer's
 * tok/s has at a given FMA peak. The bench prints it beside the measured rates, so a speed-up target can be
 * checked against what the CPU can do at all.
 */

/** FLOPs per token of one plain training step (forward, then backward to every LoRA factor). */
export interface StepArithmetic {
  /** The frozen block linears: forward and backward to their input (no weight gradient). */
  linears: number;
  /** The LM head: logits and the gradient of the last hidden state (every token with a target). */
  head: number;
  /** The adapters: x·Aᵀ, ·Bᵀ forward; dY·B, ·A, dA, dB backward. */
  lora: number;
  /** Causal attention: Q·Kᵀ and P·V forward, four products of the same size backward. */
  attention: number;
  total: number;
}

/** Reads a positive whole number from an HF config, or says which key is wrong. */
function dim(cfg: Record<string, unknown>, key: string): number {
  const v = cfg[key];
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
    throw new RangeError(
      `step arithmetic: config.${key} should be a positive integer, found ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/**
 * The arithmetic of a step on `seq` tokens of one sequence, every token with a target, LoRA of `rank` on all
 * seven block linears of a Llama-family model (HF config keys). Norms, RoPE, SwiGLU, softmax and the
 * optimizer are left out: they are a few FLOPs per value, not per weight.
 */
export function stepArithmetic(cfg: Record<string, unknown>, seq: number, rank: number): StepArithmetic {
  const [h, inter, layers] = [
    dim(cfg, "hidden_size"),
    dim(cfg, "intermediate_size"),
    dim(cfg, "num_hidden_layers"),
  ];
  const heads = dim(cfg, "num_attention_heads");
  const kvHeads = cfg.num_key_value_heads === undefined ? heads : dim(cfg, "num_key_value_heads");
  const headDim = cfg.head_dim === undefined ? h / heads : dim(cfg, "head_dim");
  const vocab = dim(cfg, "vocab_size");
  const [q, kv] = [heads * headDim, kvHeads * headDim];
  // [in, out] of q, k, v, o, gate, up, down.
  const shapes: [number, number][] = [[h, q], [h, kv], [h, kv], [q, h], [h, inter], [h, inter], [inter, h]];
  const weights = shapes.reduce((a, [i, o]) => a + i * o, 0);
  const sides = shapes.reduce((a, [i, o]) => a + i + o, 0);
  // Each product is 2 FLOPs a multiply-add; forward + backward to the input is two products of the weight.
  const linears = layers * 2 * 2 * weights;
  const head = 2 * 2 * vocab * h;
  // Six rank-r products per linear, 2r FLOPs per value of `in` or `out`: x·Aᵀ, dX's dxa·A and dA over the
  // input side; ·Bᵀ, dxa = dY·B and dB over the output side.
  const lora = layers * 3 * 2 * rank * sides;
  // Token i attends to i + 1 positions: (seq + 1) / 2 on average, for Q·Kᵀ and P·V; backward does twice that.
  const attention = layers * 3 * 2 * 2 * q * ((seq + 1) / 2);
  return { linears, head, lora, attention, total: linears + head + lora + attention };
}

/**
 * One line for the bench: the step's FLOPs a token and the most tok/s an f32 step can reach at `peakGflops`
 * (every FLOP an FMA lane at the peak rate), against each measured rate.
 */
export function arithmeticCeiling(
  a: StepArithmetic,
  peakGflops: number,
  measured: [string, number][],
): string {
  const m = (x: number) => (x / 1e6).toFixed(0);
  const ceiling = peakGflops * 1e9 / a.total;
  const shares = measured.map(([name, tps]) =>
    `${name} runs at ${(100 * tps / ceiling).toFixed(0)} % of it (the ceiling is ${
      (ceiling / tps).toFixed(2)
    }× its rate)`
  );
  return `Arithmetic of this step: ${m(a.total)} MFLOP a token (block linears ${m(a.linears)}, LM head ` +
    `${m(a.head)}, LoRA ${m(a.lora)}, attention ${
      m(a.attention)
    }). At the FMA peak measured around the runs ` +
    `(${peakGflops.toFixed(0)} GFLOP/s) an f32 step cannot pass ${ceiling.toFixed(0)} tok/s: ${
      shares.join("; ")
    }.`;
}
