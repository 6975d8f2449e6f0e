/**
 * Model sections of `deno task bench`: prompt processing and generation speed of the default model, and the
 * load time and peak RSS of a Mistral-7B-shaped model (random bf16 weights written once into the cache).
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { cacheRoot, defaultModelPath } from "../../lib/io/default_model.ts";
import { loadModel } from "../../lib/nn/load_model.ts";
import { MISTRAL_7B_CONFIG, writeSyntheticModel } from "./synthetic_model.ts";
import { printTable, timeInterleaved } from "./measure.ts";

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

/** QLoRA training speed and memory on the default model (child process, so the peak RSS is training's). */
export async function benchTraining(): Promise<void> {
  const probe = fileURLToPath(new URL("./train_probe.ts", import.meta.url));
  const rows: (string | number)[][] = [];
  for (const flags of [[], ["--checkpointing"]]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", probe, ...flags],
      stderr: "inherit",
    })
      .output();
    if (!out.success) throw new Error(`training probe failed with code ${out.code}`);
    const r = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
    const share = (ms: number) => `${(100 * ms / r.msPerStep).toFixed(0)} %`;
    rows.push([
      flags.length ? "with gradient checkpointing" : "plain",
      r.tokensPerSecond.toFixed(1),
      (r.peakRss / 2 ** 20).toFixed(0),
      share(r.nf4Ms),
      share(r.headMs),
      share(r.msPerStep - r.nf4Ms - r.headMs),
    ]);
  }
  console.log(
    "\nQLoRA training, SmolLM2-135M-Instruct NF4, seq 256, batch 1, LoRA r=16 on all block linears, AdamW",
  );
  printTable([
    "run",
    "tok/s",
    "peak RSS MiB",
    "NF4 GEMMs",
    "LM head + CE",
    "rest (attention, LoRA, norms, optimizer)",
  ], rows);
}
