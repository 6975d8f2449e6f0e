/**
 * Global gradient-norm clipping, as torch.nn.utils.clip_grad_norm_: the norm is taken over all gradients
 * together (√ of the summed squares, accumulated in f64 by the kernel), and when it exceeds `maxNorm`
 * every gradient is scaled by `maxNorm / (norm + 1e-6)`.
 */
import { scaleInPlace, sumSquares } from "../../ffi/ops.ts";
import type { Parameter } from "./optimizer.ts";

/** torch's guard against dividing by a zero norm. */
const NORM_EPS = 1e-6;

/** √(Σ over all parameters of Σ grad²). */
export function gradNorm(params: readonly Parameter[]): number {
  let sum = 0;
  for (const p of params) sum += sumSquares(p.grad);
  return Math.sqrt(sum);
}

/** The factor clipping applies to gradients of norm `norm` (1 when no clipping is needed or maxNorm is 0). */
export function clipFactor(norm: number, maxNorm: number): number {
  if (!(maxNorm > 0)) return 1;
  return Math.min(1, maxNorm / (norm + NORM_EPS));
}

/** `grad *= c` for every parameter (skipped when c is 1). */
export function scaleGrads(params: readonly Parameter[], c: number): void {
  if (c === 1) return;
  for (const p of params) scaleInPlace(p.grad, c);
}

/** Clips all gradients to a global norm of at most `maxNorm` (0 = no clipping); returns the norm before. */
export function clipGradNorm(params: readonly Parameter[], maxNorm: number): number {
  const norm = gradNorm(params);
  if (Number.isFinite(norm)) scaleGrads(params, clipFactor(norm, maxNorm));
  return norm;
}
