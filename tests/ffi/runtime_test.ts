import assert from "node:assert/strict";
import {
  availableKernels,
  cpuFeatures,
  fmaPeakGflops,
  keepFreedMemory,
  kernelName,
  setKernel,
  setThreads,
  threads,
} from "../../ffi/runtime.ts";
import { KernelError } from "../../ffi/errors.ts";

Deno.test("the active path is one this CPU offers, and every offered path can be chosen", () => {
  const before = kernelName();
  assert.ok(availableKernels().includes(before));
  assert.ok(availableKernels().includes("scalar"));
  try {
    for (const path of availableKernels()) {
      setKernel(path);
      assert.equal(kernelName(), path);
    }
  } finally {
    setKernel(before);
  }
});

Deno.test("asking for a path the CPU lacks or an unknown one is a clear error", () => {
  assert.throws(
    () => setKernel("sse9" as "avx2"),
    (e: unknown) => e instanceof KernelError && /unknown path "sse9"/.test(e.message),
  );
  if (!cpuFeatures().includes("avx512")) {
    assert.throws(() => setKernel("avx512"), /this CPU cannot run the avx512 path/);
  }
  // The message names every path and what this CPU has, so a typo in QLORA_KERNEL is easy to fix.
  assert.throws(
    () => setKernel("amx2" as "amx"),
    (e: unknown) =>
      e instanceof KernelError && /scalar, avx2, avx512, avx512bf16, amx/.test(e.message) &&
      e.message.includes(`this CPU has: ${cpuFeatures().join(",")}`),
  );
  for (const path of ["avx512bf16", "amx"] as const) {
    if (!availableKernels().includes(path)) {
      assert.throws(() => setKernel(path), new RegExp(`this CPU cannot run the ${path} path`));
    }
  }
  console.log(`paths on this CPU: ${availableKernels().join(", ")}`);
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
