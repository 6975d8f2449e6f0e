/**
 * Model sections of `deno task bench`: prompt processing and generation speed of the default model, and the
 * load time and peak RSS of a Mistral-7B-shaped model (random bf16 weights written once into the cache).
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { cacheRoot, defaultModelPath } from "../../lib/io/default_model.ts";
import { loadModel } from "../../lib/pretrained/load_model.ts";
import { fmaPeakGflops } from "../../ffi/runtime.ts";
import { MISTRAL_7B_CONFIG, writeSyntheticModel } from "./synthetic_model.ts";
import { median, printTable, timeInterleaved } from "./measure.ts";

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

export async function bench7bLoad(): Promise<void> {
  const dir = join(cacheRoot(), "bench", "mistral-7b-shape-bf16");
  const t0 = performance.now();
  const params = writeSyntheticModel(dir);
  const writeSeconds = (performance.now() - t0) / 1000;
  const probe = fileURLToPath(new URL("./load_probe.ts", import.meta.url));
  const out = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", probe, dir], stderr: "inherit" })
    .output();
  if (!out.success) throw new Error(`load probe failed with code ${out.code}`);
  const r = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
  const gib = (b: number) => (b / 2 ** 30).toFixed(2);
  console.log(
    `\nMistral-7B-shaped model (${
      (params / 1e9).toFixed(2)
    } B params, random bf16, ${MISTRAL_7B_CONFIG.num_hidden_layers} layers)`,
  );
  printTable(["measure", "value"], [
    ["synthetic checkpoint ready in s", writeSeconds.toFixed(1)],
    ["load (bf16 safetensors → NF4) s", r.loadSeconds.toFixed(1)],
    ["model in memory GiB (NF4 + bf16 embed/head)", gib(r.weightBytes)],
    ["peak RSS of the load GiB", gib(r.peakRss)],
    ["peak RSS − model GiB", gib(r.peakRss - r.weightBytes)],
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
  msPerStep: number;
  peakRss: number;
  kernelMs: Record<string, number>;
  hfConfig: Record<string, unknown>;
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
async function runProbe(command: string, args: string[]): Promise<ProbeResult> {
  const before = fmaPeakGflops();
  const out = await new Deno.Command(command, { args, stderr: "inherit" }).output();
  if (!out.success) throw new Error(`${args.join(" ")} failed with code ${out.code}`);
  const result = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
  return { ...result, cpuPeak: [before, fmaPeakGflops()] };
}

/**
 * QLoRA training speed and memory on the default model (child processes, so each peak RSS is training's),
 * the split of step time across kernels, and — when QLORA_REF_PYTHON names a Python with torch,
 * transformers and peft — the same step in PyTorch + PEFT (fp32) on this machine, run back to back.
 */
export async function benchTraining(threads: number): Promise<void> {
  const probe = fileURLToPath(new URL("./train_probe.ts", import.meta.url));
  const runOurs = () => runProbe(Deno.execPath(), ["run", "-A", probe]);
  const runs: [string, ProbeResult][] = [["qlora-deno", await runOurs()]];
  runs.push([
    "qlora-deno, gradient checkpointing",
    await runProbe(Deno.execPath(), ["run", "-A", probe, "--recompute-blocks"]),
  ]);
  const python = Deno.env.get("QLORA_REF_PYTHON");
  const ratios: number[] = [];
  if (python) {
    // Alternate the two a few times: this machine's speed drifts by tens of percent from one minute to the
    // next, so only back-to-back pairs give a ratio worth reporting (their median).
    const script = fileURLToPath(new URL("./peft_reference.py", import.meta.url));
    const config = JSON.stringify(runs[0][1].hfConfig);
    const torch = () => runProbe(python, [script, config, String(threads)]);
    const pairs: [ProbeResult, ProbeResult][] = [[runs[0][1], await torch()]];
    for (let round = 1; round < TRAIN_ROUNDS; round++) pairs.push([await runOurs(), await torch()]);
    for (const [a, b] of pairs) ratios.push(a.tokensPerSecond / b.tokensPerSecond);
    runs[0] = ["qlora-deno", medianRun(pairs.map(([a]) => a))];
    runs.push(["PyTorch + PEFT (fp32)", medianRun(pairs.map(([, b]) => b))]);
  }
  const ours = runs[0][1].tokensPerSecond;
  console.log(
    "\nQLoRA training, SmolLM2-135M-Instruct NF4, seq 256, batch 1, LoRA r=16 on all block linears, AdamW",
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
