/** Releasing generated text: whole characters only, nothing that may start a stop sequence, nothing after one. */
import assert from "node:assert/strict";
import { TextStream } from "../../lib/generate/text_stream.ts";

/** Feeds growing prefixes of `steps` and returns the pieces released plus the final state. */
function feed(stream: TextStream, steps: string[]) {
  const pieces = steps.map((decoded) => stream.update(decoded));
  return { pieces, text: stream.text, stopped: stream.stopped };
}

Deno.test("without stop sequences every whole step is released at once", () => {
  const stream = new TextStream();
  assert.deepEqual(feed(stream, ["a", "ab", "abc"]).pieces, ["a", "b", "c"]);
  assert.equal(stream.finish("abc"), "");
});

Deno.test("a broken last character is held until it is whole", () => {
  const stream = new TextStream();
  assert.deepEqual(feed(stream, ["x", "x\uFFFD", "xé"]).pieces, ["x", "", "é"]);
});

Deno.test("a possible start of a stop sequence is held, then released when it turns out not to be one", () => {
  const stream = new TextStream(["END"]);
  const { pieces, stopped } = feed(stream, ["ok E", "ok EN", "ok ENs"]);
  assert.deepEqual(pieces, ["ok ", "", "ENs"]);
  assert.equal(stopped, false);
  assert.equal(stream.finish("ok ENs!"), "!");
  assert.equal(stream.text, "ok ENs!");
});

Deno.test("the text ends before the first stop sequence, which is never released", () => {
  const stream = new TextStream(["\n\n", "STOP"]);
  const { pieces, text, stopped } = feed(stream, ["one\n", "one\nST", "one\nSTOP two\n\n"]);
  assert.deepEqual(pieces, ["one", "\n", ""]);
  assert.equal(text, "one\n");
  assert.equal(stopped, true);
  assert.equal(stream.update("one\nSTOP two\n\n more"), "", "nothing after the stop");
  assert.equal(stream.finish("whatever"), "");
  assert.equal(stream.text, "one\n");
});

Deno.test("held text ends up in the pieces exactly once", () => {
  const stream = new TextStream(["abc"]);
  const steps = ["a", "ab", "abx", "abxa", "abxab", "abxabab"];
  const pieces = steps.map((s) => stream.update(s));
  pieces.push(stream.finish("abxabab"));
  assert.equal(pieces.join(""), "abxabab");
});

Deno.test("empty stop sequences are refused", () => {
  assert.throws(() => new TextStream([""]), /non-empty string/);
});
