/**
 * Model sections of `deno task bench`: prompt processing and generation speed of the default model, and the
 * load time and peak RSS of a Mistral-7B-shaped model (random bf16 weights written once into the cache).
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { cacheRoot, defaultModelPath } from "../../lib/io/default_model.ts";
import { loadModel } from "../../lib/pretrained/load_model.ts";
import { fmaPeakGflops } from "../../ffi/runtime.ts";
import { MISTRAL_7B_CONFIG, writeSyntheticModel } from "./synthetic_model.ts";
import { median, printTable, timeInterleaved } from "./measure.ts";
import { arithmeticCeiling, stepArithmetic } from "./step_arithmetic.ts";

export async function benchDefaultModel(promptTokens = 256, newTokens = 64): Promise<void> {
  const { model, loadSeconds, config } = await loadModel(await defaultModelPath(), { progress: false });
  const ids = Uint32Array.from({ length: promptTokens }, (_, i) => (i * 7919) % config.vocabSize);
  const times = timeInterleaved({
    prompt: () => model.forward(ids, { logits: "last" }),
    generate: () => {
      const cache = model.newCache(1 + newTokens);
      model.forward(ids.subarray(0, 1), { cache, logits: "last" });
      for (let t = 0; t < newTokens; t++) {
        model.forward(ids.subarray(t + 1, t + 2), { cache, logits: "last" });
      }
    },
  }, { minReps: 2, minSeconds: 2 });
  console.log(
    `\nDefault model (SmolLM2-135M-Instruct, NF4 linears ${
      (model.weightBytes / 2 ** 20).toFixed(0)
    } MiB in all)`,
  );
  printTable(["measure", "value"], [
    ["load (GGUF → NF4) s", loadSeconds.toFixed(2)],
    [`prompt processing tok/s (${promptTokens} tokens)`, (promptTokens / times.prompt).toFixed(1)],
    [`generation tok/s (${newTokens} tokens, KV cache)`, (newTokens / times.generate).toFixed(1)],
  ]);
  model.close();
}

/** The bench's Mistral-7B-shaped bf16 checkpoint (written on first use, ~14.5 GB). */
function synthetic7bDir(): string {
  return join(cacheRoot(), "bench", "mistral-7b-shape-bf16");
}

export async function bench7bLoad(): Promise<void> {
  const dir = synthetic7bDir();
  const t0 = performance.now();
  const params = writeSyntheticModel(dir);
  const writeSeconds = (performance.now() - t0) / 1000;
  const probe = fileURLToPath(new URL("./load_probe.ts", import.meta.url));
  const cache = join(cacheRoot(), "bench", "nf4-cache-load");
  rmSync(cache, { recursive: true, force: true });
  const load = async (args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", probe, dir, ...args],
      stderr: "inherit",
    })
      .output();
    if (!out.success) throw new Error(`load probe failed with code ${out.code}`);
    return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
  };
  const r = await load([]);
  const written = await load([cache]);
  const read = await load([cache]);
  rmSync(cache, { recursive: true, force: true });
  const gib = (b: number) => (b / 2 ** 30).toFixed(2);
  console.log(
    `\nMistral-7B-shaped model (${
      (params / 1e9).toFixed(2)
    } B params, random bf16, ${MISTRAL_7B_CONFIG.num_hidden_layers} layers)`,
  );
  printTable(["measure", "value"], [
    ["synthetic checkpoint ready in s", writeSeconds.toFixed(1)],
    ["load (bf16 safetensors → NF4) s", r.loadSeconds.toFixed(1)],
    ["load + write the NF4 cache s", written.loadSeconds.toFixed(1)],
    ["load from the NF4 cache s", read.loadSeconds.toFixed(1)],
    ["model in memory GiB (NF4 + bf16 embed/head)", gib(r.weightBytes)],
    ["peak RSS of the load GiB", gib(r.peakRss)],
    ["peak RSS − model GiB", gib(r.peakRss - r.weightBytes)],
    ["peak RSS of a load from the cache GiB", gib(read.peakRss)],
  ]);
}

