/**
 * AdamW over a list of named f32 parameters (torch.optim.AdamW semantics, decoupled weight decay): one
 * first-moment `m` and second-moment `v` buffer per parameter, and the step count for bias correction.
 * The update itself is one Rust kernel call per parameter (`adamwStep`). The state exports as plain
 * arrays, so a checkpoint restores it exactly and a resumed run continues bit for bit.
 */
import { adamwStep } from "../../ffi/ops.ts";

/** A trainable tensor: its PEFT name, values and gradient (same length, f32). */
export interface Parameter {
  name: string;
  data: Float32Array;
  grad: Float32Array;
}

export interface AdamWOptions {
  /** Exponential decay of the first moment (default 0.9). */
  beta1?: number;
  /** Exponential decay of the second moment (default 0.999). */
  beta2?: number;
  /** Added to √v (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay: p ← p·(1 − lr·wd) each step (default 0). */
  weightDecay?: number;
}

/** Everything AdamW carries between steps. */
export interface OptimizerState {
  /** Updates done so far (the next one uses step + 1 for bias correction). */
  step: number;
  /** Per parameter, by name, in parameter order. */
  moments: { name: string; m: Float32Array; v: Float32Array }[];
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** Updates done so far. */
  stepCount = 0;
  readonly #m: Float32Array[];
  readonly #v: Float32Array[];

  constructor(readonly params: readonly Parameter[], opts: AdamWOptions = {}) {
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0;
    const seen = new Set<string>();
    for (const p of params) {
      if (seen.has(p.name)) throw new RangeError(`AdamW: parameter "${p.name}" is listed twice`);
      seen.add(p.name);
      if (p.grad.length !== p.data.length) {
        throw new RangeError(
          `AdamW: parameter "${p.name}" has ${p.data.length} values but a gradient of ${p.grad.length}`,
        );
      }
    }
    this.#m = params.map((p) => new Float32Array(p.data.length));
    this.#v = params.map((p) => new Float32Array(p.data.length));
  }

  /** One update of every parameter from its current gradient, at learning rate `lr`. */
  step(lr: number): void {
    const t = this.stepCount + 1;
    const hp = { lr, beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.weightDecay };
    for (let i = 0; i < this.params.length; i++) {
      const p = this.params[i];
      adamwStep(p.data, p.grad, this.#m[i], this.#v[i], t, hp);
    }
    this.stepCount = t;
  }

  /**
   * The state: a copy, or with `{ view: true }` the live moments themselves (no copy: a 7B adapter's are
   * 336 MB), valid until the next `step` — for writing a checkpoint at once.
   */
  state({ view = false }: { view?: boolean } = {}): OptimizerState {
    const own = (a: Float32Array) => view ? a : a.slice();
    return {
      step: this.stepCount,
      moments: this.params.map((p, i) => ({ name: p.name, m: own(this.#m[i]), v: own(this.#v[i]) })),
    };
  }

  /** Restores a state exported by `state()`: same parameter names, in any order, with the same sizes. */
  loadState(state: OptimizerState): void {
    if (!Number.isInteger(state.step) || state.step < 0) {
      throw new RangeError(`AdamW.loadState: step must be an integer ≥ 0, got ${state.step}`);
    }
    const byName = new Map(state.moments.map((s) => [s.name, s]));
    const missing = this.params.filter((p) => !byName.has(p.name)).map((p) => p.name);
    const known = new Set(this.params.map((p) => p.name));
    const extra = state.moments.filter((s) => !known.has(s.name)).map((s) => s.name);
    if (missing.length > 0 || extra.length > 0) {
      throw new RangeError(
        `AdamW.loadState: the state does not match the parameters` +
          (missing.length > 0 ? `; missing ${list(missing)}` : "") +
          (extra.length > 0 ? `; unknown ${list(extra)}` : ""),
      );
    }
    this.params.forEach((p, i) => {
      const { m, v } = byName.get(p.name)!;
      if (m.length !== p.data.length || v.length !== p.data.length) {
        throw new RangeError(
          `AdamW.loadState: "${p.name}" has ${p.data.length} values, the state ${m.length} (m) and ${v.length} (v)`,
        );
      }
      this.#m[i].set(m);
      this.#v[i].set(v);
    });
    this.stepCount = state.step;
  }
}

function list(names: string[]): string {
  return names.slice(0, 3).map((n) => `"${n}"`).join(", ") +
    (names.length > 3 ? ` and ${names.length - 3} more` : "");
}
