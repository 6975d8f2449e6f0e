/**
 * The NF4 cache: written after the first load, reused on the next (same weights, bit for bit), rewritten
 * when the source changes, refused (and rewritten) when damaged — never a silently different model.
 */
import assert from "node:assert/strict";
import {
  copyFileSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Nf4Weight } from "../../ffi/nf4.ts";
import { readBnb4bitLinear } from "../../lib/io/bnb4bit.ts";
import { quantStateJson } from "../../lib/io/bnb4bit_writer.ts";
import { f32ToBf16 } from "../../lib/io/dtype.ts";
import { SafetensorsReader } from "../../lib/io/safetensors/reader.ts";
import { ShardedSafetensors } from "../../lib/io/safetensors/sharded.ts";
import { writeSafetensors } from "../../lib/io/safetensors/writer.ts";
import { blockModules, modulePath } from "../../lib/nn/config.ts";
import { blockLinear, type LlamaModel } from "../../lib/nn/llama.ts";
import { DiskBf16Rows } from "../../lib/pretrained/disk_embeddings.ts";
import { loadModel } from "../../lib/pretrained/load_model.ts";
import { findNf4Cache, MANIFEST_FILE, nf4CacheDir } from "../../lib/pretrained/nf4_cache.ts";

const TINY = fileURLToPath(new URL("../fixtures/model/tiny_llama/", import.meta.url));
const TOKENIZER = fileURLToPath(new URL("../fixtures/text/llama2_tokenizer.json", import.meta.url));
const IDS = Uint32Array.of(1, 5, 17, 42, 99, 250, 3);

interface Setup {
  model: string;
  root: string;
  notes: string[];
  load(): ReturnType<typeof loadModel>;
}

/** A copy of the tiny Llama and an empty cache root; `load` loads it through the cache, collecting notes. */
function setup(): Setup {
  const base = mkdtempSync(join(tmpdir(), "qlora-nf4cache-"));
  const model = join(base, "tiny");
  Deno.mkdirSync(model);
  for (const f of ["config.json", "model.safetensors"]) copyFileSync(join(TINY, f), join(model, f));
  copyFileSync(TOKENIZER, join(model, "tokenizer.json"));
  const root = join(base, "cache");
  const notes: string[] = [];
  return {
    model,
    root,
    notes,
    load: () => loadModel(model, { progress: false, nf4Cache: { root, log: (line) => notes.push(line) } }),
  };
}

function logits(model: LlamaModel): Float32Array {
  return model.forward(IDS);
}

function assertSameBits(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, what);
  const ia = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ib = new Uint32Array(b.buffer, b.byteOffset, b.length);
  const first = ia.findIndex((v, i) => v !== ib[i]);
  assert.equal(first, -1, `${what}: first difference at ${first} (${a[first]} vs ${b[first]})`);
}

async function uncachedLogits(dir: string): Promise<Float32Array> {
  const { model } = await loadModel(dir, { progress: false });
  try {
    return logits(model);
  } finally {
    model.close();
  }
}

Deno.test("the first load writes the cache, the second reads it: the same model bit for bit", async () => {
  const s = setup();
  try {
    const expected = await uncachedLogits(s.model);
    const first = await s.load();
    assert.equal(first.nf4Cache, "written");
    assertSameBits(logits(first.model), expected, "logits after writing the cache");
    const second = await s.load();
    assert.equal(second.nf4Cache, "read");
    assertSameBits(logits(second.model), expected, "logits from the cache");

    // The cached bytes are exactly the NF4 weights quantized on the first load, in bnb-4bit layout.
    using files = ShardedSafetensors.open(nf4CacheDir(s.root, s.model));
    const layers = first.model.weights.layers;
    for (const [l, layer] of layers.entries()) {
      for (const m of blockModules(first.model.config)) {
        const ours = (blockLinear(layer, m) as Nf4Weight).toParts();
        const stored = readBnb4bitLinear(files, modulePath(l, m));
        assert.ok(stored.doubleQuant);
        assert.deepEqual(stored.shape, ours.shape);
        assert.deepEqual(stored.packed, ours.packed, `${modulePath(l, m)}: packed codes`);
        assert.deepEqual(stored.absmax, ours.absmaxCodes, `${modulePath(l, m)}: scale codes`);
        assert.deepEqual(stored.nestedAbsmax, ours.nestedAbsmax, `${modulePath(l, m)}: nested scales`);
        assert.equal(stored.offset, ours.offset);
      }
    }
    const config = JSON.parse(readFileSync(join(nf4CacheDir(s.root, s.model), "config.json"), "utf8"));
    assert.equal(config.quantization_config.bnb_4bit_quant_type, "nf4");
    assert.equal(config.quantization_config.bnb_4bit_use_double_quant, true);
    assert.equal(config.hidden_size, 96);
    for (const r of [first, second]) r.model.close();
  } finally {
    rmSync(join(s.root, ".."), { recursive: true, force: true });
  }
});