/** Kernel symbols by the part of the step they serve; the rest of a step is TypeScript and FFI overhead. */
const KERNEL_GROUPS: [string, RegExp][] = [
  ["NF4 GEMMs", /^nf4_matmul/],
  ["LM head + CE", /^(bf16_matmul|cross_entropy|log_softmax_gather)/],
  ["attention", /^attention_/],
  ["LoRA GEMMs", /^sgemm$/],
  ["norms, RoPE, SwiGLU", /^(rmsnorm|rope|swiglu)_/],
  ["AdamW, clip, vectors", /^(adamw|sum_squares|scale|add_scaled)$/],
];

interface ProbeResult {
  tokensPerSecond: number;
  loadSeconds?: number;
  nf4Cache?: string;
  msPerStep: number;
  peakRss: number;
  kernelMs: Record<string, number>;
  hfConfig: Record<string, unknown>;
  /** Ours: tokens per step (one sequence, every token with a target) and the LoRA rank. */
  tokens?: number;
  rank?: number;
  /** PyTorch's: which ATen kernel build ran (AVX2, AVX512, …). */
  cpuCapability?: string;
  /** The CPU's FMA GFLOP/s measured by this process just before and just after the child ran. */
  cpuPeak: [number, number];
}

/** Pairs of (qlora-deno, PyTorch) runs when the baseline is measured. */
const TRAIN_ROUNDS = 3;

/** The run with the median tokens/s. */
function medianRun(results: ProbeResult[]): ProbeResult {
  const sorted = [...results].sort((a, b) => a.tokensPerSecond - b.tokensPerSecond);
  return sorted[(sorted.length - 1) >> 1];
}

/**
 * Runs one child and brackets it with the CPU's FMA peak: on a shared machine a timing is only comparable with
 * the peak measured around it (the same binary's speed drifts by a factor of two as neighbours come and go).
 */
