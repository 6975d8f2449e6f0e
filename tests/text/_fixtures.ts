/** Paths and loaders for the fixtures under tests/fixtures/text (made by make_tokenizer_fixtures.py). */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

export function fixturePath(name: string): string {
  return fileURLToPath(new URL(`../fixtures/text/${name}`, import.meta.url));
}

export async function readFixture<T>(name: string): Promise<T> {
  return JSON.parse(await readFile(fixturePath(name), "utf8")) as T;
}

/** One text with what the Python reference made of it. */
export interface EncodeCase {
  text: string;
  ids: number[];
  ids_without_special: number[];
  decoded: string;
  decoded_skipping_special: string;
}

/** Cases whose ids differ from the expected ones, shown in full so a failure says which texts. */
export function mismatches(
  cases: readonly EncodeCase[],
  encode: (text: string, addSpecial: boolean) => number[],
): { text: string; expected: number[]; actual: number[] }[] {
  const out = [];
  for (const item of cases) {
    for (const [addSpecial, expected] of [[true, item.ids], [false, item.ids_without_special]] as const) {
      const actual = encode(item.text, addSpecial);
      if (JSON.stringify(actual) !== JSON.stringify(expected)) {
        out.push({ text: item.text, expected, actual });
      }
    }
  }
  return out;
}
