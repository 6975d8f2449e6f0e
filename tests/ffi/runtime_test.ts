import assert from "node:assert/strict";
import {
  availableKernels,
  cpuFeatures,
  fmaPeakGflops,
  keepFreedMemory,
  kernelName,
  type KernelPath,
  kernelReport,
  kernelsUsed,
  setKernel,
  setThreads,
  threads,
} from "../../ffi/runtime.ts";
import { KernelError } from "../../ffi/errors.ts";
import { Nf4Weight } from "../../ffi/nf4.ts";
import { attentionForward, swigluForward } from "../../ffi/ops.ts";
import { randomF32 } from "../../tasks/bench/measure.ts";
import { testOnEveryPath } from "./per_path.ts";

testOnEveryPath(import.meta, {
  // Runs in a child process per path (QLORA_KERNEL set), where switching the process-wide path is harmless.
  "QLORA_KERNEL picks the path, and every offered path can be chosen": () => {
    assert.equal(kernelName(), Deno.env.get("QLORA_KERNEL"));
    assert.ok(availableKernels().includes("scalar"));
    for (const path of availableKernels()) {
      setKernel(path);
      assert.equal(kernelName(), path);
    }
    setKernel("auto");
    assert.equal(kernelName(), availableKernels().at(-1));
    setKernel(Deno.env.get("QLORA_KERNEL") as KernelPath);
  },
  "every kernel family runs the path kernelReport names, and none claims a path the CPU lacks": () => {
    const report = kernelReport();
    assert.deepEqual(Object.keys(report), ["gemm-f32", "nf4-decode", "gemm-bf16", "ops", "attention"]);
    assert.equal(report["gemm-f32"], kernelName());
    const offered = new Set<string>(cpuFeatures());
    if (offered.has("bf16dot")) offered.add("avx512-bf16");
    for (const [family, route] of Object.entries(report)) {
      assert.ok(offered.has(route), `${family} claims ${route}; the CPU offers ${[...offered]}`);
    }
    // One call of each family, then what really ran must include what the report names.
    using q = Nf4Weight.quantize(randomF32(40 * 70, 1), 40, 70);
    const x = randomF32(9 * 70, 2);
    q.matmul(x, 9);
    q.matmul(x, 9, undefined, { compute: "bf16" });
    swigluForward(randomF32(100, 3), randomF32(100, 4));
    const shape = { tokens: 7, keys: 7, heads: 2, kvHeads: 1, headDim: 16, qOffset: 0 };
    const kv = randomF32(7 * 16, 5);
    attentionForward(randomF32(7 * 2 * 16, 6), kv, kv, shape);
    const used = kernelsUsed();
    for (const [family, route] of Object.entries(report)) {
      const ran = used[family as keyof typeof used];
      assert.ok(ran.includes(route), `${family}: report says ${route}, ran ${ran}`);
    }
  },
});

Deno.test("asking for a path the CPU lacks or an unknown one is a clear error", () => {
  assert.throws(
    () => setKernel("sse9" as "avx2"),
    (e: unknown) => e instanceof KernelError && /unknown path "sse9"/.test(e.message),
  );
  if (!cpuFeatures().includes("avx512")) {
    assert.throws(() => setKernel("avx512"), /this CPU cannot run the avx512 path/);
  }
});

Deno.test("thread count can be set and restored", () => {
  const all = threads();
  try {
    setThreads(1);
    assert.equal(threads(), 1);
  } finally {
    setThreads(0);
  }
  assert.equal(threads(), all);
  assert.throws(() => setThreads(-1), /n must be a non-negative integer/);
});

Deno.test("fmaPeakGflops measures a positive rate and refuses a bad duration", () => {
  const g = fmaPeakGflops(0.02);
  assert.ok(Number.isFinite(g) && g > 0, `peak ${g}`);
  assert.throws(() => fmaPeakGflops(0), RangeError);
  assert.throws(() => fmaPeakGflops(Number.NaN), RangeError);
});

Deno.test("keepFreedMemory applies on glibc Linux (the training step's page-fault saving depends on it)", () => {
  const applied = keepFreedMemory();
  if (Deno.build.os === "linux" && Deno.build.env === "gnu") assert.equal(applied, true);
  else assert.equal(typeof applied, "boolean");
});