async function runProbe(
  command: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<ProbeResult> {
  const before = fmaPeakGflops();
  const out = await new Deno.Command(command, { args, env, stderr: "inherit" }).output();
  if (!out.success) throw new Error(`${args.join(" ")} failed with code ${out.code}`);
  const result = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
  return { ...result, cpuPeak: [before, fmaPeakGflops()] };
}

/**
 * QLoRA training speed and memory on the default model (child processes, so each peak RSS is training's),
 * the split of step time across kernels, and — when QLORA_REF_PYTHON names a Python with torch,
 * transformers and peft — the same step in PyTorch + PEFT (fp32) on this machine, run back to back.
 */
export async function benchTraining(threads: number, kernel: string): Promise<void> {
  const probe = fileURLToPath(new URL("./train_probe.ts", import.meta.url));
  const ourEnv = { QLORA_KERNEL: kernel };
  const runOurs = () => runProbe(Deno.execPath(), ["run", "-A", probe], ourEnv);
  const runs: [string, ProbeResult][] = [["qlora-deno", await runOurs()]];
  runs.push([
    "qlora-deno, gradient checkpointing",
    await runProbe(Deno.execPath(), ["run", "-A", probe, "--recompute-blocks"], ourEnv),
  ]);
  const python = Deno.env.get("QLORA_REF_PYTHON");
  const ratios: number[] = [];
  if (python) {
    // Alternate the two a few times: this machine's speed drifts by tens of percent from one minute to the
    // next, so only back-to-back pairs give a ratio worth reporting (their median).
    const script = fileURLToPath(new URL("./peft_reference.py", import.meta.url));
    const config = JSON.stringify(runs[0][1].hfConfig);
    const torchEnv = torchIsaLimit(kernel);
    if (Object.keys(torchEnv).length > 0) {
      console.log(
        `PyTorch limited to the same ISA: ${Object.entries(torchEnv).map(([k, v]) => `${k}=${v}`).join(" ")}`,
      );
    }
    const torch = () => runProbe(python, [script, config, String(threads)], torchEnv);
    const pairs: [ProbeResult, ProbeResult][] = [[runs[0][1], await torch()]];
    for (let round = 1; round < TRAIN_ROUNDS; round++) pairs.push([await runOurs(), await torch()]);
    for (const [a, b] of pairs) ratios.push(a.tokensPerSecond / b.tokensPerSecond);
    runs[0] = ["qlora-deno", medianRun(pairs.map(([a]) => a))];
    const reference = medianRun(pairs.map(([, b]) => b));
    runs.push([`PyTorch + PEFT (fp32, ATen ${reference.cpuCapability ?? "?"})`, reference]);
  }
  const ours = runs[0][1].tokensPerSecond;
  console.log(
    `\nQLoRA training, SmolLM2-135M-Instruct NF4, seq 256, batch 1, LoRA r=16 on all block linears, AdamW; ` +
      `our path ${kernel}`,
  );
  printTable(
    ["run", "tok/s", "vs qlora-deno", "peak RSS MiB", "CPU FMA GF/s before → after"],
    runs.map(([name, r]) => [
      name,
      r.tokensPerSecond.toFixed(1),
      (r.tokensPerSecond / ours).toFixed(2),
      (r.peakRss / 2 ** 20).toFixed(0),
      `${r.cpuPeak[0].toFixed(0)} → ${r.cpuPeak[1].toFixed(0)}`,
    ]),
  );
  if (python) {
    console.log(
      `qlora-deno ÷ PyTorch + PEFT in ${ratios.length} back-to-back pairs: ` +
        `${ratios.map((x) => x.toFixed(2)).join(", ")} (median ${median(ratios).toFixed(2)}×); ` +
        "the rows above are the median runs",
    );
  } else {
    console.log("(set QLORA_REF_PYTHON to a Python with torch + peft to add the PyTorch baseline)");
  }
  // Both sides compute in f32 here: the FMA peak bounds them.
  const measured = runs.filter(([name]) => !name.includes("checkpointing"));
  const peak = median(measured.flatMap(([, r]) => r.cpuPeak));
  const { hfConfig, tokens, rank } = runs[0][1];
  if (tokens === undefined || rank === undefined) {
    throw new Error("train_probe.ts did not report tokens and rank");
  }
  const arithmetic = stepArithmetic(hfConfig, tokens, rank);
  console.log(arithmeticCeiling(arithmetic, peak, measured.map(([name, r]) => [name, r.tokensPerSecond])));

  console.log("\nWhere a training step's time goes (plain run, ms per step and share)");
  const r = runs[0][1];
  const rows: (string | number)[][] = [];
  let accounted = 0;
  for (const [group, pattern] of KERNEL_GROUPS) {
    const ms = Object.entries(r.kernelMs).filter(([k]) => pattern.test(k)).reduce((a, [, v]) => a + v, 0);
    accounted += ms;
    rows.push([group, ms.toFixed(0), `${(100 * ms / r.msPerStep).toFixed(1)} %`]);
  }
  const other = Object.entries(r.kernelMs)
    .filter(([k]) => !KERNEL_GROUPS.some(([, p]) => p.test(k)))
    .reduce((a, [, v]) => a + v, 0);
  accounted += other;
  rows.push([
    "other kernels (dropout, gathers, …)",
    other.toFixed(0),
    `${(100 * other / r.msPerStep).toFixed(1)} %`,
  ]);
  const rest = r.msPerStep - accounted;
  rows.push([
    "TypeScript graph + FFI overhead",
    rest.toFixed(0),
    `${(100 * rest / r.msPerStep).toFixed(1)} %`,
  ]);
  printTable(["part", "ms", "share"], rows);
}

/**
 * The environment that keeps PyTorch (ATen's own kernels, oneDNN, MKL) to the ISA our forced path runs, so an
 * AVX2 machine's ratio can be measured on an AVX-512 one: `--kernel avx2` against PyTorch on AVX2 alone.
 */
function torchIsaLimit(kernel: string): Record<string, string> {
  if (kernel !== "avx2") return {};
  return { ATEN_CPU_CAPABILITY: "avx2", ONEDNN_MAX_CPU_ISA: "AVX2", MKL_ENABLE_INSTRUCTIONS: "AVX2" };
}

/** Steps timed per 7B run (after one warm-up step): a step takes minutes on two cores. */
const TRAIN7B_STEPS = 2;
/** PyTorch's bf16 7B step needs ~17 GiB: run it only with this much memory available. */
const TORCH_7B_MIN_AVAILABLE = 20 * 2 ** 30;

/** MemAvailable from /proc/meminfo in bytes (Infinity where unknown). */
function availableMemory(): number {
  try {
    const m = Deno.readTextFileSync("/proc/meminfo").match(/^MemAvailable:\s+(\d+) kB/m);
    return m ? Number(m[1]) * 1024 : Infinity;
  } catch {
    return Infinity;
  }
}

/**
 * QLoRA training of the Mistral-7B-shaped model: seq 256, batch 1, LoRA r=16 on all block linears, gradient
 * checkpointing, bf16 compute. Ours runs twice — the first load quantizes and writes the NF4 cache, the second
 * reads it — around one PyTorch + PEFT bf16 run of the same step (with gradient checkpointing too), so both
 * ratios are back to back. Never two 7B processes at once.
 */
export async function benchTraining7b(threads: number): Promise<void> {
  const dir = synthetic7bDir();
  writeSyntheticModel(dir);
  const cache = join(cacheRoot(), "bench", "nf4-cache");
  // A cold start: the first run quantizes and writes the cache, the second reads it.
  rmSync(cache, { recursive: true, force: true });
  const probe = fileURLToPath(new URL("./train_probe.ts", import.meta.url));
  const ours = () =>
    runProbe(Deno.execPath(), [
      "run",
      "-A",
      probe,
      "--model",
      dir,
      "--recompute-blocks",
      "--compute",
      "bf16",
      "--steps",
      String(TRAIN7B_STEPS),
      "--nf4-cache",
      cache,
    ]);
  const runs: [string, ProbeResult][] = [["qlora-deno (NF4 quantized at load, cache written)", await ours()]];
  const python = Deno.env.get("QLORA_REF_PYTHON");
  const available = availableMemory();
  let torch: ProbeResult | undefined;
  if (python && available >= TORCH_7B_MIN_AVAILABLE) {
    const script = fileURLToPath(new URL("./peft_reference.py", import.meta.url));
    torch = await runProbe(python, [
      script,
      "--model",
      dir,
      "--dtype",
      "bf16",
      "--gradient-checkpointing",
      "--steps",
      String(TRAIN7B_STEPS),
      "--threads",
      String(threads),
    ]);
    runs.push(["PyTorch + PEFT (bf16 base), gradient checkpointing", torch]);
  }
  runs.push(["qlora-deno (NF4 cache read)", await ours()]);
  const gib = (b: number) => (b / 2 ** 30).toFixed(2);
  console.log(
    "\nQLoRA training, Mistral-7B-shaped bf16 checkpoint, seq 256, batch 1, LoRA r=16 on all block linears, " +
      `gradient checkpointing, bf16 compute; median of ${TRAIN7B_STEPS} steps after a warm-up`,
  );
  printTable(
    ["run", "tok/s", "s/step", "load s", "peak RSS GiB", "CPU FMA GF/s before → after"],
    runs.map(([name, r]) => [
      name,
      r.tokensPerSecond.toFixed(2),
      (r.msPerStep / 1000).toFixed(1),
      r.loadSeconds?.toFixed(1) ?? "?",
      gib(r.peakRss),
      `${r.cpuPeak[0].toFixed(0)} → ${r.cpuPeak[1].toFixed(0)}`,
    ]),
  );
  if (torch) {
    const [first, second] = [runs[0][1], runs[2][1]];
    const ratios = [first, second].map((r) => r.tokensPerSecond / torch.tokensPerSecond);
    console.log(
      `qlora-deno ÷ PyTorch + PEFT bf16, the runs before and after it: ${
        ratios.map((x) => x.toFixed(2)).join(", ")
      }` +
        ` (median ${median(ratios).toFixed(2)}×); peak RSS ${
          (second.peakRss / torch.peakRss).toFixed(2)
        }× PyTorch's`,
    );
  } else if (python) {
    console.log(
      `(PyTorch 7B skipped: ${gib(available)} GiB available, it needs ${gib(TORCH_7B_MIN_AVAILABLE)})`,
    );
  } else {
    console.log("(set QLORA_REF_PYTHON to a Python with torch + peft to add the PyTorch bf16 baseline)");
  }
}
