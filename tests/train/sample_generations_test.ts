import assert from "node:assert/strict";
import type { DataRecord } from "../../lib/data/formats.ts";
import { defaultStopTokens } from "../../lib/generate/generate.ts";
import type { KvCache } from "../../lib/nn/kv_cache.ts";
import type { CausalLm } from "../../lib/nn/llama.ts";
import { ChatTemplate } from "../../lib/text/chat_template.ts";
import { sampleGenerations, samplePrompts } from "../../lib/train/sample_generations.ts";
import { smollm2Tokenizer } from "../data/_helpers.ts";

const tokenizer = await smollm2Tokenizer();
const template = ChatTemplate.fromTokenizer(tokenizer);

/** A model that answers every prompt with `answer` then <|im_end|>, and records the prompts it saw. */
class Scripted implements CausalLm {
  readonly prompts: number[][] = [];
  #queue: number[] = [];
  constructor(readonly answer: string) {}
  newCache(): KvCache {
    return {} as KvCache;
  }
  forward(ids: Uint32Array): Float32Array {
    if (ids.length > 1) {
      this.prompts.push([...ids]);
      this.#queue = [
        ...tokenizer.encode(this.answer, { addSpecialTokens: false }),
        tokenizer.tokenToId("<|im_end|>")!,
      ];
    }
    const logits = new Float32Array(tokenizer.vocabSize);
    logits[this.#queue.shift()!] = 1;
    return logits;
  }
}

Deno.test("samples: user prompts go through the chat template for chat data, raw for completions", () => {
  const chat = samplePrompts(tokenizer, { format: "chat", prompts: ["Hi there"], records: [] });
  assert.equal(
    tokenizer.decode(chat[0].ids),
    template.render([{ role: "user", content: "Hi there" }], { addGenerationPrompt: true }),
  );
  const raw = samplePrompts(tokenizer, { format: "completions", prompts: ["Q: 2+2?\nA:"], records: [] });
  assert.deepEqual(raw[0], { label: "Q: 2+2?\nA:", ids: tokenizer.encode("Q: 2+2?\nA:") });
});

Deno.test("samples: without prompts, the first eval records' prompts; greedy answers up to the stop token", () => {
  const records: DataRecord[] = [1, 2, 3].map((line) => ({
    file: "v.jsonl",
    line,
    format: "chat",
    messages: [{ role: "user", content: `q${line}` }, { role: "assistant", content: `a${line}` }],
  }));
  const prompts = samplePrompts(tokenizer, { format: "chat", prompts: [], records });
  assert.deepEqual(prompts.map((p) => p.label), ["v.jsonl:1", "v.jsonl:2"]);
  const model = new Scripted("Paris.");
  const samples = sampleGenerations(model, tokenizer, prompts, {
    maxNewTokens: 10,
    stopTokens: defaultStopTokens(tokenizer, []),
  });
  assert.deepEqual(samples, [{ label: "v.jsonl:1", output: "Paris." }, {
    label: "v.jsonl:2",
    output: "Paris.",
  }]);
  assert.equal(
    tokenizer.decode(model.prompts[1]),
    template.render([{ role: "user", content: "q2" }], { addGenerationPrompt: true }),
  );
});
