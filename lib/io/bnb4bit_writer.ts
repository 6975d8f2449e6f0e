/**
 * Writes NF4 linears in the layout transformers + bitsandbytes save with `load_in_4bit=True`,
 * `bnb_4bit_quant_type="nf4"`, `bnb_4bit_use_double_quant=True` (the format `bnb4bit.ts` reads; see
 * shared/reference/nf4.md): per linear `P`, `P.weight` (packed codes, U8 `[ceil(out·in/2), 1]`) and its
 * `P.weight.<part>` tensors, plus the `quantization_config` a config.json needs for transformers to load them.
 */
import type { Nf4Parts } from "../../ffi/nf4.ts";
import { NESTED_BLOCKSIZE, NF4_BLOCKSIZE } from "./bnb4bit.ts";
import type { TensorToWrite } from "./safetensors/writer.ts";

export interface Nf4LinearToWrite {
  /** Module path, e.g. "model.layers.0.mlp.up_proj". */
  module: string;
  /** [out, in], nn.Linear layout. */
  shape: [number, number];
  /** torch dtype name of the weight before quantization ("bfloat16", "float32"). */
  dtype: string;
  /** The double-quant offset (the mean of the block scales): the quant state's text, and so the header, needs it. */
  offset: number;
  /** The double-quantized parts, fetched when the first of the linear's big tensors is written. */
  parts: () => Nf4Parts;
  /** The 16 NF4 code values and bitsandbytes' 256-entry dynamic map. */
  tables: { code: Float32Array; dynamicMap: Float32Array };
}

/** The six tensors of one double-quantized NF4 linear, its parts fetched once and only when written. */
export function bnb4bitTensors(linear: Nf4LinearToWrite): TensorToWrite[] {
  const weight = `${linear.module}.weight`;
  let cached: Nf4Parts | undefined;
  const part = <K extends "packed" | "absmaxCodes" | "nestedAbsmax">(key: K) => () => {
    cached ??= linear.parts();
    const value = cached[key];
    if (value === undefined || cached.offset !== linear.offset) {
      throw new Error(`${weight}: only double-quantized NF4 weights with the given offset are written`);
    }
    return value as NonNullable<Nf4Parts[K]>;
  };
  const [out, inDim] = linear.shape;
  const count = out * inDim;
  const blocks = Math.ceil(count / NF4_BLOCKSIZE);
  const state = new TextEncoder().encode(quantStateJson(linear.dtype, linear.shape, linear.offset));
  return [
    { name: weight, dtype: "U8", shape: [Math.ceil(count / 2), 1], data: part("packed") },
    { name: `${weight}.absmax`, dtype: "U8", shape: [blocks], data: part("absmaxCodes") },
    {
      name: `${weight}.nested_absmax`,
      dtype: "F32",
      shape: [Math.ceil(blocks / NESTED_BLOCKSIZE)],
      data: part("nestedAbsmax"),
    },
    { name: `${weight}.nested_quant_map`, dtype: "F32", shape: [256], data: linear.tables.dynamicMap },
    { name: `${weight}.quant_map`, dtype: "F32", shape: [16], data: linear.tables.code },
    { name: `${weight}.quant_state.bitsandbytes__nf4`, dtype: "U8", shape: [state.length], data: state },
  ];
}

/** The JSON quant state as bitsandbytes writes it: Python's `json.dumps` spacing, keys in its order. */
export function quantStateJson(dtype: string, shape: readonly [number, number], offset: number): string {
  return `{"quant_type": "nf4", "blocksize": ${NF4_BLOCKSIZE}, "dtype": "${dtype}", ` +
    `"shape": [${shape[0]}, ${shape[1]}], "nested_blocksize": ${NESTED_BLOCKSIZE}, ` +
    `"nested_dtype": "float32", "nested_offset": ${pythonFloat(offset)}}`;
}

/**
 * How Python prints a float (`repr`): the shortest digits that round-trip, positional for decimal exponents
 * in [-4, 16), else scientific with at least two exponent digits ("5e-05", "1.5e+16").
 */
export function pythonFloat(x: number): string {
  if (!Number.isFinite(x)) throw new RangeError(`not a finite number: ${x}`);
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mantissa, exp] = x.toExponential().split("e"); // shortest round-trip digits, e.g. "-5.07e-2"
  const e = Number(exp);
  const sign = mantissa.startsWith("-") ? "-" : "";
  const digits = mantissa.replace(/[-.]/g, "");
  if (e < -4 || e >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
  }
  if (e < 0) return `${sign}0.${"0".repeat(-e - 1)}${digits}`;
  const whole = digits.slice(0, e + 1).padEnd(e + 1, "0");
  const fraction = digits.slice(e + 1);
  return `${sign}${whole}.${fraction || "0"}`;
}

/** The `quantization_config` of a config.json whose block linears are stored as written above. */
export function bnb4bitQuantizationConfig(computeDtype: string): Record<string, unknown> {
  return {
    _load_in_4bit: true,
    _load_in_8bit: false,
    bnb_4bit_compute_dtype: computeDtype,
    bnb_4bit_quant_storage: "uint8",
    bnb_4bit_quant_type: "nf4",
    bnb_4bit_use_double_quant: true,
    llm_int8_enable_fp32_cpu_offload: false,
    llm_int8_has_fp16_weight: false,
    llm_int8_skip_modules: null,
    llm_int8_threshold: 6.0,
    load_in_4bit: true,
    load_in_8bit: false,
    quant_method: "bitsandbytes",
  };
}

/**
 * A config.json text holding `bnb4bitQuantizationConfig`: transformers checks that `llm_int8_threshold` is a
 * Python float, and JSON.stringify writes 6.0 as `6`.
 */
export function bnb4bitConfigText(config: Record<string, unknown>): string {
  return JSON.stringify(config, null, 2).replace(/("llm_int8_threshold": )(-?\d+)(,?\n)/, "$1$2.0$3");
}
