/**
 * `deno task serve` as a process: it prints its URL, answers, and on SIGTERM finishes the answer in
 * flight before exiting 0; bad adapter directories stop it at start-up with the file named.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { TINY_ADAPTER, tinyChatModelDir } from "./_tiny_chat_model.ts";

const SERVE = fileURLToPath(new URL("../../tasks/serve.ts", import.meta.url));

function startServe(args: string[]) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-no-legacy-abort", SERVE, "--port", "0", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Reads stdout until the "serving … at <url>/v1" line. */
async function servingUrl(stdout: ReadableStream<Uint8Array>): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of stdout) {
    text += decoder.decode(chunk, { stream: true });
    const match = / at (http:\/\/127\.0\.0\.1:\d+)\/v1\n/.exec(text);
    if (match) return match[1];
  }
  throw new Error(`the server printed no URL: ${text}`);
}

Deno.test("serve: SIGTERM lets the streaming answer in flight finish, then exits 0", async () => {
  const dir = await tinyChatModelDir();
  const child = startServe(["--model", dir, "--adapter", TINY_ADAPTER]);
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let log = "";
  const logDone = (async () => {
    for (let r = await stderr.read(); !r.done; r = await stderr.read()) log += r.value;
  })();
  try {
    const url = await servingUrl(child.stdout);
    const models = await (await fetch(`${url}/v1/models`)).json();
    assert.deepEqual(
      models.data.map((m: { id: string }) => m.id),
      ["base", "all_linear"],
      "a bare dir names itself",
    );
    const response = await fetch(`${url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({
        model: "all_linear",
        prompt: "abc",
        max_tokens: 200,
        temperature: 0,
        stream: true,
      }),
    });
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let body = (await reader.read()).value ?? "";
    child.kill("SIGTERM");
    for (let r = await reader.read(); !r.done; r = await reader.read()) body += r.value;
    assert.match(body, /data: \[DONE\]\n\n$/, "the stream ended properly");
    const events = body.split("\n\n").filter((e) => e.startsWith("data: {"));
    const last = JSON.parse(events.at(-1)!.slice(6));
    assert.ok(["length", "stop"].includes(last.choices[0].finish_reason), JSON.stringify(last));
    const status = await child.status;
    await logDone;
    assert.equal(status.code, 0, log);
    const [signalled, finished] = [log.indexOf("shutting down"), log.search(/cmpl-\w+: \d+ generated/)];
    assert.ok(signalled >= 0 && finished > signalled, `the signal came while generating:\n${log}`);
    assert.match(log, /stopped\n$/);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }
});

Deno.test("serve: an adapter that is not one stops start-up with the file named", async () => {
  const dir = await tinyChatModelDir();
  const child = startServe(["--model", dir, "--adapter", `mine=${dir}`]);
  const out = await child.output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 1);
  assert.match(stderr, /serve: .*adapter_config\.json: cannot read the adapter config/);
});
