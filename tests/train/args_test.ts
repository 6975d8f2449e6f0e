import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  ArgsError,
  cliOptions,
  defaultTrainingArgs,
  parseTrainingArgs,
  resolveTrainingArgs,
} from "../../lib/train/args.ts";

function withConfig(json: unknown, fn: (path: string) => void): void {
  const dir = Deno.makeTempDirSync({ prefix: "args_test_" });
  const path = join(dir, "run.json");
  writeFileSync(path, typeof json === "string" ? json : JSON.stringify(json));
  try {
    fn(path);
  } finally {
    rmSync(dir, { recursive: true });
  }
}

Deno.test("args: the defaults, in one place", () => {
  const a = defaultTrainingArgs();
  assert.equal(a.model, "default");
  assert.deepEqual(a.data, {
    dir: "",
    train: "data/dates/train.jsonl",
    valid: "auto",
    test: "",
    columns: {},
    chatTemplate: "",
    validFraction: 0,
    trainOnPrompt: false,
    pack: false,
  });
  assert.deepEqual(a.lora, { rank: 16, alpha: 32, dropout: 0.05, targets: "all-linear", rslora: false });
  assert.equal(a.maxLength, 128);
  assert.equal(a.batchSize, 4);
  assert.equal(a.gradAccumulation, 1);
  assert.equal(a.lr, 2e-4);
  assert.equal(a.schedule, "cosine");
  assert.equal(a.weightDecay, 0);
  assert.equal(a.maxGradNorm, 1);
  assert.equal(a.seed, 0);
  assert.equal(a.outputDir, "out/finetune");
  assert.equal(a.resume, false);
  assert.equal(a.gradientCheckpointing, false);
  assert.equal(a.threads, 0);
  assert.equal(a.merge, false);
  assert.equal(a.metric, "auto");
  assert.equal(a.keepBest, true);
  assert.equal(a.earlyStoppingPatience, 0);
  assert.equal(a.sampleEvery, 0);
  assert.deepEqual(a.samplePrompt, []);
});

Deno.test("args: every field has a flag whose help shows the schema's default", () => {
  const options = cliOptions();
  const byFlag = new Map(options.map((o) => [o.flag, o]));
  const defaults = defaultTrainingArgs() as unknown as Record<string, unknown>;
  let fields = 0;
  for (const value of Object.values(defaults)) {
    fields += typeof value === "object" && value !== null && !Array.isArray(value)
      ? Object.keys(value).length
      : 1;
  }
  assert.equal(options.length, fields);
  assert.equal(byFlag.get("--lora-rank")!.usage, "--lora-rank <n>");
  assert.match(byFlag.get("--lora-rank")!.description, /\(default: 16\)$/);
  assert.equal(byFlag.get("--train")!.usage, "--train <file>");
  assert.match(byFlag.get("--train")!.description, /\(default: "data\/dates\/train.jsonl"\)$/);
  assert.equal(byFlag.get("--schedule")!.usage, "--schedule <constant|linear|cosine>");
  assert.equal(byFlag.get("--resume")!.usage, "--resume");
  assert.equal(byFlag.get("--resume")!.negation, "--no-resume");
  assert.equal(byFlag.get("--data-dir")!.usage, "--data-dir <dir>");
  assert.equal(byFlag.get("--sample-prompt")!.kind, "list");
  assert.equal(byFlag.get("--lr")!.kind, "number");
  assert.deepEqual(byFlag.get("--grad-accumulation")!.path, ["gradAccumulation"]);
  for (const o of options) assert.match(o.description, /\(default: .+\)$/, o.flag);
});

Deno.test("args: config file, then flags on top; comma lists and boolean flags", () => {
  withConfig(
    { lr: 1e-3, steps: 100, lora: { rank: 8, targets: ["q_proj", "v_proj"] }, data: { pack: true } },
    (path) => {
      const a = resolveTrainingArgs({ loraRank: "4", steps: "50", resume: true, pack: "false" }, path);
      assert.equal(a.lr, 1e-3); // from the file
      assert.equal(a.steps, 50); // the flag wins
      assert.equal(a.lora.rank, 4);
      assert.deepEqual(a.lora.targets, ["q_proj", "v_proj"]);
      assert.equal(a.lora.alpha, 32); // default
      assert.equal(a.resume, true);
      assert.equal(a.data.pack, false);
    },
  );
  assert.deepEqual(resolveTrainingArgs({ loraTargets: "k_proj, o_proj" }).lora.targets, ["k_proj", "o_proj"]);
});

Deno.test("args: errors name the field and where the value came from", () => {
  withConfig({ lora: { rank: 0, colour: "red" }, lr: "fast", schedule: "step" }, (path) => {
    let message = "";
    try {
      resolveTrainingArgs({ batchSize: "x" }, path);
    } catch (error) {
      assert.ok(error instanceof ArgsError);
      message = error.message;
    }
    assert.match(message, /--batch-size: must be a whole number ≥ 1/);
    assert.match(message, new RegExp(`${path}: lora.rank: must be a whole number ≥ 1`));
    assert.match(message, new RegExp(`${path}: lr: must be a number > 0`));
    assert.match(message, /schedule: must be one of constant, linear, cosine/);
    assert.match(message, /unknown option "colour" in "lora"/);
  });
  assert.throws(
    () => parseTrainingArgs({ lora: { targets: "q_proj,lm_head" } }),
    /lora.targets: must be "all-linear" or names/,
  );
  assert.throws(() => parseTrainingArgs({ steps: 1.5 }), /steps: must be a whole number ≥ 0/);
  assert.throws(
    () => parseTrainingArgs({ data: { validFraction: 1 } }),
    /data.validFraction: must be a number in \[0, 1\)/,
  );
  withConfig("{ not json", (path) => assert.throws(() => resolveTrainingArgs({}, path), /not valid JSON/));
  withConfig("[1]", (path) => assert.throws(() => resolveTrainingArgs({}, path), /must hold a JSON object/));
  assert.throws(
    () => resolveTrainingArgs({}, "/nonexistent/run.json"),
    /--config \/nonexistent\/run.json: cannot read it/,
  );
});

Deno.test("args: an error shows the value it got", () => {
  assert.throws(() => resolveTrainingArgs({ lr: "fast" }), /--lr: must be a number > 0 \(got "fast"\)/);
  assert.throws(
    () => parseTrainingArgs({ lora: { dropout: 1.5 } }),
    /lora.dropout: must be a number in \[0, 1\) \(got 1.5\)/,
  );
});
