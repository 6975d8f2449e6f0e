/** Keys and values of every layer for the positions seen so far, so generation feeds one token at a time. */
import type { ModelConfig } from "./config.ts";

export class KvCache {
  /** Positions filled so far (the next token's position). */
  length = 0;
  private capacity: number;
  readonly keys: Float32Array[];
  readonly values: Float32Array[];
  private readonly rowSize: number;

  constructor(readonly config: ModelConfig, initialCapacity = 256) {
    this.rowSize = config.numKeyValueHeads * config.headDim;
    this.capacity = Math.max(1, initialCapacity);
    this.keys = Array.from(
      { length: config.numHiddenLayers },
      () => new Float32Array(this.capacity * this.rowSize),
    );
    this.values = Array.from(
      { length: config.numHiddenLayers },
      () => new Float32Array(this.capacity * this.rowSize),
    );
  }

  /** Bytes held by the cache. */
  get bytes(): number {
    return 2 * this.keys.length * this.capacity * this.rowSize * 4;
  }

  /** Makes room for `tokens` more positions (doubling, so appends stay amortized O(1)). */
  reserve(tokens: number): void {
    const need = this.length + tokens;
    if (need <= this.capacity) return;
    let capacity = this.capacity;
    while (capacity < need) capacity *= 2;
    for (const list of [this.keys, this.values]) {
      for (let l = 0; l < list.length; l++) {
        const grown = new Float32Array(capacity * this.rowSize);
        grown.set(list[l].subarray(0, this.length * this.rowSize));
        list[l] = grown;
      }
    }
    this.capacity = capacity;
  }

  /** Writes the new keys/values `[tokens, kvHeads·headDim]` of one layer at the current position. */
  write(layer: number, k: Float32Array, v: Float32Array): void {
    this.keys[layer].set(k, this.length * this.rowSize);
    this.values[layer].set(v, this.length * this.rowSize);
  }

  /** Forgets everything (keeps the memory). */
  clear(): void {
    this.length = 0;
  }
}
