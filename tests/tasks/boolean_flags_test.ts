import assert from "node:assert/strict";
import { Command } from "@commander-js/extra-typings";
import { pairBooleans } from "../../tasks/boolean_flags.ts";

const program = () =>
  pairBooleans(
    new Command("t").exitOverride().option("--raw", "raw", false).option("--no-quantize", "f32")
      .option("--out <dir>", "dir"),
  );

Deno.test("boolean flags: every task boolean has --x and --no-x, defaults unchanged", () => {
  assert.deepEqual(program().parse([], { from: "user" }).opts(), { raw: false, quantize: true });
  assert.deepEqual(program().parse(["--raw", "--no-quantize"], { from: "user" }).opts(), {
    raw: true,
    quantize: false,
  });
  assert.deepEqual(
    program().parse(["--raw", "--no-raw", "--no-quantize", "--quantize"], { from: "user" }).opts(),
    {
      raw: false,
      quantize: true,
    },
  );
});

Deno.test("boolean flags: the tasks' own help lists both forms", async () => {
  for (
    const [task, flags] of [
      ["generate", ["--raw", "--no-raw", "--quantize", "--no-quantize"]],
      ["eval_dataset", ["--verbose", "--no-verbose"]],
      ["merge", ["--overwrite", "--no-overwrite", "--quantize", "--no-quantize"]],
      ["chat", ["--quantize", "--no-quantize"]],
      ["serve", ["--quantize", "--no-quantize"]],
    ] as const
  ) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL(`../../tasks/${task}.ts`, import.meta.url).pathname, "--help"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const help = new TextDecoder().decode(out.stdout);
    for (const flag of flags) assert.match(help, new RegExp(`${flag}\\b`), `${task}: ${flag}`);
  }
});
