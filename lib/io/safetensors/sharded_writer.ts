/**
 * Writes a list of tensors as a transformers model: one `model.safetensors`, or, past `maxShardBytes`,
 * shards `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json`, split as transformers'
 * `save_pretrained` splits them (in order; a new shard when the next tensor would overflow the current one;
 * a tensor larger than the limit gets a shard of its own).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { INDEX_FILE_NAME, SINGLE_FILE_NAME } from "./sharded.ts";
import { dtypeBytes, elementCount } from "../dtype.ts";
import { type TensorToWrite, writeSafetensors } from "./writer.ts";

/** 2 GB (decimal, as transformers counts "2GB"). */
export const DEFAULT_MAX_SHARD_BYTES = 2_000_000_000;

/** transformers refuses safetensors files whose metadata names another framework; "pt" is what torch writes. */
const METADATA = { format: "pt" };

export interface ShardedSafetensorsWritten {
  /** File names written in `dir`, the index last when there is one. */
  files: string[];
  /** Bytes of tensor data (the index's total_size). */
  totalBytes: number;
}

export function writeShardedSafetensors(
  dir: string,
  tensors: readonly TensorToWrite[],
  maxShardBytes = DEFAULT_MAX_SHARD_BYTES,
): ShardedSafetensorsWritten {
  if (!(maxShardBytes > 0)) throw new RangeError(`maxShardBytes must be > 0, got ${maxShardBytes}`);
  const shards: TensorToWrite[][] = [];
  let size = Infinity;
  let totalBytes = 0;
  for (const tensor of tensors) {
    const bytes = elementCount(tensor.shape) * dtypeBytes(tensor.dtype);
    if (size + bytes > maxShardBytes) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1].push(tensor);
    size += bytes;
    totalBytes += bytes;
  }
  if (shards.length <= 1) {
    writeSafetensors(join(dir, SINGLE_FILE_NAME), shards[0] ?? [], METADATA);
    return { files: [SINGLE_FILE_NAME], totalBytes };
  }
  const n = shards.length;
  const pad = (i: number) => String(i).padStart(5, "0");
  const files: string[] = [];
  const weightMap: Record<string, string> = {};
  for (const [i, shard] of shards.entries()) {
    const file = `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
    writeSafetensors(join(dir, file), shard, METADATA);
    for (const t of shard) weightMap[t.name] = file;
    files.push(file);
  }
  const sorted = Object.fromEntries(Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : 1)));
  const index = { metadata: { total_size: totalBytes }, weight_map: sorted };
  writeFileSync(join(dir, INDEX_FILE_NAME), JSON.stringify(index, null, 2) + "\n");
  files.push(INDEX_FILE_NAME);
  return { files, totalBytes };
}
