/**
 * Attention section of `deno task bench`: causal GQA forward and backward on model shapes, in GFLOP/s of
 * useful work, against our dense f32 GEMM doing about as many FLOPs in the same run.
 *
 * Useful FLOPs count only the visible (causal) query–key pairs: forward 4·hd per pair and head (scores,
 * weighted sum of values), backward 10·hd (scores and dp recomputed, dv, dk, dq), as FlashAttention counts.
 */
import { sgemm } from "../../ffi/gemm.ts";
import { attentionBackward, attentionForward, type AttentionShape } from "../../ffi/ops.ts";
import { printTable, randomF32, timeInterleaved } from "./measure.ts";

export interface AttentionCase {
  label: string;
  // Full causal attention: the window (a masked subset of the same work) is not benchmarked.
  shape: Required<Omit<AttentionShape, "window">>;
}

const smol = { heads: 9, kvHeads: 3, headDim: 64 };
export const ATTENTION_CASES: AttentionCase[] = [
  { label: "SmolLM2 T=256 (9/3 × 64)", shape: { ...smol, tokens: 256, keys: 256, qOffset: 0 } },
  { label: "SmolLM2 T=1024 (9/3 × 64)", shape: { ...smol, tokens: 1024, keys: 1024, qOffset: 0 } },
  {
    label: "Mistral-7B T=256 (32/8 × 128)",
    shape: { heads: 32, kvHeads: 8, headDim: 128, tokens: 256, keys: 256, qOffset: 0 },
  },
];

/** Query–key pairs a causal pass computes, over all heads. */
function visiblePairs(s: Required<Omit<AttentionShape, "window">>): number {
  let pairs = 0;
  for (let t = 0; t < s.tokens; t++) pairs += s.qOffset + t + 1;
  return pairs * s.heads;
}

export interface AttentionResult {
  label: string;
  gflops: Record<"fwd" | "bwd" | "gemm fwd" | "gemm bwd", number>;
}

/** A dense `tokens × 576 · 576 × n` sgemm with n chosen so it does about `flops` FLOPs; returns its FLOPs. */
function denseGemm(tokens: number, flops: number): { run: () => void; flops: number } {
  const k = 576;
  const n = Math.max(16, Math.round(flops / (2 * tokens * k) / 16) * 16);
  const a = randomF32(tokens * k, 11);
  const b = randomF32(k * n, 12);
  const c = new Float32Array(tokens * n);
  return {
    run: () =>
      sgemm(
        tokens,
        n,
        k,
        { data: a, rowStride: k, colStride: 1 },
        { data: b, rowStride: n, colStride: 1 },
        c,
      ),
    flops: 2 * tokens * k * n,
  };
}

export function benchAttention(c: AttentionCase, minSeconds: number): AttentionResult {
  const s = c.shape;
  const qLen = s.tokens * s.heads * s.headDim;
  const kvLen = s.keys * s.kvHeads * s.headDim;
  const q = randomF32(qLen, 1);
  const k = randomF32(kvLen, 2);
  const v = randomF32(kvLen, 3);
  const dout = randomF32(qLen, 4, 0.01);
  const { o, lse } = attentionForward(q, k, v, s);
  const fwdOut = { o: new Float32Array(qLen), lse: new Float32Array(s.heads * s.tokens) };
  const grads = { dq: new Float32Array(qLen), dk: new Float32Array(kvLen), dv: new Float32Array(kvLen) };
  const pairs = visiblePairs(s);
  const fwdFlops = 4 * s.headDim * pairs;
  const bwdFlops = 10 * s.headDim * pairs;
  const gemmFwd = denseGemm(s.tokens, fwdFlops);
  const gemmBwd = denseGemm(s.tokens, bwdFlops);
  const times = timeInterleaved({
    fwd: () => attentionForward(q, k, v, s, fwdOut),
    bwd: () => attentionBackward(q, k, v, o, lse, dout, s, grads),
    "gemm fwd": gemmFwd.run,
    "gemm bwd": gemmBwd.run,
  }, { minSeconds, minReps: 5, maxReps: 200 });
  return {
    label: c.label,
    gflops: {
      fwd: fwdFlops / times.fwd / 1e9,
      bwd: bwdFlops / times.bwd / 1e9,
      "gemm fwd": gemmFwd.flops / times["gemm fwd"] / 1e9,
      "gemm bwd": gemmBwd.flops / times["gemm bwd"] / 1e9,
    },
  };
}

export function printAttentionResults(results: AttentionResult[]): void {
  const f = (v: number) => v.toFixed(1);
  const r = (v: number) => v.toFixed(2) + "x";
  printTable(
    ["shape (H/Hkv × hd)", "fwd", "gemm", "fwd/gemm", "bwd", "gemm", "bwd/gemm"],
    results.map(({ label, gflops: g }) => [
      label,
      f(g.fwd),
      f(g["gemm fwd"]),
      r(g.fwd / g["gemm fwd"]),
      f(g.bwd),
      f(g["gemm bwd"]),
      r(g.bwd / g["gemm bwd"]),
    ]),
  );
}
