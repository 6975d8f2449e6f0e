import assert from "node:assert/strict";
import { type ChatMessage, ChatTemplate, ChatTemplateError } from "../../lib/text/chat_template.ts";
import { loadGgufTokenizer } from "../../lib/text/gguf_tokenizer.ts";
import { Tokenizer } from "../../lib/text/tokenizer.ts";
import { loadTokenizerConfig } from "../../lib/text/tokenizer_config.ts";
import { fixturePath, readFixture } from "./_fixtures.ts";
import { smollm2Path } from "./_smollm2.ts";

interface ChatExpected {
  conversations: Record<string, ChatMessage[]>;
  templates: Record<string, {
    bos_token: string | null;
    eos_token: string | null;
    pad_token: string | null;
    renders: {
      conversation: string;
      add_generation_prompt: boolean;
      extra: Record<string, unknown>;
      text: string;
    }[];
  }>;
}

const expected = await readFixture<ChatExpected>("chat_templates_expected.json");

function assertRendersLikeTransformers(template: ChatTemplate, name: string) {
  for (const render of expected.templates[name].renders) {
    const actual = template.render(expected.conversations[render.conversation], {
      addGenerationPrompt: render.add_generation_prompt,
      variables: render.extra,
    });
    assert.equal(actual, render.text, `${name} / ${render.conversation} / ${render.add_generation_prompt}`);
  }
}

Deno.test("SmolLM2's template from the GGUF renders like transformers' apply_chat_template", async () => {
  const tokenizer = await loadGgufTokenizer(await smollm2Path());
  const template = ChatTemplate.fromTokenizer(tokenizer);
  assert.equal(template.tokens.eosToken, expected.templates.smollm2.eos_token);
  assertRendersLikeTransformers(template, "smollm2");
});

Deno.test("Qwen3's template renders like transformers, with and without enable_thinking", async () => {
  const settings = await loadTokenizerConfig(fixturePath("qwen3_tokenizer_config.json"));
  const template = new ChatTemplate(settings.chatTemplate!, {
    bosToken: settings.bosToken,
    eosToken: settings.eosToken,
    padToken: settings.padToken,
  });
  assertRendersLikeTransformers(template, "qwen3");
  assertRendersLikeTransformers(template, "qwen3_no_thinking");
});

Deno.test("special tokens reach the template; a missing one is undefined, not 'None'", () => {
  const template = new ChatTemplate("[{{ bos_token }}|{{ eos_token }}|{{ bos_token is defined }}]", {
    eosToken: "</s>",
  });
  assert.equal(template.render([]), "[|</s>|false]");
});

Deno.test("raise_exception in a template becomes a ChatTemplateError carrying its message", () => {
  const template = new ChatTemplate(
    "{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}" +
      "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}",
    {},
    "strict template",
  );
  assert.equal(template.render([{ role: "user", content: "hi" }]), "");
  assert.throws(
    () => template.render([{ role: "system", content: "hi" }]),
    (error: Error) =>
      error instanceof ChatTemplateError &&
      error.message ===
        "strict template: the chat template failed: Only user and assistant roles are supported!",
  );
});

Deno.test("bad input: a template that does not parse, or a tokenizer without one", async () => {
  assert.throws(
    () => new ChatTemplate("{% for x in %}", {}, "broken.jinja"),
    /^ChatTemplateError: broken.jinja: cannot parse/,
  );
  const bare = await Tokenizer.fromFile(fixturePath("llama2_tokenizer.json"));
  assert.throws(
    () => ChatTemplate.fromTokenizer(bare),
    /llama2_tokenizer.json: the tokenizer has no chat template/,
  );
});
