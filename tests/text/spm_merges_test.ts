import assert from "node:assert/strict";
import { mergesFromScores } from "../../lib/text/spm_merges.ts";
import { readFixture } from "./_fixtures.ts";

Deno.test("every cut into two known tokens is a merge, best-scoring token first", () => {
  const tokens = ["a", "b", "c", "ab", "bc", "abc"];
  const scores = [0, 0, 0, -2, -1, -3];
  assert.deepEqual(mergesFromScores(tokens, scores), [
    ["b", "c"], // "bc" scores best
    ["a", "b"],
    ["ab", "c"], // equal scores: the longer left piece first
    ["a", "bc"],
  ]);
});

Deno.test("cuts fall between code points, never inside a surrogate pair", () => {
  const tokens = ["🤗", "x", "🤗x", "\ud83e", "\udd17x"];
  assert.deepEqual(mergesFromScores(tokens, [0, 0, -1, 0, 0]), [["🤗", "x"]]);
});

Deno.test("a token listed twice yields its merges once", () => {
  assert.deepEqual(mergesFromScores(["a", "b", "ab", "ab"], [0, 0, -1, -1]), [["a", "b"]]);
});

Deno.test("the llama2 vocabulary with scores in merge order gives back its tokenizer.json merges", async () => {
  const json = await readFixture<{ model: { vocab: Record<string, number>; merges: string[] } }>(
    "llama2_tokenizer.json",
  );
  const { vocab, merges } = json.model;
  const tokens: string[] = [];
  for (const [token, id] of Object.entries(vocab)) tokens[id] = token;
  const scores = tokens.map(() => -1e9);
  merges.forEach((merge, rank) => {
    const id = vocab[merge.replace(" ", "")];
    scores[id] = Math.max(scores[id], -rank);
  });
  const derived = mergesFromScores(tokens, scores).map(([left, right]) => `${left} ${right}`);
  // Merges that make the same token share a score; their order among themselves never matters.
  const rankOfResult = (list: string[]) => list.map((merge) => vocab[merge.replace(" ", "")]);
  assert.deepEqual(new Set(derived), new Set(merges));
  assert.deepEqual(rankOfResult(derived), rankOfResult(merges));
});
