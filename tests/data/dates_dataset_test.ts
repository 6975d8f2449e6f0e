import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { loadDataset } from "../../lib/data/dataset.ts";
import { makeDateDataset } from "../../data/dates/make_dataset.ts";
import { smollm2Tokenizer } from "./_helpers.ts";

const file = (name: string) => fileURLToPath(new URL(`../../data/dates/${name}`, import.meta.url));

Deno.test("data/dates: the committed files are what make_dataset.ts generates", async () => {
  const made = makeDateDataset();
  assert.equal(await readFile(file("train.jsonl"), "utf8"), made.train, "rerun data/dates/make_dataset.ts");
  assert.equal(await readFile(file("valid.jsonl"), "utf8"), made.valid, "rerun data/dates/make_dataset.ts");
});

Deno.test("data/dates: loads as chats within 128 tokens, answers are valid ISO dates, no overlap", async () => {
  const tokenizer = await smollm2Tokenizer();
  const data = await loadDataset({
    tokenizer,
    train: file("train.jsonl"),
    valid: file("valid.jsonl"),
    maxLength: 128,
  });
  assert.equal(data.format, "chat");
  assert.ok(data.train.length >= 300 && data.valid.length >= 50);
  assert.equal(data.stats.train.truncated + data.stats.valid.truncated, 0);
  const answer = (ex: (typeof data.train)[number]) => tokenizer.decode(ex.ids.filter((_, i) => ex.mask[i]));
  const seen = new Set<string>();
  for (const ex of [...data.train, ...data.valid]) {
    const trained = answer(ex);
    const iso = trained.replace(/<\|im_end\|>$/, "");
    assert.match(trained, /^\d{4}-\d{2}-\d{2}<\|im_end\|>$/);
    const date = new Date(`${iso}T00:00:00Z`);
    assert.equal(date.toISOString().slice(0, 10), iso, `${iso} is not a real date`);
    assert.ok(!seen.has(iso), `${iso} occurs twice`);
    seen.add(iso);
  }
});
