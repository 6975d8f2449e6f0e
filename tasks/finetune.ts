/**
 * `deno task finetune [-c run.yaml] [--flags…]`: QLoRA fine-tuning on the CPU, top to bottom:
 * options → model → data → adapters → (score before) → train → (score after, a sample, the test set) → save.
 *
 * Every option, its default and its rule live in lib/train/args.ts; `--help` is generated from there
 * (lib/train/cli.ts, with the mlx-lm / TRL aliases). Relative paths are the user's (INIT_CWD).
 * Output in `--output-dir`: checkpoints (`checkpoint-<step>/`, `latest`), `metrics.jsonl`, the final adapter
 * as a PEFT directory (`adapter/`) and as a llama.cpp GGUF LoRA (`adapter.gguf`).
 * Ctrl-C saves a checkpoint at the end of the current step; `--resume` continues from it bit for bit.
 *
 * Several processes: `mpiexec -n N deno task finetune …`, or `--nproc N` which starts them so (MPICH from
 * PyPI on first use). Each rank trains on its share of every global batch (lib/train/distributed.ts); rank 0
 * alone prints, evaluates, scores, samples and saves.
 */
import { CommanderError } from "commander";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setThreads } from "../ffi/runtime.ts";
import { type Batch, BatchStream, orderedBatches, padTokenId } from "../lib/data/batch.ts";
import { describeSplit, type Example, loadDataset } from "../lib/data/dataset.ts";
import { exactMatch, type ExactMatchReport } from "../lib/data/metrics.ts";
import { chooseExactMatch } from "../lib/data/metric_choice.ts";
import { ChatTemplate } from "../lib/text/chat_template.ts";
import { finetuneCommand, parseFinetuneArgv } from "../lib/train/cli.ts";
import { dataFiles } from "../lib/train/data_files.ts";
import { sampleGenerations, samplePrompts } from "../lib/train/sample_generations.ts";
import { userDirectory } from "../lib/train/user_paths.ts";
import { defaultStopTokens } from "../lib/generate/generate.ts";
import { cacheRoot } from "../lib/io/default_model.ts";
import { exportMergedModel } from "../lib/pretrained/export_merged.ts";
import { readPeftAdapter } from "../lib/io/peft/read.ts";
import { loadAdapterInto } from "../lib/lora/load_weights.ts";
import { trainable as asTrainable } from "../lib/train/trainable.ts";
import { ALL_LINEAR, createAdapterConfig } from "../lib/io/peft/config.ts";
import { writeGgufLora } from "../lib/io/peft/gguf_lora.ts";
import { describeModelSpec, resolveModel } from "../lib/io/resolve_model.ts";
import type { CausalLm } from "../lib/nn/llama.ts";
import { loadModel } from "../lib/pretrained/load_model.ts";
import type { Tokenizer } from "../lib/text/tokenizer.ts";
import { ArgsError, type TrainingArgs } from "../lib/train/args.ts";
import { saveParameters } from "../lib/train/checkpoint.ts";
import { METRICS_FILE, MetricsLog } from "../lib/train/metrics_log.ts";
import { LoraModel } from "../lib/lora/model.ts";
import type { LinearModule } from "../lib/nn/config.ts";
import { Trainer, TrainingDivergedError } from "../lib/train/trainer.ts";
import {
  checkMicroBatches,
  checkSameRun,
  DistributedGradients,
  examplesDigest,
  joinMpiJob,
  ranksOnThisHost,
} from "../lib/train/distributed.ts";
import { runWithNproc } from "./mpi/launch.ts";
import { fileURLToPath } from "node:url";

// ---------------------------------------------------------------------------------------------------------
// Options: defaults < --config file < flags.

const program = finetuneCommand(`--model accepts ${describeModelSpec()}`)
  .option("--nproc <n>", "train with N processes under MPI (mpiexec -n N; MPICH from PyPI on first use)");
const userDir = userDirectory(Deno.env, Deno.cwd());
let args: TrainingArgs;
try {
  args = parseFinetuneArgv(Deno.args, userDir, program);
} catch (error) {
  // Commander has printed its message (or the help) already.
  if (error instanceof CommanderError) Deno.exit(error.exitCode);
  if (!(error instanceof ArgsError)) throw error;
  console.error(`finetune: ${error.message}`);
  Deno.exit(2);
}

const nproc = program.opts().nproc as string | undefined;
if (nproc !== undefined) {
  // What can be checked before launching is, so the user sees one message instead of one per rank.
  if (/^\d+$/.test(nproc) && Number(nproc) > 1) {
    try {
      checkMicroBatches(args.gradAccumulation, Number(nproc));
    } catch (error) {
      console.error(`finetune: ${(error as Error).message}`);
      Deno.exit(2);
    }
  }
  Deno.exit(await runWithNproc(nproc, fileURLToPath(import.meta.url), args.outputDir));
}

