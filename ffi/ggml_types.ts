/**
 * The ggml element types that GGUF tensor infos name by id: block size, bytes per block, and whether
 * rust-kernels can dequantize them (`qlora_ggml_dequantize`, rust-kernels/src/ggml/).
 *
 * Sizes follow ggml's `ggml-common.h` (the same table as gguf-py's `GGML_QUANT_SIZES`). Types we cannot
 * dequantize are still listed so that a file using them opens, its tensors can be listed and their
 * byte ranges checked, and reading one fails with the type's name rather than "unknown id".
 */

export interface GgmlType {
  /** The id stored in GGUF tensor infos. */
  readonly id: number;
  readonly name: string;
  /** Values per block (1 for plain floats). */
  readonly blockElements: number;
  /** Bytes per block. */
  readonly blockBytes: number;
  /** True when rust-kernels dequantizes it to f32. */
  readonly dequantize: boolean;
}

const QK_K = 256;

// [id, name, values per block, bytes per block, dequantizable]
const TABLE: ReadonlyArray<readonly [number, string, number, number, boolean]> = [
  [0, "F32", 1, 4, true],
  [1, "F16", 1, 2, true],
  [2, "Q4_0", 32, 2 + 16, true],
  [3, "Q4_1", 32, 2 + 2 + 16, true],
  [6, "Q5_0", 32, 2 + 4 + 16, true],
  [7, "Q5_1", 32, 2 + 2 + 4 + 16, true],
  [8, "Q8_0", 32, 2 + 32, true],
  [9, "Q8_1", 32, 4 + 4 + 32, false],
  [10, "Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4, true],
  [11, "Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12, true],
  [12, "Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12, true],
  [13, "Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12, true],
  [14, "Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16, true],
  [15, "Q8_K", QK_K, 4 + QK_K + QK_K / 8, true],
  [16, "IQ2_XXS", QK_K, 2 + QK_K / 4, false],
  [17, "IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32, false],
  [18, "IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8, false],
  [19, "IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16, false],
  [20, "IQ4_NL", 32, 2 + 16, false],
  [21, "IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4, false],
  [22, "IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16, false],
  [23, "IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64, false],
  [24, "I8", 1, 1, false],
  [25, "I16", 1, 2, false],
  [26, "I32", 1, 4, false],
  [27, "I64", 1, 8, false],
  [28, "F64", 1, 8, false],
  [29, "IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32, false],
  [30, "BF16", 1, 2, true],
  [34, "TQ1_0", QK_K, 2 + 4 * 13, false],
  [35, "TQ2_0", QK_K, 2 + 64, false],
  [39, "MXFP4", 32, 1 + 16, false],
  [40, "NVFP4", 64, 4 + 32, false],
  [41, "Q1_0", 128, 2 + 16, false],
];

/** Every ggml type, by id. */
export const GGML_TYPES: ReadonlyMap<number, GgmlType> = new Map(
  TABLE.map(([id, name, blockElements, blockBytes, dequantize]) => [
    id,
    Object.freeze({ id, name, blockElements, blockBytes, dequantize }),
  ]),
);

/** The type with this id, or undefined for ids ggml does not (or no longer) define. */
export function ggmlType(id: number): GgmlType | undefined {
  return GGML_TYPES.get(id);
}

/** Names of the types rust-kernels dequantizes, for error messages. */
export function dequantizableTypeNames(): string[] {
  return [...GGML_TYPES.values()].filter((t) => t.dequantize).map((t) => t.name);
}

/** The type named `name` ("Q4_K", …); throws RangeError listing the names for anything else. */
export function ggmlTypeByName(name: string): GgmlType {
  for (const t of GGML_TYPES.values()) if (t.name === name) return t;
  throw new RangeError(
    `unknown ggml type "${name}" (known: ${[...GGML_TYPES.values()].map((t) => t.name).join(", ")})`,
  );
}
