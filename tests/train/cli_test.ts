import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CommanderError } from "commander";
import { ArgsError } from "../../lib/train/args.ts";
import { FLAG_ALIASES, normalizeArgv } from "../../lib/train/cli_aliases.ts";
import { finetuneCommand, parseFinetuneArgv } from "../../lib/train/cli.ts";
import { userDirectory } from "../../lib/train/user_paths.ts";

const quiet = () => finetuneCommand().configureOutput({ writeErr: () => {}, writeOut: () => {} });
const parse = (argv: string[], base?: string) => parseFinetuneArgv(argv, base, quiet());

function inTempDir(fn: (dir: string) => void): void {
  const dir = Deno.makeTempDirSync({ prefix: "cli_test_" });
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true });
  }
}

Deno.test("cli: mlx-lm and TRL names map to the canonical options, snake_case included", () => {
  const a = parse([
    "--learning-rate",
    "1e-3",
    "--iters",
    "30",
    "--per_device_train_batch_size=2",
    "--gradient_accumulation_steps",
    "3",
    "--lora_r",
    "8",
    "--mask-prompt",
    "--grad-checkpoint",
  ]);
  assert.equal(a.lr, 1e-3);
  assert.equal(a.steps, 30);
  assert.equal(a.batchSize, 2);
  assert.equal(a.gradAccumulation, 3);
  assert.equal(a.lora.rank, 8);
  assert.equal(a.data.trainOnPrompt, false);
  assert.equal(a.gradientCheckpointing, true);
  assert.deepEqual(normalizeArgv(["--data", "d", "--", "--data"]), ["--data-dir", "d", "--", "--data"]);
  // Every alias points at a real flag.
  const flags = new Set(finetuneCommand().options.map((o) => o.long));
  for (const [alias, flag] of Object.entries(FLAG_ALIASES)) assert.ok(flags.has(flag), `${alias} → ${flag}`);
});

Deno.test("cli: booleans are --x / --no-x; unknown flags and the old [bool] value are refused", () => {
  assert.equal(parse(["--resume"]).resume, true);
  assert.equal(parse(["--no-keep-best"]).keepBest, false);
  assert.equal(parse(["--pack", "--no-pack"]).data.pack, false);
  assert.throws(
    () => parse(["--learnig-rate", "1"]),
    (e: unknown) => e instanceof CommanderError && /unknown option '--learnig-rate'/.test(e.message),
  );
  assert.throws(
    () => parse(["--resume", "true"]),
    (e: unknown) => e instanceof CommanderError && /too many arguments|unknown command/.test(e.message),
  );
});

Deno.test("cli: -c takes YAML (snake_case, aliases, data: DIR) with flags on top; YAML errors name the line", () => {
  inTempDir((dir) => {
    const yaml = join(dir, "run.yaml");
    writeFileSync(
      yaml,
      [
        "learning_rate: 5.0e-4",
        "iters: 20",
        "data: my_data",
        "lora:",
        "  rank: 4",
        "sample_prompt:",
        "  - Hi",
        "  - Yo",
        "",
      ]
        .join("\n"),
    );
    const a = parse(["-c", yaml, "--iters", "40"], dir);
    assert.equal(a.lr, 5e-4);
    assert.equal(a.steps, 40);
    assert.equal(a.lora.rank, 4);
    assert.equal(a.data.dir, join(dir, "my_data")); // relative to the user's directory
    assert.deepEqual(a.samplePrompt, ["Hi", "Yo"]);
    writeFileSync(yaml, "lr: 1e-3\nsteps: [oops\n");
    assert.throws(
      () => parse(["-c", yaml]),
      (e: unknown) => e instanceof ArgsError && new RegExp(`^${yaml}:\\d+: not valid YAML`).test(e.message),
    );
    writeFileSync(yaml, "colour: red\n");
    assert.throws(() => parse(["--config", yaml]), /unknown option "colour"/);
  });
});

Deno.test("cli: relative paths resolve against INIT_CWD; model specs, defaults and absolute paths are kept", () => {
  inTempDir((dir) => {
    mkdirSync(join(dir, "models", "tiny"), { recursive: true });
    const a = parse(
      [
        "--train",
        "mine.jsonl",
        "--valid",
        "../v.csv",
        "--output-dir",
        "runs/a",
        "--model",
        "models/tiny",
        "--test",
        "/abs/t.parquet",
      ],
      dir,
    );
    assert.equal(a.data.train, join(dir, "mine.jsonl"));
    assert.equal(a.data.valid, join(dir, "..", "v.csv"));
    assert.equal(a.data.test, "/abs/t.parquet");
    assert.equal(a.outputDir, join(dir, "runs/a"));
    // The model spec is kept: resolveModel(spec, {cwd: the user's directory}) tells a path from a hub id.
    assert.equal(a.model, "models/tiny");
    assert.equal(parse(["--model", "HuggingFaceTB/SmolLM2-135M"], dir).model, "HuggingFaceTB/SmolLM2-135M");
    const defaults = parse([], dir);
    assert.equal(defaults.data.train, "data/dates/train.jsonl");
    assert.equal(defaults.outputDir, "out/finetune");
    assert.equal(parse(["--sample-prompt", "a", "--sample-prompt", "b"], dir).samplePrompt.length, 2);
    assert.deepEqual(parse(["--columns", "prompt=q,completion=a"], dir).data.columns, {
      prompt: "q",
      completion: "a",
    });
    assert.throws(() => parse(["--columns", "prompt"], dir), /--columns: must be key=column pairs/);
  });
  const env = (value?: string) => ({ get: (name: string) => (name === "INIT_CWD" ? value : undefined) });
  assert.equal(userDirectory(env("/home/me/project"), "/repo"), "/home/me/project");
  assert.equal(userDirectory(env(undefined), "/repo"), "/repo");
});

Deno.test("cli: the README's YAML config is valid as written", () => {
  const readme = Deno.readTextFileSync(new URL("../../README.md", import.meta.url));
  const yaml = /```yaml\n([\s\S]*?)```/.exec(readme)![1];
  inTempDir((dir) => {
    writeFileSync(join(dir, "run.yaml"), yaml);
    const a = parse(["-c", "run.yaml"], dir);
    assert.equal(a.model, "HuggingFaceTB/SmolLM2-360M-Instruct");
    assert.equal(a.data.dir, join(dir, "my_dir"));
    assert.equal(a.lr, 1e-4);
    assert.equal(a.steps, 600);
    assert.deepEqual([a.lora.rank, a.lora.alpha], [8, 16]);
    assert.equal(a.sampleEvery, 100);
    assert.deepEqual(a.samplePrompt, ["What is the capital of Peru?"]);
  });
});