const world = await joinMpiJob().catch((error: Error) => {
  console.error(`finetune: ${error.message}`);
  Deno.exit(1);
});
const say = console.error;
if (world && world.rank !== 0) {
  // Rank 0 alone talks; the others keep only their own errors.
  console.log = console.error = () => {};
}
try {
  await main(args);
  world?.finalize();
} catch (error) {
  if (world && world.rank !== 0) {
    // Every rank reports, a DistributedRunError too: rank 0 throws it alike, but the launcher may end the job
    // when this rank exits, before rank 0 got to say it.
    say(`finetune (rank ${world.rank}): ${(error as Error).message}`);
    Deno.exit(1);
  }
  if (error instanceof TrainingDivergedError) {
    console.error(`\nfinetune: ${error.message}`);
    Deno.exit(3);
  }
  console.error(`finetune: ${(error as Error).message}`);
  Deno.exit(1);
}

async function main(args: TrainingArgs): Promise<void> {
  // With several ranks on one machine, "all cores" means this rank's share of them.
  const localRanks = world ? ranksOnThisHost() : 1;
  setThreads(
    args.threads || (world ? Math.max(1, Math.floor(navigator.hardwareConcurrency / localRanks)) : 0),
  );
  if (world && world.rank === 0) {
    console.error(`${world.size} processes (MPI: ${world.library}), ${localRanks} on this machine`);
  }

  // --- Model -------------------------------------------------------------------------------------------
  const resolved = await resolveModel(args.model === "default" ? undefined : args.model, { cwd: userDir });
  const { model, tokenizer, config, source, loadSeconds, nf4Cache } = await loadModel(
    resolved.kind === "gguf" ? resolved.path : resolved.dir,
    {
      nf4Cache: args.nf4Cache ? { root: join(cacheRoot(), "nf4") } : undefined,
      // Saving memory: the embedding table stays in its file too (rows read per batch).
      embeddingsOnDisk: args.gradientCheckpointing,
    },
  );
  const via = nf4Cache === "read" ? " (from the NF4 cache)" : "";
  console.error(`model ${source} loaded in ${loadSeconds.toFixed(1)} s${via}`);

  // --- Data --------------------------------------------------------------------------------------------
  const files = dataFiles(args.data);
  const chatTemplate = args.data.chatTemplate === "" ? undefined : new ChatTemplate(
    readTemplate(args.data.chatTemplate),
    { bosToken: tokenizer.bosToken, eosToken: tokenizer.eosToken, padToken: tokenizer.padToken },
    args.data.chatTemplate,
  );
  const dataset = await loadDataset({
    tokenizer,
    ...files,
    validFraction: args.data.validFraction,
    columns: args.data.columns,
    seed: args.seed,
    maxLength: args.maxLength,
    trainOnPrompt: args.data.trainOnPrompt,
    chatTemplate,
  });
  console.error(`data: ${dataset.sourceFormat} records (${files.train})`);
  for (const { file, columns } of dataset.ignoredColumns) {
    console.error(`  ${file}: columns not used: ${columns.join(", ")}`);
  }
  console.error(describeSplit("train", dataset.stats.train, args.maxLength));
  if (dataset.valid.length > 0) console.error(describeSplit("valid", dataset.stats.valid, args.maxLength));
  else console.error("valid: none (ask for one with --valid FILE or --valid-fraction F)");
  if (dataset.test.length > 0) console.error(describeSplit("test", dataset.stats.test, args.maxLength));
  const batching = {
    batchSize: args.batchSize,
    padId: padTokenId(tokenizer),
    pack: args.data.pack,
    maxLength: args.maxLength,
  };
  const trainStream = new BatchStream(dataset.train, { ...batching, seed: args.seed });
  const valid: Batch[] = dataset.valid.length > 0 ? [...orderedBatches(dataset.valid, batching)] : [];

  // --- Adapters ----------------------------------------------------------------------------------------
  const targets = args.lora.targets === ALL_LINEAR ? undefined : args.lora.targets as LinearModule[];
  const lora = new LoraModel(model, {
    rank: args.lora.rank,
    alpha: args.lora.alpha,
    dropout: args.lora.dropout,
    rslora: args.lora.rslora,
    targetModules: targets,
    seed: args.seed,
  });
  if (args.adapter !== "") {
    loadAdapterInto(lora, readPeftAdapter(args.adapter, config).layers, args.adapter);
    console.error(`starting from the adapter in ${args.adapter}`);
  }
  const adapterConfig = createAdapterConfig({
    r: args.lora.rank,
    loraAlpha: args.lora.alpha,
    loraDropout: args.lora.dropout,
    targetModules: args.lora.targets,
    useRslora: args.lora.rslora,
    baseModelNameOrPath: resolved.kind === "hf-dir" && resolved.repo ? resolved.repo.id : null,
  });
  const trainable = asTrainable(lora, { recomputeBlocks: args.gradientCheckpointing, compute: args.compute });
  const count = trainable.parameters().reduce((n, p) => n + p.data.length, 0);
  console.error(`${lora.adapters.size} adapters, ${count.toLocaleString("en")} trainable parameters`);

  if (world) {
    checkMicroBatches(args.gradAccumulation, world.size);
    checkSameRun(world, {
      ...args,
      threads: undefined,
      trainExamples: examplesDigest(dataset.train),
      validExamples: examplesDigest(dataset.valid),
      trainableValues: count,
    });
  }
  const stopTokens = defaultStopTokens(tokenizer, config.eosTokenIds);
  const prompts = args.sampleEvery > 0
    ? samplePrompts(tokenizer, {
      format: dataset.format,
      prompts: args.samplePrompt,
      records: (dataset.valid.length > 0 ? dataset.valid : dataset.train).map((e) => e.record),
      chatTemplate,
    })
    : [];
  const trainer = new Trainer({
    model: trainable,
    data: { train: trainStream, valid },
    args,
    adapter: adapterConfig,
    gradients: world ? new DistributedGradients(world) : undefined,
    callbacks: {
      onStep: (report, t) => {
        if (!t.isRoot || prompts.length === 0 || report.step % args.sampleEvery !== 0) return;
        const samples = sampleGenerations(lora, tokenizer, prompts, {
          maxNewTokens: args.sampleMaxTokens,
          stopTokens,
        });
        t.record({ event: "sample", step: report.step, samples });
        for (const s of samples) t.note(`step ${report.step} sample ${s.label}: ${JSON.stringify(s.output)}`);
      },
    },
  });
  console.error(`${trainer.totalSteps} steps of ${args.batchSize} × ${args.gradAccumulation} rows`);

  // --- Before ------------------------------------------------------------------------------------------
  const evalRecords = dataset.valid.slice(0, args.maxEvalExamples || undefined).map((e: Example) => e.record);
  const testRecords = dataset.test.slice(0, args.maxEvalExamples || undefined).map((e: Example) => e.record);
  const decision = chooseExactMatch(args.metric, [...evalRecords, ...testRecords], tokenizer);
  if (decision.note) console.error(decision.note);
  const scoring = decision.score;
  const scoreValid = scoring && evalRecords.length > 0;
  const before = valid.length > 0 && trainer.isRoot ? trainer.evaluate() : undefined;
  if (before) console.error(`eval loss before training: ${before.loss.toFixed(4)}`);
  const metricBefore = scoreValid && trainer.isRoot
    ? score("before", model, tokenizer, evalRecords, stopTokens)
    : undefined;

  // --- Train -------------------------------------------------------------------------------------------
  const resumedFrom = trainer.prepareOutput();
  let interrupts = 0;
  const onInterrupt = () => {
    if (++interrupts > 1) Deno.exit(130);
    console.error("\ninterrupted: saving a checkpoint after this step (Ctrl-C again to quit now)");
    trainer.requestStop();
  };
  Deno.addSignalListener("SIGINT", onInterrupt);
  if (!trainer.isRoot) {
    // The other ranks' part ends with training: rank 0 scores and saves.
    const result = await trainer.run();
    model.close();
    world!.barrier(); // rank 0 has saved its checkpoint: a stopped run may exit now
    if (result.stopped) Deno.exit(130);
    return;
  }
  const log = new MetricsLog(join(args.outputDir, METRICS_FILE));
  if (!resumedFrom) {
    if (before) log.append({ event: "eval", step: 0, evalLoss: before.loss, perplexity: before.perplexity });
    if (metricBefore) log.append({ event: "metric", step: 0, name: "exact-match", value: metricBefore.rate });
  }
  const result = await trainer.run();
  world?.barrier();
  Deno.removeSignalListener("SIGINT", onInterrupt);
  if (result.stopped) {
    log.close();
    Deno.exit(130);
  }

  // --- After -------------------------------------------------------------------------------------------
  const metricAfter = scoreValid ? score("after", lora, tokenizer, evalRecords, stopTokens) : undefined;
  if (metricAfter) {
    log.append({ event: "metric", step: result.step, name: "exact-match", value: metricAfter.rate });
  }
  // The test set, once, with the final adapters.
  const testLoss = dataset.test.length > 0
    ? trainer.lossOn([...orderedBatches(dataset.test, batching)])
    : undefined;
  const testMetric = scoring && testRecords.length > 0
    ? score("on the test set after", lora, tokenizer, testRecords, stopTokens)
    : undefined;
  if (testLoss) {
    log.append({
      event: "test",
      step: result.step,
      testLoss: testLoss.loss,
      perplexity: testLoss.perplexity,
    });
  }
  if (testMetric) {
    log.append({ event: "test-metric", step: result.step, name: "exact-match", value: testMetric.rate });
  }
  log.close();

  console.log(
    `\n${result.step} steps in ${result.elapsedSeconds.toFixed(1)} s (training time)` +
      (result.earlyStopped ? ", stopped early (no eval-loss improvement)" : ""),
  );
  if (result.bestCheckpoint) {
    console.log(
      `best eval loss ${result.bestEvalLoss?.toFixed(4)} at step ${result.bestEvalStep}: ` +
        `${result.bestCheckpoint.dir} (a PEFT adapter; ${join(args.outputDir, "best")} names it)`,
    );
  }
  if (before && result.eval) {
    console.log(
      `eval loss  ${before.loss.toFixed(4)} → ${result.eval.loss.toFixed(4)}   ` +
        `perplexity ${before.perplexity.toFixed(2)} → ${result.eval.perplexity.toFixed(2)}`,
    );
  }
  if (metricBefore && metricAfter) {
    console.log(
      `exact match ${metricBefore.correct}/${metricBefore.total} → ${metricAfter.correct}/${metricAfter.total}` +
        ` (${(100 * metricBefore.rate).toFixed(1)} % → ${(100 * metricAfter.rate).toFixed(1)} %)`,
    );
  }
  if (testLoss) {
    console.log(`test loss  ${testLoss.loss.toFixed(4)}   perplexity ${testLoss.perplexity.toFixed(2)}`);
  }
  if (testMetric) {
    console.log(
      `test exact match ${testMetric.correct}/${testMetric.total} (${(100 * testMetric.rate).toFixed(1)} %)`,
    );
  }
  const samples = metricAfter?.samples ??
    (evalRecords.length > 0 && dataset.format !== "text"
      ? exactMatch(lora, tokenizer, evalRecords.slice(0, 3), { stopTokens, samples: 3 }).samples
      : []);
  for (const s of samples.slice(0, 3)) {
    console.log(
      `${s.match ? "✓" : "✗"} ${s.source}: expected ${JSON.stringify(s.reference)}, got ${
        JSON.stringify(s.output)
      }`,
    );
  }

  // --- Save --------------------------------------------------------------------------------------------
  const adapterDir = join(args.outputDir, "adapter");
  saveParameters(adapterDir, trainable.parameters(), adapterConfig);
  const layers = lora.adapterWeights();
  writeGgufLora(join(args.outputDir, "adapter.gguf"), { model: config, config: adapterConfig, layers });
  console.log(`adapter saved: ${adapterDir} (PEFT), ${join(args.outputDir, "adapter.gguf")} (llama.cpp)`);
  if (args.merge) {
    // Merged into the NF4 weights the adapters were trained against: W' = dequant(NF4(W)) + s·B·A, in bf16.
    // The run's output directory is ours to replace, as the adapter above is.
    const mergedDir = join(args.outputDir, "merged");
    const merged = await exportMergedModel(mergedDir, {
      model,
      adapters: layers,
      source: resolved,
      overwrite: true,
    });
    console.log(
      `merged model saved: ${merged.dir} (transformers, bf16, ${(merged.tensorBytes / 1e9).toFixed(2)} GB: ` +
        `${merged.files.join(", ")})`,
    );
  }
  model.close();
}

/** A `--chat-template` file's text, or an error naming it. */
function readTemplate(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new ArgsError(`--chat-template ${path}: cannot read it (${(error as Error).message})`);
  }
}

/** Exact match of greedy answers, with a progress line every 10 records. */
function score(
  when: string,
  model: CausalLm,
  tokenizer: Tokenizer,
  records: Parameters<typeof exactMatch>[2],
  stopTokens: number[],
): ExactMatchReport {
  const report = exactMatch(model, tokenizer, records, {
    stopTokens,
    samples: 3,
    onResult: (_r, i) => {
      if ((i + 1) % 10 === 0) {
        console.error(`  exact match ${when} training: ${i + 1}/${records.length} records`);
      }
    },
  });
  console.error(`exact match ${when} training: ${report.correct}/${report.total}`);
  return report;
}
