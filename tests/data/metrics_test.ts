import assert from "node:assert/strict";
import type { DataRecord } from "../../lib/data/formats.ts";
import { exactMatch, type GenerationModel } from "../../lib/data/metrics.ts";
import { smollm2Tokenizer } from "./_helpers.ts";

const tokenizer = await smollm2Tokenizer();
const END = tokenizer.tokenToId("<|im_end|>")!;

/**
 * A stand-in model that "answers" each prompt with the next scripted text (then <|im_end|>), and records
 * the prompts and token budgets it was given.
 */
function scriptedModel(answers: string[]) {
  const prompts: string[] = [];
  const budgets: number[] = [];
  let script: number[] = [];
  const model = {
    newCache: (capacity: number) => ({ capacity }),
    forward(ids: Uint32Array, opts: { cache: { capacity: number } }) {
      if (ids.length > 1) {
        prompts.push(tokenizer.decode([...ids]));
        budgets.push(opts.cache.capacity - ids.length);
        script = [...tokenizer.encode(answers.shift()!, { addSpecialTokens: false }), END];
      }
      const logits = new Float32Array(tokenizer.vocabSize);
      logits[script.shift() ?? END] = 1;
      return logits;
    },
  };
  return { model: model as unknown as GenerationModel, prompts, budgets };
}

const at = { file: "v.jsonl" };
const records: DataRecord[] = [
  {
    ...at,
    line: 1,
    format: "chat",
    messages: [{ role: "user", content: "5 March 2021" }, { role: "assistant", content: "2021-03-05" }],
  },
  {
    ...at,
    line: 2,
    format: "chat",
    messages: [{ role: "user", content: "1/2/03" }, { role: "assistant", content: "2003-02-01" }],
  },
  { ...at, line: 3, format: "completions", prompt: "Q: 2+2?\nA:", completion: " 4" },
];

Deno.test("exactMatch: greedy answers compared with the references, whitespace stripped", () => {
  const { model, prompts, budgets } = scriptedModel(["2021-03-05", "The date is 2003-02-01.", "4 "]);
  const seen: number[] = [];
  const report = exactMatch(model, tokenizer, records, { samples: 2, onResult: (_, i) => seen.push(i) });
  assert.equal(report.total, 3);
  assert.equal(report.correct, 2);
  assert.equal(report.rate, 2 / 3);
  assert.deepEqual(seen, [0, 1, 2]);
  assert.deepEqual(report.samples, [
    { source: "v.jsonl:1", reference: "2021-03-05", output: "2021-03-05", match: true },
    { source: "v.jsonl:2", reference: "2003-02-01", output: "The date is 2003-02-01.", match: false },
  ]);
  // Chat prompts end with the generation prompt; completion prompts are the raw prompt.
  assert.ok(prompts[0].endsWith("<|im_start|>user\n5 March 2021<|im_end|>\n<|im_start|>assistant\n"));
  assert.equal(prompts[2], "Q: 2+2?\nA:");
  // The token budget follows the reference's length plus the slack.
  const refTokens = tokenizer.encode("2021-03-05", { addSpecialTokens: false }).length;
  assert.equal(budgets[0], refTokens + 8);
});

Deno.test("exactMatch: a long answer is cut at the budget and counts as a miss", () => {
  const { model } = scriptedModel(["2021-03-05 and then a great deal more text that goes on and on"]);
  const report = exactMatch(model, tokenizer, records.slice(0, 1), { slackTokens: 2 });
  assert.equal(report.correct, 0);
  assert.ok(report.samples[0].output.startsWith("2021-03-05 and"));
  assert.throws(() => exactMatch(model, tokenizer, []), /no records/);
});
