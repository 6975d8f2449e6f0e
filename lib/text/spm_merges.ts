/**
 * SentencePiece BPE vocabularies in GGUF files carry scores but no merge list. SentencePiece merges,
 * at each step, the adjacent pair whose concatenation scores highest; a BPE merge list ordered by
 * that score reproduces it. So: every way to cut a token into two tokens of the vocabulary is a
 * merge, ranked by the token's score, best first.
 */
export function mergesFromScores(tokens: readonly string[], scores: readonly number[]): [string, string][] {
  // A token listed twice counts once, where it first appears, with its last id and score.
  const idOf = new Map<string, number>();
  tokens.forEach((token, id) => idOf.set(token, id));

  const candidates: { left: string; right: string; score: number }[] = [];
  for (const token of idOf.keys()) {
    const score = scores[idOf.get(token)!];
    const cuts: { left: string; right: string; score: number }[] = [];
    const chars = Array.from(token); // cut between code points, never inside a surrogate pair
    for (let at = 1; at < chars.length; at++) {
      const left = chars.slice(0, at).join("");
      const right = chars.slice(at).join("");
      if (idOf.has(left) && idOf.has(right)) cuts.push({ left, right, score });
    }
    cuts.sort((a, b) => idOf.get(a.left)! - idOf.get(b.left)! || idOf.get(a.right)! - idOf.get(b.right)!);
    candidates.push(...cuts);
  }
  // Best score first; among equals, longer left then longer right pieces (a stable sort keeps the rest
  // in vocabulary order), which is how transformers orders merges it recovers the same way.
  candidates.sort((a, b) =>
    b.score - a.score || lengthOf(b.left) - lengthOf(a.left) || lengthOf(b.right) - lengthOf(a.right)
  );
  return candidates.map(({ left, right }) => [left, right]);
}

function lengthOf(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}
