/**
 * `deno task eval --adapter DIR`: the adapter is applied for the whole evaluation. The outputs the task
 * prints must be the ones exactMatch gives with the adapter in this process, and differ from the base's.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { readRecords } from "../../lib/data/formats.ts";
import { exactMatch } from "../../lib/data/metrics.ts";
import { defaultStopTokens } from "../../lib/generate/generate.ts";
import { readPeftAdapter } from "../../lib/io/peft/read.ts";
import { LoraModel } from "../../lib/lora/model.ts";
import { tinyChat } from "../serve/_server.ts";
import { TINY_ADAPTER, tinyChatModelDir } from "../serve/_tiny_chat_model.ts";
import { chat, jsonlFile } from "./_helpers.ts";

const EVAL = fileURLToPath(new URL("../../tasks/eval_dataset.ts", import.meta.url));

async function runEval(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", EVAL, ...args], stdin: "null" })
    .output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** The `✓|✗ file:line "output"` lines of --verbose, as {source: output}. */
function outputsOf(stderr: string): Record<string, string> {
  const lines = [...stderr.matchAll(/^[✓✗] (\S+:\d+) (".*")$/gm)];
  return Object.fromEntries(lines.map((m) => [m[1], JSON.parse(m[2])]));
}

Deno.test("eval --adapter scores the adapted model, not the base", async () => {
  const dir = await tinyChatModelDir();
  const data = await jsonlFile("eval_adapter.jsonl", [
    chat("What is 2 + 2?", "4"),
    chat("Spell cat.", "c-a-t"),
    chat("Say hi.", "hi"),
  ]);
  const adapted = await runEval(["--model", dir, "--adapter", TINY_ADAPTER, "--data", data, "--verbose"]);
  const base = await runEval(["--model", dir, "--data", data, "--verbose"]);
  assert.equal(adapted.code, 0, adapted.stderr);
  assert.equal(base.code, 0, base.stderr);

  const { model, tokenizer, config } = await tinyChat();
  const { records } = await readRecords(data);
  const lora = LoraModel.fromWeights(model, readPeftAdapter(TINY_ADAPTER, config).layers);
  const stopTokens = defaultStopTokens(tokenizer, config.eosTokenIds);
  const expected = exactMatch(lora, tokenizer, records, { stopTokens, samples: 3 });
  const expectedBase = exactMatch(model, tokenizer, records, { stopTokens, samples: 3 });
  const want = Object.fromEntries(expected.samples.map((s) => [s.source, s.output]));
  const wantBase = Object.fromEntries(expectedBase.samples.map((s) => [s.source, s.output]));
  assert.deepEqual(outputsOf(adapted.stderr), want);
  assert.deepEqual(outputsOf(base.stderr), wantBase);
  assert.notDeepEqual(want, wantBase, "the adapter changes the answers");
  assert.match(adapted.stdout, new RegExp(`exact match: ${expected.correct}/3 `));
  assert.match(adapted.stderr, /adapter .*all_linear/);
});

Deno.test("eval --adapter with a missing directory fails naming the file", async () => {
  const dir = await tinyChatModelDir();
  const data = await jsonlFile("eval_missing.jsonl", [chat("Say hi.", "hi")]);
  const run = await runEval(["--model", dir, "--adapter", "no/such/adapter", "--data", data]);
  assert.equal(run.code, 1);
  assert.match(run.stderr, /eval_dataset: .*no\/such\/adapter\/adapter_config\.json/);
});
