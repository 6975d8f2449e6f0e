/** The generation loop on the tiny Llama (no tokenizer needed beyond a stub): limits, stop tokens, streaming. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { generate } from "../../lib/generate/generate.ts";
import { loadModelConfig } from "../../lib/nn/config.ts";
import { buildModel } from "../../lib/pretrained/load_model.ts";
import { SafetensorsSource } from "../../lib/pretrained/weight_source.ts";
import type { Tokenizer } from "../../lib/text/tokenizer.ts";

const TINY = fileURLToPath(new URL("../fixtures/model/tiny_llama/", import.meta.url));

/** Token t decodes to "<t>": enough to check what the loop streams. */
const stubTokenizer = {
  decode: (ids: readonly number[]) => ids.map((t) => `<${t}>`).join(""),
} as unknown as Tokenizer;

async function tinyModel() {
  using source = SafetensorsSource.open(TINY);
  return buildModel(source, await loadModelConfig(join(TINY, "config.json")));
}

Deno.test("greedy generation equals step-by-step argmax, streams its text, and stops at the limit", async () => {
  using model = await tinyModel();
  const prompt = [5, 17, 42, 7];
  const pieces: string[] = [];
  const out = generate(model, stubTokenizer, prompt, { maxNewTokens: 6, onText: (p) => pieces.push(p) });
  assert.equal(out.ids.length, 6);
  assert.equal(out.finishReason, "length");
  assert.equal(pieces.join(""), out.text);
  // The same tokens from full forwards without a cache.
  const ids = [...prompt];
  for (let i = 0; i < 6; i++) {
    const logits = model.forward(Uint32Array.from(ids), { logits: "last" });
    let best = 0;
    for (let v = 1; v < logits.length; v++) if (logits[v] > logits[best]) best = v;
    ids.push(best);
  }
  assert.deepEqual(out.ids, ids.slice(prompt.length));
});

Deno.test("a stop token ends generation and is not part of the output", async () => {
  using model = await tinyModel();
  const free = generate(model, stubTokenizer, [5, 17, 42, 7], { maxNewTokens: 6 });
  const stopAt = free.ids[2];
  const out = generate(model, stubTokenizer, [5, 17, 42, 7], { maxNewTokens: 6, stopTokens: [stopAt] });
  assert.equal(out.finishReason, "stop");
  assert.deepEqual(out.ids, free.ids.slice(0, free.ids.indexOf(stopAt)));
});

Deno.test("bad generation arguments are refused", async () => {
  using model = await tinyModel();
  assert.throws(() => generate(model, stubTokenizer, [], {}), /the prompt is empty/);
  assert.throws(
    () => generate(model, stubTokenizer, [1], { maxNewTokens: -1 }),
    /maxNewTokens must be an integer/,
  );
  assert.throws(() => generate(model, stubTokenizer, [1], { temperature: Number.NaN }), /temperature/);
});
