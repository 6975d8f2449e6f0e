/**
 * `deno task chat` as a user runs it, with piped input: one message per line, commands between them, only
 * the answers on stdout. The expected answers come from a ChatSession driven the same way in this process.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { ChatSession } from "../../lib/generate/chat_session.ts";
import { readPeftAdapter } from "../../lib/io/peft/read.ts";
import { LoraModel } from "../../lib/lora/model.ts";
import { ChatTemplate } from "../../lib/text/chat_template.ts";
import { tinyChat } from "../serve/_server.ts";
import { TINY_ADAPTER, tinyChatModelDir } from "../serve/_tiny_chat_model.ts";

const CHAT = fileURLToPath(new URL("../../tasks/chat.ts", import.meta.url));

async function runChat(args: string[], input: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CHAT, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  const out = await child.output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

Deno.test("piped chat: history across lines, /reset, /system, and the adapter applied", async () => {
  const dir = await tinyChatModelDir();
  const input =
    ["Hello!", "Tell me more.", "/reset", "Hello!", "/system Answer in French.", "Hello!", "/exit", "ignored"]
      .join("\n") + "\n";
  const run = await runChat(["--model", dir, "--adapter", TINY_ADAPTER, "--max-new-tokens", "8"], input);
  assert.equal(run.code, 0, run.stderr);

  const { model, tokenizer, config } = await tinyChat();
  const lora = LoraModel.fromWeights(model, readPeftAdapter(TINY_ADAPTER, config).layers);
  const session = new ChatSession(lora, tokenizer, {
    template: ChatTemplate.fromTokenizer(tokenizer),
    stopTokens: [257],
    contextLength: config.maxPositionEmbeddings,
  });
  const answers: string[] = [];
  const say = async (text: string) => answers.push((await session.say(text, { maxNewTokens: 8 })).text);
  await say("Hello!");
  await say("Tell me more.");
  session.reset();
  await say("Hello!");
  session.system = "Answer in French.";
  await say("Hello!");
  assert.equal(answers[0], answers[2], "after /reset the first answer comes again");
  assert.notEqual(answers[1], answers[0]);
  assert.notEqual(answers[3], answers[0], "the system message changes the prompt");
  assert.equal(run.stdout, answers.map((a) => a + "\n").join(""));
  assert.match(run.stderr, /\(history cleared\)/);
  assert.match(run.stderr, /\(system message set\)/);
});

Deno.test("chat: a missing adapter is an error naming the file, exit code 1", async () => {
  const dir = await tinyChatModelDir();
  const run = await runChat(["--model", dir, "--adapter", "/nonexistent/adapter"], "hi\n");
  assert.equal(run.code, 1);
  assert.match(run.stderr, /chat: .*\/nonexistent\/adapter\/adapter_config\.json/);
  assert.equal(run.stdout, "");
});
