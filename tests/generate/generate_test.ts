/** The generation loop on the tiny Llama (no tokenizer needed beyond a stub): limits, stop tokens, streaming. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { generate, generateAsync } from "../../lib/generate/generate.ts";
import type { CausalLm } from "../../lib/nn/llama.ts";
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

Deno.test("a stop sequence ends generation; the text stops before it and the stream never shows it", async () => {
  using model = await tinyModel();
  const free = generate(model, stubTokenizer, [5, 17, 42, 7], { maxNewTokens: 8 });
  const stop = `<${free.ids[3]}>`;
  const cut = free.text.indexOf(stop);
  const pieces: string[] = [];
  const out = generate(model, stubTokenizer, [5, 17, 42, 7], {
    maxNewTokens: 8,
    stopSequences: [stop],
    onText: (p) => pieces.push(p),
  });
  assert.equal(out.finishReason, "stop");
  assert.equal(out.text, free.text.slice(0, cut));
  assert.equal(pieces.join(""), out.text);
  assert.deepEqual(out.ids, free.ids.slice(0, out.ids.length), "same tokens up to the stop");
});

Deno.test("generateAsync gives the same tokens as generate and lets timers run between tokens", async () => {
  using model = await tinyModel();
  const opts = { maxNewTokens: 10, temperature: 0.9, topP: 0.9, seed: 3 };
  const sync = generate(model, stubTokenizer, [5, 17, 42, 7], opts);
  let turns = 0;
  const ticker = setInterval(() => turns++, 0);
  const slow = { ...model, newCache: model.newCache.bind(model), forward: slowed(model) };
  const out = await generateAsync(slow, stubTokenizer, [5, 17, 42, 7], { ...opts, turnEveryMs: 0 });
  clearInterval(ticker);
  assert.deepEqual(out.ids, sync.ids);
  assert.equal(out.text, sync.text);
  assert.ok(turns > 0, "the event loop ran while generating");
});

Deno.test("aborting generateAsync ends it before the next token with finishReason abort", async () => {
  using model = await tinyModel();
  const controller = new AbortController();
  const pieces: string[] = [];
  const out = await generateAsync(model, stubTokenizer, [5, 17, 42, 7], {
    maxNewTokens: 50,
    onText: (p) => {
      pieces.push(p);
      if (pieces.length === 3) controller.abort();
    },
    signal: controller.signal,
  });
  assert.equal(out.finishReason, "abort");
  assert.equal(out.ids.length, 3);
  assert.equal(pieces.join(""), out.text);
  await assert.rejects(
    generateAsync(model, stubTokenizer, [5], { signal: controller.signal }),
    (e: Error) => e.name === "AbortError",
    "an already aborted signal refuses to start",
  );
});

/** The model's forward, taking at least 2 ms (so a timer can fire between tokens). */
function slowed(model: CausalLm): CausalLm["forward"] {
  return (ids, opts) => {
    const until = performance.now() + 2;
    while (performance.now() < until) { /* busy: the CPU is what generation holds */ }
    return model.forward(ids, opts);
  };
}
