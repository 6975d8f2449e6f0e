/**
 * The kernels' output pool: recycled buffers come back without zeroing, stale views of them read nothing,
 * the capacity holds; and training with every pooled output poisoned (NaN) gives bit-identical losses and
 * gradients to training with fresh zeroed buffers — so no op reads an output before writing it.
 */
import assert from "node:assert/strict";
import {
  bufferPoolCapacity,
  configureBufferPool,
  drainBufferPool,
  outputBuffer,
  pooledBufferBytes,
  recycleBuffer,
} from "../../ffi/buffer_pool.ts";
import type { Batch } from "../../lib/data/batch.ts";
import { LoraModel } from "../../lib/lora/model.ts";
import type { Quantization } from "../../lib/pretrained/load_model.ts";
import { values } from "./_fd.ts";
import { batchOf, tinyModel, type TinyModelName } from "../train/_tiny.ts";

const BIG = 64 * 1024; // elements: 256 KiB, above the pool's minimum

function withPool<T>(opts: { capacityBytes: number; poison: boolean }, body: () => T): T {
  const capacityBytes = bufferPoolCapacity();
  drainBufferPool();
  configureBufferPool(opts);
  try {
    return body();
  } finally {
    drainBufferPool();
    configureBufferPool({ capacityBytes, poison: false });
  }
}

Deno.test("a recycled buffer is handed out again, unzeroed, and its old views are detached", () => {
  withPool({ capacityBytes: 1 << 30, poison: false }, () => {
    const a = outputBuffer(BIG);
    a.fill(7);
    const stale = a.subarray(10, 20);
    recycleBuffer(a.buffer);
    assert.equal(a.length, 0);
    assert.equal(stale.length, 0);
    assert.equal(pooledBufferBytes(), BIG * 4);
    const b = outputBuffer(BIG);
    assert.equal(b[123], 7, "the pooled memory itself came back");
    assert.equal(pooledBufferBytes(), 0);
    const c = outputBuffer(BIG);
    assert.equal(c[123], 0, "an empty pool allocates zeroed memory");
    recycleBuffer(b.buffer);
    recycleBuffer(b.buffer); // already detached: ignored
    assert.equal(pooledBufferBytes(), BIG * 4);
  });
});

Deno.test("the pool stays within its capacity, evicting the buffers pooled longest ago", () => {
  withPool({ capacityBytes: BIG * 4 * 2, poison: false }, () => {
    const bufs = [1, 2, 3].map((v) => outputBuffer(BIG).fill(v));
    const other = outputBuffer(BIG / 2).fill(4); // another size, pooled first
    recycleBuffer(other.buffer);
    for (const b of bufs) recycleBuffer(b.buffer);
    assert.equal(pooledBufferBytes(), BIG * 4 * 2, "the oldest (the other size, then 1) went");
    assert.ok(bufs.every((b) => b.length === 0));
    assert.deepEqual([outputBuffer(BIG)[0], outputBuffer(BIG)[0], outputBuffer(BIG)[0]], [3, 2, 0]);
    assert.equal(outputBuffer(BIG / 2)[0], 0, "the other size was evicted");
    assert.equal(pooledBufferBytes(), 0);
    const small = outputBuffer(16);
    recycleBuffer(small.buffer);
    assert.equal(small.length, 0);
    assert.equal(pooledBufferBytes(), 0, "small buffers are freed, not pooled");
    recycleBuffer(outputBuffer(BIG).buffer);
    configureBufferPool({ capacityBytes: 0 });
    assert.equal(pooledBufferBytes(), 0);
  });
  assert.throws(() => configureBufferPool({ capacityBytes: -1 }), /capacityBytes must be ≥ 0/);
});

Deno.test("poison fills every output buffer with NaN", () => {
  withPool({ capacityBytes: 0, poison: true }, () => {
    assert.ok(Number.isNaN(outputBuffer(5)[4]));
  });
});

const SEQS = [[1, 17, 299, 0, 42, 128, 7, 9, 33, 250], [1, 5, 6, 77, 200, 13]];
// Row 1 is padded and masked in part; the packed batch has two examples in one row.
const PADDED = batchOf(SEQS, [2, 0]);
const PACKED: Batch = (() => {
  const [a, b] = SEQS.map((s) => s.slice(0, -1));
  const inputs = Uint32Array.from([...a, ...b]);
  const targets = Int32Array.from([...SEQS[0].slice(1), ...SEQS[1].slice(1)]);
  const positions = Uint32Array.from([...a.keys(), ...b.keys()]);
  return {
    rows: 1,
    width: inputs.length,
    inputs,
    targets,
    positions,
    segmentStarts: [[0, a.length]],
    tokens: inputs.length,
    lossTokens: inputs.length,
    examples: 2,
  };
})();

function twoSteps(lora: LoraModel, batch: Batch, recomputeBlocks: boolean) {
  const out: { loss: number; grads: Float32Array[] }[] = [];
  for (let step = 0; step < 2; step++) {
    lora.zeroGrad();
    const loss = lora.trainingForward(batch, { recomputeBlocks });
    lora.backward();
    out.push({ loss, grads: [...lora.parameters().values()].map((p) => p.grad!.slice()) });
    // A plain SGD step so the second step sees other weights (and other pooled buffers).
    for (const p of lora.parameters().values()) {
      for (let i = 0; i < p.size; i++) p.data[i] -= 0.1 * p.grad![i];
    }
  }
  return out;
}

const CASES: [TinyModelName, Quantization][] = [
  ["tiny_llama", "none"],
  ["tiny_llama", "nf4"],
  ["tiny_phi3", "nf4"], // fused projections: the column split
  ["tiny_gemma3", "nf4"], // GeGLU, extra norms, sliding window
];
for (const [name, quantize] of CASES) {
  for (const recompute of [false, true]) {
    Deno.test(`${name} (${quantize}${recompute ? ", checkpointing" : ""}): NaN-poisoned output buffers change nothing`, async () => {
      using model = await tinyModel(name, quantize);
      const make = () => {
        const lora = new LoraModel(model, { rank: 4, alpha: 8, dropout: 0.1, seed: 3 });
        let seed = 100;
        for (const p of lora.parameters().values()) {
          if (p.name!.endsWith("lora_B.weight")) p.data.set(values(p.size, seed++, 0.05));
        }
        return lora;
      };
      for (const batch of [PADDED, PACKED]) {
        const fresh = withPool({ capacityBytes: 0, poison: false }, () => twoSteps(make(), batch, recompute));
        const poisoned = withPool(
          { capacityBytes: 1 << 30, poison: true },
          () => twoSteps(make(), batch, recompute),
        );
        for (const [s, want] of fresh.entries()) {
          assert.ok(Number.isFinite(want.loss));
          assert.equal(poisoned[s].loss, want.loss, `step ${s} loss`);
          for (const [i, g] of want.grads.entries()) {
            assert.deepEqual(poisoned[s].grads[i], g, `step ${s}, parameter ${i}`);
          }
        }
      }
    });
  }
}
