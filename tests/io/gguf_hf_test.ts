import assert from "node:assert/strict";
import { GgufFile } from "../../lib/io/gguf/file.ts";
import { GgufHfView } from "../../lib/io/gguf/hf_view.ts";
import { permuteRows } from "../../lib/io/gguf/names.ts";
import { SafetensorsReader } from "../../lib/io/safetensors/reader.ts";
import { ggufFixture } from "./_gguf.ts";

for (const arch of ["llama", "qwen2"]) {
  Deno.test(`a tiny ${arch} GGUF reads back as the HF state dict it was converted from`, async () => {
    using file = await GgufFile.open(ggufFixture(`tiny_${arch}.gguf`));
    using expected = SafetensorsReader.open(ggufFixture(`tiny_${arch}.expected.safetensors`));
    const view = new GgufHfView(file);
    assert.equal(view.architecture, arch);
    assert.deepEqual([view.nHead, view.nHeadKv], [2, 1]);
    assert.deepEqual(view.names().toSorted(), expected.names().toSorted());
    for (const name of view.names()) {
      const want = expected.readTensorF32(name);
      assert.deepEqual(view.shape(name), want.shape, name);
      assert.deepEqual(view.readTensorF32(name), want.data, name);
    }
  });
}

Deno.test("the llama fixture really is permuted: raw GGUF q/k differ from HF and permuteRows restores them", async () => {
  // The fixture was permuted by llama.cpp's formula and checked against transformers' reverse permutation.
  using file = await GgufFile.open(ggufFixture("tiny_llama.gguf"));
  using expected = SafetensorsReader.open(ggufFixture("tiny_llama.expected.safetensors"));
  for (const [gguf, hf, heads] of [["attn_q", "q_proj", 2], ["attn_k", "k_proj", 1]] as const) {
    const raw = file.readTensorF32(`blk.1.${gguf}.weight`);
    const want = expected.readTensorF32(`model.layers.1.self_attn.${hf}.weight`);
    assert.notDeepEqual(raw, want.data);
    assert.deepEqual(permuteRows(want.data, want.shape[0], heads), raw);
  }
});
