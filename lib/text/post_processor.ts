/** The tokenizer.json `post_processor` that wraps every text in an optional BOS and an optional EOS. */

export interface TokenRef {
  token: string;
  id: number;
}

/**
 * A `TemplateProcessing` entry: `[bos] $A [eos]` (and the same for a pair). Written in full, with the
 * `special_tokens` table, so the object also loads in the Python `tokenizers` library.
 */
export function bosEosTemplate(bos: TokenRef | null, eos: TokenRef | null): Record<string, unknown> {
  const special = (ref: TokenRef, typeId: number) => ({ SpecialToken: { id: ref.token, type_id: typeId } });
  const around = (id: "A" | "B", typeId: number) => [
    ...(bos === null ? [] : [special(bos, typeId)]),
    { Sequence: { id, type_id: typeId } },
    ...(eos === null ? [] : [special(eos, typeId)]),
  ];
  const specialTokens = Object.fromEntries(
    [bos, eos].filter((ref) => ref !== null).map((ref) => [ref.token, {
      id: ref.token,
      ids: [ref.id],
      tokens: [ref.token],
    }]),
  );
  return {
    type: "TemplateProcessing",
    single: around("A", 0),
    pair: [...around("A", 0), ...around("B", 1)],
    special_tokens: specialTokens,
  };
}
