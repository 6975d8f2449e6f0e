/**
 * The default model end to end against an independent implementation on the same weights: transformers
 * loading the same GGUF, with bitsandbytes' NF4 applied to the block linears and the embeddings rounded to
 * bf16 exactly as our loader does (tests/fixtures/model/make_model_fixtures.py). Our chat rendering and
 * tokenization must give the same prompt ids, the logits of the first answer token must agree closely, and
 * greedy decoding must produce the same tokens.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { defaultModelPath } from "../../lib/io/default_model.ts";
import { SafetensorsReader } from "../../lib/io/safetensors/reader.ts";
import { generate } from "../../lib/generate/generate.ts";
import { loadModel } from "../../lib/pretrained/load_model.ts";
import { ChatTemplate } from "../../lib/text/chat_template.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/model/", import.meta.url));
const reference = JSON.parse(readFileSync(`${FIXTURES}smollm2_greedy.json`, "utf8")) as {
  results: {
    messages: { role: string; content: string }[];
    rendered_prompt: string;
    prompt_ids: number[];
    generated_ids: number[];
  }[];
  generation: { max_new_tokens: number; eos_token_id: number };
};

Deno.test("SmolLM2-135M-Instruct: prompt ids, first-token logits and greedy continuations equal the reference", async () => {
  const { model, tokenizer } = await loadModel(await defaultModelPath(), { progress: false });
  try {
    const template = ChatTemplate.fromTokenizer(tokenizer);
    for (const [i, r] of reference.results.entries()) {
      const rendered = template.render(r.messages, { addGenerationPrompt: true });
      assert.equal(rendered, r.rendered_prompt, `prompt ${i}: chat template`);
      const ids = tokenizer.encode(rendered, { addSpecialTokens: false });
      assert.deepEqual(ids, r.prompt_ids, `prompt ${i}: token ids`);
      if (i === 0) {
        using want = SafetensorsReader.open(`${FIXTURES}smollm2_prompt0_logits.safetensors`);
        const logits = model.forward(Uint32Array.from(ids), { logits: "last" });
        const expected = want.readTensorF32("logits").data;
        let worst = 0;
        for (let v = 0; v < expected.length; v++) worst = Math.max(worst, Math.abs(logits[v] - expected[v]));
        // f32 sums in another order over 30 layers: agreement to ~1e-3 of logits of magnitude ~30.
        assert.ok(worst < 2e-2, `first-token logits differ by ${worst}`);
      }
      const out = generate(model, tokenizer, ids, {
        maxNewTokens: reference.generation.max_new_tokens,
        stopTokens: [reference.generation.eos_token_id],
      });
      const want = r.generated_ids.filter((id) => id !== reference.generation.eos_token_id);
      assert.deepEqual(
        out.ids,
        want,
        `prompt ${i}: greedy tokens\n got: ${out.text}\nwant: ${tokenizer.decode(want)}`,
      );
    }
  } finally {
    model.close();
  }
});
