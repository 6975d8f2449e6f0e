import assert from "node:assert/strict";
import { BYTE_SPELLING, byteSpell, isByteSpelled } from "../../lib/text/byte_alphabet.ts";

Deno.test("the byte alphabet has 256 distinct characters, printable bytes spelling themselves", () => {
  assert.equal(new Set(BYTE_SPELLING).size, 256);
  assert.equal(BYTE_SPELLING[0x41], "A");
  assert.equal(BYTE_SPELLING[0x20], "Ġ");
  assert.equal(BYTE_SPELLING[0x0a], "Ċ");
  assert.equal(BYTE_SPELLING[0x00], "Ā");
  assert.equal(BYTE_SPELLING[0xad], "Ń"); // soft hyphen is not printable: remapped
});

Deno.test("byteSpell writes UTF-8 bytes in the alphabet; isByteSpelled recognises the result", () => {
  assert.equal(byteSpell(" hé"), "ĠhÃ©");
  assert.ok(isByteSpelled(byteSpell("日本 🤗\n")));
  assert.ok(!isByteSpelled("a b"));
  assert.ok(isByteSpelled("<|im_start|>"));
});