Deno.test("a changed source invalidates the cache: the new weights are loaded and cached", async () => {
  const s = setup();
  try {
    (await s.load()).model.close();
    const before = await uncachedLogits(s.model);
    // Scale one weight: the same size, a new modification time.
    const path = join(s.model, "model.safetensors");
    const reader = SafetensorsReader.open(path);
    const tensors = reader.names().map((name) => {
      const t = reader.readTensor(name);
      const data = t.data as Float32Array;
      if (name === "model.layers.1.mlp.down_proj.weight") {
        for (let i = 0; i < data.length; i++) data[i] *= 3;
      }
      return { name, dtype: t.dtype, shape: t.shape, data: t.data };
    });
    reader.close();
    writeSafetensors(path, tensors, { format: "pt" });
    utimesSync(path, new Date(), new Date(Date.now() + 5000));
    const expected = await uncachedLogits(s.model);
    assert.notDeepEqual(expected, before);

    const again = await s.load();
    assert.equal(again.nf4Cache, "written");
    assert.match(s.notes.join("\n"), /stale \(the source changed \(model\.safetensors was modified\)\)/);
    assertSameBits(logits(again.model), expected, "logits after the source changed");
    again.model.close();
    const cached = await s.load();
    assert.equal(cached.nf4Cache, "read");
    assertSameBits(logits(cached.model), expected, "logits from the new cache");
    cached.model.close();
  } finally {
    rmSync(join(s.root, ".."), { recursive: true, force: true });
  }
});

Deno.test("a damaged cache is refused, never used: one flipped bit in the codes, or a broken manifest", async () => {
  const s = setup();
  try {
    const expected = await uncachedLogits(s.model);
    (await s.load()).model.close();
    const dir = nf4CacheDir(s.root, s.model);
    const file = join(dir, readdirSync(dir).find((f) => f.endsWith(".safetensors"))!);
    const info = SafetensorsReader.open(file);
    const at = info.info("model.layers.0.mlp.up_proj.weight").offset + 100;
    info.close();
    const bytes = readFileSync(file);
    bytes[at] ^= 0x10;
    writeFileSync(file, bytes);

    const damaged = await s.load();
    assert.match(s.notes.join("\n"), /refused \(.*up_proj\.weight.*damaged: checksum/);
    assert.equal(damaged.nf4Cache, "written");
    assertSameBits(logits(damaged.model), expected, "logits after refusing a damaged cache");
    damaged.model.close();
    assert.equal((await s.load()).nf4Cache, "read");

    writeFileSync(join(dir, MANIFEST_FILE), "{ not json");
    assert.equal(findNf4Cache(s.root, s.model).kind, "miss");
    const rewritten = await s.load();
    assert.equal(rewritten.nf4Cache, "written");
    assertSameBits(logits(rewritten.model), expected, "logits after a broken manifest");
    rewritten.model.close();
  } finally {
    rmSync(join(s.root, ".."), { recursive: true, force: true });
  }
});

Deno.test("the quant state text is bitsandbytes' own (Python json.dumps of its dict)", () => {
  // From tests/fixtures/safetensors/bnb4bit-llama (written by transformers + bitsandbytes).
  assert.equal(
    quantStateJson("bfloat16", [64, 64], 0.0507659912109375),
    '{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [64, 64], "nested_blocksize": 256, ' +
      '"nested_dtype": "float32", "nested_offset": 0.0507659912109375}',
  );
  const fixture = fileURLToPath(new URL("../fixtures/safetensors/bnb4bit-llama/", import.meta.url));
  using files = ShardedSafetensors.open(fixture);
  const name = "model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4";
  const stored = new TextDecoder().decode(files.readTensor(name).data as Uint8Array);
  const linear = readBnb4bitLinear(files, "model.layers.0.self_attn.q_proj");
  assert.ok(linear.doubleQuant);
  assert.equal(quantStateJson(linear.dtype, linear.shape, linear.offset), stored);
});

Deno.test("an embedding table left on disk gives the same model, from the source and from the cache", async () => {
  const s = setup();
  try {
    // The table stored as bf16, as in bf16 checkpoints (only such a table can be read row by row).
    const path = join(s.model, "model.safetensors");
    const reader = SafetensorsReader.open(path);
    const tensors = reader.names().map((name) => {
      const t = reader.readTensor(name);
      return name === "model.embed_tokens.weight"
        ? { name, dtype: "BF16" as const, shape: t.shape, data: f32ToBf16(t.data as Float32Array) }
        : { name, dtype: t.dtype, shape: t.shape, data: t.data };
    });
    reader.close();
    writeSafetensors(path, tensors, { format: "pt" });
    const expected = await uncachedLogits(s.model);
    for (const via of ["written", "read"]) {
      const r = await loadModel(s.model, {
        progress: false,
        embeddingsOnDisk: true,
        nf4Cache: { root: s.root, log: () => {} },
      });
      assert.equal(r.nf4Cache, via);
      const table = r.model.weights.embedTokens;
      assert.ok(table instanceof DiskBf16Rows, "the table stays on disk");
      assert.equal(table.bytes, 0);
      assertSameBits(logits(r.model), expected, `logits, embeddings on disk (cache ${via})`);
      assert.throws(() => table.gatherRows(Uint32Array.of(1, 300)), /token id 300 is beyond the 300 rows/);
      r.model.close();
      assert.throws(() => table.gatherRows(Uint32Array.of(1)), /read after close/);
    }
  } finally {
    rmSync(join(s.root, ".."), { recursive: true, force: true });
  }
});
