import assert from "node:assert/strict";
import { generationView } from "../../lib/display/generation.ts";
import { DISPLAY } from "../../lib/display/jupyter.ts";
import type { Generation } from "../../lib/generate/generate.ts";

const GEN: Generation = {
  ids: [1, 2, 3, 4],
  text: "<i>Paris</i> & more",
  finishReason: "stop",
  promptTokens: 25,
  promptSeconds: 0.1,
  generateSeconds: 0.5,
};

Deno.test("generationView: prompt, answer and speed, as text and escaped HTML", () => {
  const view = generationView("Capital of <France>?", GEN, { label: "before fine-tuning" });
  assert.equal(view.statsLine(), "4 tokens in 0.50 s (8.0 tok/s), prompt 25 tokens, stopped at an end token");
  const bundle = view[DISPLAY]();
  assert.equal(
    bundle["text/plain"],
    "before fine-tuning\nprompt: Capital of <France>?\nanswer: <i>Paris</i> & more\n" +
      "(4 tokens in 0.50 s (8.0 tok/s), prompt 25 tokens, stopped at an end token)",
  );
  assert.doesNotMatch(bundle["text/html"], /<i>|<France>/);
  assert.match(bundle["text/html"], /&lt;i&gt;Paris&lt;\/i&gt; &amp; more/);
  assert.match(bundle["text/html"], /<b>before fine-tuning<\/b>/);
});

Deno.test("generationView says when the token limit cut the answer", () => {
  const view = generationView("q", { ...GEN, finishReason: "length", generateSeconds: 0 });
  assert.equal(view.statsLine(), "4 tokens in 0.00 s, prompt 25 tokens, stopped at the token limit");
  assert.doesNotMatch(view[DISPLAY]()["text/plain"], /^before/);
});
