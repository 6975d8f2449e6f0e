/**
 * Pre-quantized bitsandbytes 4-bit linears in a safetensors model (HF `load_in_4bit` saves).
 * A quantized linear `P` is stored as `P.weight` (packed codes) plus `P.weight.<part>` tensors and a JSON
 * quant state in `P.weight.quant_state.bitsandbytes__<quant type>`; see shared/reference/nf4.md.
 * Only NF4 with 64-element blocks (and 256-block nested scales) is accepted: the layout our kernels use.
 */
import { bytesOf } from "./dtype.ts";
import { FormatError } from "../errors.ts";
import type { TensorSource } from "./safetensors/reader.ts";

export const NF4_BLOCKSIZE = 64;
export const NESTED_BLOCKSIZE = 256;
export const NF4_CODES = 16;
export const NESTED_CODES = 256;

/** `P` + this + quant type names the JSON quant state of linear `P`. */
const QUANT_STATE_INFIX = ".weight.quant_state.bitsandbytes__";

interface Bnb4bitCommon {
  /** Module path of the linear, e.g. "model.layers.0.self_attn.q_proj". */
  name: string;
  /** [out, in], nn.Linear layout. */
  shape: [number, number];
  blocksize: typeof NF4_BLOCKSIZE;
  /** torch dtype name of the weight before quantization, e.g. "bfloat16". */
  dtype: string;
  /** Two codes per byte, first element in the high nibble; ceil(out·in / 2) bytes. */
  packed: Uint8Array;
  /** The 16 NF4 code values. */
  quantMap: Float32Array;
}

/** Block scales stored directly: one f32 per 64-element block. */
export interface Bnb4bitPlainScales {
  doubleQuant: false;
  absmax: Float32Array;
}

/** Block scales quantized again: absmax[b] ≈ nestedQuantMap[absmax[b]] · nestedAbsmax[b / 256] + offset. */
export interface Bnb4bitNestedScales {
  doubleQuant: true;
  /** One 8-bit code per 64-element block. */
  absmax: Uint8Array;
  /** One f32 per 256 blocks. */
  nestedAbsmax: Float32Array;
  /** The 256 values of bitsandbytes' signed dynamic map. */
  nestedQuantMap: Float32Array;
  nestedBlocksize: typeof NESTED_BLOCKSIZE;
  /** torch dtype name of the scales before the second quantization ("float32"). */
  nestedDtype: string;
  /** Mean of the block scales, subtracted before the second quantization. */
  offset: number;
}

export type Bnb4bitLinear = Bnb4bitCommon & (Bnb4bitPlainScales | Bnb4bitNestedScales);

/**
 * Names of the 4-bit quantized linears in `source`, in file order. Throws FormatError for a 4-bit
 * format other than NF4 (fp4), which we cannot compute with.
 */
export function findBnb4bitLinears(source: TensorSource): string[] {
  const linears: string[] = [];
  for (const name of source.names()) {
    const at = name.lastIndexOf(QUANT_STATE_INFIX);
    if (at < 0) continue;
    const quantType = name.slice(at + QUANT_STATE_INFIX.length);
    if (quantType !== "nf4") {
      throw new FormatError(
        source.info(name).file,
        `unsupported: ${quantType} quantization (only bitsandbytes nf4 is supported)`,
        name,
      );
    }
    linears.push(name.slice(0, at));
  }
  return linears;
}

/** Suffixes (after `P.weight`) of every tensor a quantized linear `P` may store. */
const PART_SUFFIXES = [
  "",
  ".absmax",
  ".quant_map",
  ".nested_absmax",
  ".nested_quant_map",
  ".quant_state.bitsandbytes__nf4",
];

/** Names of the tensors that are not parts of a quantized linear: embeddings, norms, biases, lm_head… */
export function plainTensorNames(source: TensorSource, linears = findBnb4bitLinears(source)): string[] {
  const parts = new Set(
    linears.flatMap((linear) => PART_SUFFIXES.map((suffix) => `${linear}.weight${suffix}`)),
  );
  return source.names().filter((name) => !parts.has(name));
}

