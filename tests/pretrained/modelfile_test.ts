/** Ollama Modelfiles (lib/pretrained/export/modelfile.ts): family detection, stops, system prompt. */
import assert from "node:assert/strict";
import { chatFamily, defaultSystemPrompt, modelfileText } from "../../lib/pretrained/export/modelfile.ts";

const SMOLLM2 = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}" +
  "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}" +
  "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}";
const LLAMA3 = "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}";

Deno.test("ChatML (SmolLM2): TEMPLATE, stops, and the template's own system prompt", () => {
  const { text, family } = modelfileText({
    from: "./model.gguf",
    chatTemplate: SMOLLM2,
    stopTokens: ["<|im_end|>"],
  });
  assert.equal(family, "chatml");
  const lines = text.split("\n");
  assert.equal(lines[0], "FROM ./model.gguf");
  assert.match(text, /TEMPLATE """\{\{ if \.System \}\}<\|im_start\|>system\n\{\{ \.System \}\}<\|im_end\|>/);
  assert.match(text, /<\|im_start\|>assistant\n\{\{ \.Response \}\}<\|im_end\|>\n"""/);
  assert.deepEqual(lines.filter((l) => l.startsWith("PARAMETER stop")), [
    'PARAMETER stop "<|im_start|>"',
    'PARAMETER stop "<|im_end|>"',
  ]);
  assert.ok(
    text.includes('SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""'),
  );
  // A given system prompt wins; quotes that would end the block are escaped.
  const own = modelfileText({ from: "./m.gguf", chatTemplate: SMOLLM2, system: 'Say """hi"""' }).text;
  assert.ok(own.includes('SYSTEM """Say \\"\\"\\"hi\\"\\"\\""""'));
});

Deno.test("Llama 3 and unknown templates", () => {
  assert.equal(chatFamily(LLAMA3), "llama3");
  const { text } = modelfileText({ from: "./m.gguf", chatTemplate: LLAMA3 });
  assert.match(
    text,
    /<\|start_header_id\|>assistant<\|end_header_id\|>\n\n\{\{ \.Response \}\}<\|eot_id\|>"""/,
  );
  assert.match(text, /PARAMETER stop "<\|eot_id\|>"/);
  assert.equal(defaultSystemPrompt(LLAMA3), undefined);
  const plain = modelfileText({ from: "./m.gguf", chatTemplate: "{{ messages }}", stopTokens: ["</s>"] });
  assert.equal(plain.family, undefined);
  assert.equal(plain.text, 'FROM ./m.gguf\nPARAMETER stop "</s>"\n');
  assert.equal(modelfileText({ from: "./m.gguf", chatTemplate: null }).text, "FROM ./m.gguf\n");
});
