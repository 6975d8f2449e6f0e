/**
 * Byte-level BPE spells every byte as one printable character, so a vocabulary of strings can cover
 * arbitrary bytes: printable Latin-1 bytes stand for themselves, the other 68 bytes (controls, space,
 * a few Latin-1 gaps) take the characters from U+0100 on, in byte order. Space becomes "Ġ", "\n" "Ċ".
 */

function buildAlphabet(): string[] {
  const selfSpelled = (byte: number) =>
    (byte >= 0x21 && byte <= 0x7e) || (byte >= 0xa1 && byte <= 0xac) || (byte >= 0xae && byte <= 0xff);
  const spelling: string[] = [];
  let next = 0x100;
  for (let byte = 0; byte < 256; byte++) {
    spelling.push(String.fromCodePoint(selfSpelled(byte) ? byte : next++));
  }
  return spelling;
}

/** `BYTE_SPELLING[b]` is the character that spells byte `b`. */
export const BYTE_SPELLING: readonly string[] = buildAlphabet();

const ALPHABET = new Set(BYTE_SPELLING);
const utf8 = new TextEncoder();

/** Whether a token is already written in the byte alphabet. */
export function isByteSpelled(token: string): boolean {
  for (const char of token) if (!ALPHABET.has(char)) return false;
  return true;
}

/** The byte-alphabet spelling of a raw string (its UTF-8 bytes, one character each). */
export function byteSpell(text: string): string {
  let out = "";
  for (const byte of utf8.encode(text)) out += BYTE_SPELLING[byte];
  return out;
}