/** Reads and validates every part of the quantized linear `linear` (a name from findBnb4bitLinears). */
export function readBnb4bitLinear(source: TensorSource, linear: string): Bnb4bitLinear {
  const weight = `${linear}.weight`;
  const stateName = `${weight}.quant_state.bitsandbytes__nf4`;
  const state = parseQuantState(source, stateName);
  const [rows, columns] = state.shape;
  const count = rows * columns;
  const blocks = Math.ceil(count / NF4_BLOCKSIZE);
  const common: Bnb4bitCommon = {
    name: linear,
    shape: state.shape,
    blocksize: NF4_BLOCKSIZE,
    dtype: state.dtype,
    // The packed codes may be stored in another dtype (bnb_4bit_quant_storage); the bytes are what count.
    packed: readPart(source, weight, undefined, Math.ceil(count / 2), "bytes"),
    quantMap: readPart(source, `${weight}.quant_map`, "F32", NF4_CODES, "values"),
  };
  if (state.nested === undefined) {
    return {
      ...common,
      doubleQuant: false,
      absmax: readPart(source, `${weight}.absmax`, "F32", blocks, "block scales"),
    };
  }
  return {
    ...common,
    doubleQuant: true,
    absmax: readPart(source, `${weight}.absmax`, "U8", blocks, "block scale codes"),
    nestedAbsmax: readPart(
      source,
      `${weight}.nested_absmax`,
      "F32",
      Math.ceil(blocks / NESTED_BLOCKSIZE),
      "nested scales",
    ),
    nestedQuantMap: readPart(source, `${weight}.nested_quant_map`, "F32", NESTED_CODES, "values"),
    nestedBlocksize: NESTED_BLOCKSIZE,
    nestedDtype: state.nested.dtype,
    offset: state.nested.offset,
  };
}

interface QuantState {
  shape: [number, number];
  dtype: string;
  nested?: { dtype: string; offset: number };
}

/** Decodes the JSON quant state and checks it describes the layout we support. */
function parseQuantState(source: TensorSource, name: string): QuantState {
  if (!source.has(name)) {
    throw new FormatError(source.path, "missing: expected the JSON quant state of an nf4 linear", name);
  }
  const file = source.info(name).file;
  const fail = (problem: string) => new FormatError(file, `quant state: ${problem}`, name);
  let state: Record<string, unknown>;
  try {
    state = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(bytesOf(source.readTensor(name).data)),
    );
  } catch (error) {
    throw fail(`not valid UTF-8 JSON (${(error as Error).message})`);
  }
  if (typeof state !== "object" || state === null || Array.isArray(state)) {
    throw fail("expected a JSON object");
  }

  const { quant_type, blocksize, dtype, shape } = state;
  if (quant_type !== "nf4") throw fail(`expected quant_type "nf4", found ${JSON.stringify(quant_type)}`);
  if (blocksize !== NF4_BLOCKSIZE) {
    throw fail(`unsupported blocksize: expected ${NF4_BLOCKSIZE}, found ${JSON.stringify(blocksize)}`);
  }
  if (typeof dtype !== "string") throw fail(`expected dtype to be a string, found ${JSON.stringify(dtype)}`);
  if (
    !Array.isArray(shape) || shape.length !== 2 || !shape.every((dim) => Number.isSafeInteger(dim) && dim > 0)
  ) {
    throw fail(`expected shape [out, in] of two positive integers, found ${JSON.stringify(shape)}`);
  }

  const { nested_blocksize, nested_dtype, nested_offset } = state;
  if (nested_blocksize === undefined && nested_dtype === undefined && nested_offset === undefined) {
    return { shape: shape as [number, number], dtype };
  }
  if (nested_blocksize !== NESTED_BLOCKSIZE) {
    throw fail(
      `unsupported nested_blocksize: expected ${NESTED_BLOCKSIZE}, found ${JSON.stringify(nested_blocksize)}`,
    );
  }
  if (typeof nested_dtype !== "string") {
    throw fail(`expected nested_dtype to be a string, found ${JSON.stringify(nested_dtype)}`);
  }
  if (typeof nested_offset !== "number" || !Number.isFinite(nested_offset)) {
    throw fail(`expected nested_offset to be a finite number, found ${JSON.stringify(nested_offset)}`);
  }
  return { shape: shape as [number, number], dtype, nested: { dtype: nested_dtype, offset: nested_offset } };
}

/** Reads one part, checking its dtype (unless `dtype` is undefined: raw bytes) and element count. */
function readPart(
  source: TensorSource,
  name: string,
  dtype: "U8" | undefined,
  count: number,
  what: string,
): Uint8Array;
function readPart(
  source: TensorSource,
  name: string,
  dtype: "F32",
  count: number,
  what: string,
): Float32Array;
function readPart(
  source: TensorSource,
  name: string,
  dtype: "U8" | "F32" | undefined,
  count: number,
  what: string,
): Uint8Array | Float32Array {
  if (!source.has(name)) throw new FormatError(source.path, `missing: expected ${count} ${what}`, name);
  const info = source.info(name);
  if (dtype !== undefined && info.dtype !== dtype) {
    throw new FormatError(info.file, `expected dtype ${dtype}, found ${info.dtype}`, name);
  }
  const found = dtype === "F32" ? info.byteLength / 4 : info.byteLength;
  if (found !== count) {
    throw new FormatError(
      info.file,
      `expected ${count} ${what}${
        dtype === undefined ? "" : ` (${dtype})`
      } for the quant state's shape, found ${found}`,
      name,
    );
  }
  const data = source.readTensor(name).data;
  return dtype === "F32" ? data as Float32Array : bytesOf(data);
}
