/**
 * How faithful a merged GGUF export is, per type, on a real model and a trained adapter:
 *
 *   deno run -A tasks/bench/export_fidelity.ts --adapter out/finetune/adapter [--limit 20] [--types f16,q8_0]
 *
 * For each type: export (the task's code path), load the file back unquantized, and compare its logits on
 * the first records of the validation set with the unmerged model (the same source weights, the adapter on
 * the side): max and mean |Δlogit|. Then greedy exact match on `--limit` records for the base model, the
 * unmerged adapted model on NF4 (what `finetune` measures), the unmerged adapted model on the source's own
 * weights, each export, and (`--nf4-merge`) the adapter merged into NF4 and re-quantized to NF4 — the trap
 * the export avoids. With QLORA_REF_PYTHON, llama.cpp's reader (gguf-py) also dequantizes every
 * tensor of each file and must agree with ours exactly (tests/fixtures/export/check_gguf.py).
 */
import { Command } from "@commander-js/extra-typings";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readRecords } from "../../lib/data/formats.ts";
import { exactMatch } from "../../lib/data/metrics.ts";
import { RecordTokenizer } from "../../lib/data/tokenize.ts";
import { defaultStopTokens } from "../../lib/generate/generate.ts";
import { defaultModelPath } from "../../lib/io/default_model.ts";
import { GgufFile } from "../../lib/io/gguf/file.ts";
import { readPeftAdapter } from "../../lib/io/peft/read.ts";
import { writeSafetensors } from "../../lib/io/safetensors/writer.ts";
import { LoraModel } from "../../lib/lora/model.ts";
import { configFromGguf, type LinearModule, modulePath } from "../../lib/nn/config.ts";
import { blockLinear, type CausalLm, type DecoderLayerWeights, LlamaModel } from "../../lib/nn/llama.ts";
import { mergedWeight } from "../../lib/lora/merge.ts";
import { Nf4Weight } from "../../ffi/nf4.ts";
import { exportGguf } from "../../lib/pretrained/export_gguf.ts";
import { GGUF_EXPORT_TYPES, type GgufExportType } from "../../lib/pretrained/export/gguf_types.ts";
import { buildModel, loadModel } from "../../lib/pretrained/load_model.ts";
import { GgufSource } from "../../lib/pretrained/weight_source.ts";

const opts = new Command("export_fidelity")
  .option("--model <path>", "a GGUF or HF directory (default: the default model)")
  .option("--adapter <dir>", "the PEFT adapter", "out/finetune/adapter")
  .option("--data <jsonl>", "records for logits and exact match", "data/dates/valid.jsonl")
  .option("--limit <n>", "records for exact match", "20")
  .option("--logit-records <n>", "records whose logits are compared", "5")
  .option("--types <list>", "export types (empty: none)", GGUF_EXPORT_TYPES.join(","))
  .option("--nf4-merge", "also score the adapter merged into NF4 and re-quantized to NF4", false)
  .parse(Deno.args, { from: "user" })
  .opts();

const source = opts.model ?? await defaultModelPath();
const types = opts.types.split(",").filter((t) => t !== "") as GgufExportType[];
const { records } = await readRecords(opts.data);
const evalRecords = records.slice(0, Number(opts.limit));
const { model: nf4, tokenizer, config } = await loadModel(source, { progress: false });
const adapter = readPeftAdapter(opts.adapter, config);
const stopTokens = defaultStopTokens(tokenizer, config.eosTokenIds);
const prompts = new RecordTokenizer(tokenizer);
const logitIds = records.slice(0, Number(opts.logitRecords)).map((r) => prompts.tokenize(r).ids);

const logitsOf = (m: CausalLm) => logitIds.map((ids) => m.forward(Uint32Array.from(ids)));
const score = (m: CausalLm) => exactMatch(m, tokenizer, evalRecords, { stopTokens, samples: 0 });
const pct = (r: { correct: number; total: number }) => `${r.correct}/${r.total}`;

