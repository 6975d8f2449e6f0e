/**
 * Parquet through hyparquet (pure JavaScript). It decodes uncompressed and snappy pages itself (pyarrow's and
 * pandas' default); gzip and brotli are handed to node:zlib here. Other codecs (zstd, lz4) are refused with
 * the file named. Nested columns (a list of message structs) arrive as arrays of objects, like JSON.
 */
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { parquetMetadata, parquetReadObjects } from "hyparquet";
import { DataError } from "../errors.ts";
import type { RawRow } from "./read_rows.ts";

const COMPRESSORS = {
  GZIP: (input: Uint8Array) => new Uint8Array(gunzipSync(input)),
  BROTLI: (input: Uint8Array) => new Uint8Array(brotliDecompressSync(input)),
};

export async function parseParquet(bytes: Uint8Array, file: string): Promise<RawRow[]> {
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  try {
    parquetMetadata(buffer);
  } catch (error) {
    throw new DataError(file, undefined, `not a Parquet file (${(error as Error).message})`);
  }
  let rows: Record<string, unknown>[];
  try {
    rows = await parquetReadObjects({ file: buffer, compressors: COMPRESSORS });
  } catch (error) {
    throw new DataError(file, undefined, `cannot read the Parquet data (${(error as Error).message})`);
  }
  return rows.map((value, i) => ({ line: i + 1, value }));
}