const rows: string[] = [];
rows.push(`base (NF4, no adapter): exact match ${pct(score(nf4))}`);
rows.push(
  `unmerged adapter on NF4 (as trained): exact match ${
    pct(score(LoraModel.fromWeights(nf4, adapter.layers)))
  }`,
);
if (opts.nf4Merge) {
  // What the export avoids: merge into the NF4 weights, then quantize the sum to NF4 again.
  const requantized = (l: number, m: LinearModule) => {
    const base = blockLinear(nf4.weights.layers[l], m);
    return Nf4Weight.quantize(mergedWeight(base, adapter.layers.get(modulePath(l, m))), base.rows, base.cols);
  };
  const layers = nf4.weights.layers.map((layer, l): DecoderLayerWeights => ({
    ...layer,
    attention: {
      ...layer.attention,
      q: requantized(l, "q_proj"),
      k: requantized(l, "k_proj"),
      v: requantized(l, "v_proj"),
      o: requantized(l, "o_proj"),
    },
    mlp: {
      gate: requantized(l, "gate_proj"),
      up: requantized(l, "up_proj"),
      down: requantized(l, "down_proj"),
    },
  }));
  const snapped = new LlamaModel(config, { ...nf4.weights, layers });
  rows.push(`merged into NF4, then re-quantized to NF4: exact match ${pct(score(snapped))}`);
}
nf4.close();

const full = buildModel(await GgufSource.open(source), config, { quantize: "none" });
const unmerged = LoraModel.fromWeights(full, adapter.layers);
const reference = logitsOf(unmerged);
rows.push(`unmerged adapter on the source's own weights: exact match ${pct(score(unmerged))}`);
full.close();

const tmp = mkdtempSync(join(tmpdir(), "qlora-export-fidelity-"));
const ref = Deno.env.get("QLORA_REF_PYTHON");
try {
  for (const type of types) {
    const path = join(tmp, `${type}.gguf`);
    const t0 = performance.now();
    const result = await exportGguf(path, { source, adapters: adapter.layers, type });
    const seconds = (performance.now() - t0) / 1000;
    using file = await GgufFile.open(path);
    using exported = buildModel(new GgufSource(file), configFromGguf(file.metadata, file.names(), path), {
      quantize: "none",
    });
    let max = 0, sum = 0, n = 0;
    for (const [i, logits] of logitsOf(exported).entries()) {
      for (let j = 0; j < logits.length; j++) {
        const d = Math.abs(logits[j] - reference[i][j]);
        max = Math.max(max, d);
        sum += d;
        n++;
      }
    }
    const types = Object.entries(result.tensorTypes).map(([t, c]) => `${c} ${t}`).join(", ");
    let check = "";
    if (ref) check = `; gguf-py: ${await crossCheck(file, path, tmp, ref)}`;
    rows.push(
      `${type}: ${(result.bytes / 1e6).toFixed(1)} MB (${types}) in ${
        seconds.toFixed(1)
      } s; logits vs unmerged ` +
        `max ${max.toFixed(4)} mean ${(sum / n).toFixed(5)}; exact match ${pct(score(exported))}${check}`,
    );
    console.error(rows.at(-1));
    rmSync(path);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
console.log(`source ${source}, adapter ${opts.adapter}, ${evalRecords.length} records:\n${rows.join("\n")}`);

async function crossCheck(file: GgufFile, path: string, dir: string, python: string): Promise<string> {
  const tensors = file.names().map((name) => {
    const data = file.readTensorF32(name);
    return { name, dtype: "F32" as const, shape: [data.length], data };
  });
  writeSafetensors(join(dir, "expected.safetensors"), tensors);
  const types = Object.fromEntries(file.names().map((n) => [n, file.info(n).type.name]));
  const scalars = Object.fromEntries(
    Object.entries(file.metadata).filter(([, v]) => typeof v !== "object" && typeof v !== "bigint"),
  );
  writeFileSync(join(dir, "expected.json"), JSON.stringify({ types, metadata: scalars }));
  const script = fileURLToPath(new URL("../../tests/fixtures/export/check_gguf.py", import.meta.url));
  const out = await new Deno.Command(python, {
    args: [script, path, join(dir, "expected.safetensors"), join(dir, "expected.json")],
  }).output();
  const text = new TextDecoder();
  return out.code === 0 ? text.decode(out.stdout).trim() : `FAILED ${text.decode(out.stderr).slice(0, 500)}`;
}
