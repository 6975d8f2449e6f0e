/**
 * The table of every symbol of the rust-kernels C ABI (see rust-kernels/src/abi/). Nothing else lives here.
 * TypedArrays go as "buffer" (zero-copy); counts and dims as "u32" so calls stay on V8's fast path;
 * every fallible function returns an i32 status (0 = ok; the message is in qlora_last_error).
 */
export const symbols = {
  // --- core (rust-kernels/src/abi/core.rs) ---
  // uint32_t qlora_abi_version(void)
  qlora_abi_version: { parameters: [], result: "u32" },
  // uint32_t qlora_last_error(uint8_t *buf, uint32_t cap)
  qlora_last_error: { parameters: ["buffer", "u32"], result: "u32" },
  // int32_t qlora_set_threads(uint32_t n)
  qlora_set_threads: { parameters: ["u32"], result: "i32" },
  // uint32_t qlora_threads(void)
  qlora_threads: { parameters: [], result: "u32" },
  // int32_t qlora_set_kernel(const uint8_t *name, uint32_t len)
  qlora_set_kernel: { parameters: ["buffer", "u32"], result: "i32" },
  // uint32_t qlora_kernel_name(uint8_t *buf, uint32_t cap)
  qlora_kernel_name: { parameters: ["buffer", "u32"], result: "u32" },
  // uint32_t qlora_cpu_features(uint8_t *buf, uint32_t cap)
  qlora_cpu_features: { parameters: ["buffer", "u32"], result: "u32" },

  // --- nf4 (rust-kernels/src/abi/nf4.rs) ---
  // int32_t qlora_nf4_quantize(const float *w, uint32_t w_len, uint32_t rows, uint32_t cols,
  //   int32_t double_quant, uint32_t *handle_out)
  qlora_nf4_quantize: { parameters: ["buffer", "u32", "u32", "u32", "i32", "buffer"], result: "i32" },
  // int32_t qlora_nf4_from_parts(uint32_t rows, uint32_t cols, const uint8_t *packed, uint32_t packed_len,
  //   const uint8_t *absmax_codes, uint32_t codes_len, const float *nested, uint32_t nested_len, float offset,
  //   const float *absmax, uint32_t absmax_len, uint32_t *handle_out)
  qlora_nf4_from_parts: {
    parameters: [
      "u32",
      "u32",
      "buffer",
      "u32",
      "buffer",
      "u32",
      "buffer",
      "u32",
      "f32",
      "buffer",
      "u32",
      "buffer",
    ],
    result: "i32",
  },
  // int32_t qlora_nf4_info(uint32_t handle, uint32_t *info, uint32_t info_len)
  qlora_nf4_info: { parameters: ["u32", "buffer", "u32"], result: "i32" },
  // int32_t qlora_nf4_export(uint32_t handle, uint8_t *packed, uint32_t packed_len, uint8_t *absmax_codes,
  //   uint32_t codes_len, float *nested, uint32_t nested_len, float *absmax, uint32_t absmax_len, float *offset_out)
  qlora_nf4_export: {
    parameters: ["u32", "buffer", "u32", "buffer", "u32", "buffer", "u32", "buffer", "u32", "buffer"],
    result: "i32",
  },
  // int32_t qlora_nf4_dequantize(uint32_t handle, float *out, uint32_t out_len)
  qlora_nf4_dequantize: { parameters: ["u32", "buffer", "u32"], result: "i32" },
  // int32_t qlora_nf4_free(uint32_t handle)
  qlora_nf4_free: { parameters: ["u32"], result: "i32" },
  // uint32_t qlora_nf4_live(void)
  qlora_nf4_live: { parameters: [], result: "u32" },
  // int32_t qlora_nf4_tables(float *code, uint32_t code_len, float *dynamic, uint32_t dynamic_len)
  qlora_nf4_tables: { parameters: ["buffer", "u32", "buffer", "u32"], result: "i32" },

  // --- gemm (rust-kernels/src/abi/gemm.rs) ---
  // int32_t qlora_sgemm(uint32_t m, uint32_t n, uint32_t k, const float *a, uint32_t a_len, uint32_t rsa,
  //   uint32_t csa, const float *b, uint32_t b_len, uint32_t rsb, uint32_t csb, float *c, uint32_t c_len,
  //   uint32_t ldc, float alpha, float beta, int32_t compute)
  qlora_sgemm: {
    parameters: [
      "u32",
      "u32",
      "u32",
      "buffer",
      "u32",
      "u32",
      "u32",
      "buffer",
      "u32",
      "u32",
      "u32",
      "buffer",
      "u32",
      "u32",
      "f32",
      "f32",
      "i32",
    ],
    result: "i32",
  },
  // int32_t qlora_nf4_matmul(uint32_t handle, const float *x, uint32_t x_len, uint32_t m, float *y,
  //   uint32_t y_len, int32_t accumulate, int32_t compute)
  qlora_nf4_matmul: {
    parameters: ["u32", "buffer", "u32", "u32", "buffer", "u32", "i32", "i32"],
    result: "i32",
  },
  // int32_t qlora_nf4_matmul_t(uint32_t handle, const float *dy, uint32_t dy_len, uint32_t m, float *dx,
  //   uint32_t dx_len, int32_t accumulate, int32_t compute)
  qlora_nf4_matmul_t: {
    parameters: ["u32", "buffer", "u32", "u32", "buffer", "u32", "i32", "i32"],
    result: "i32",
  },

  // int32_t qlora_bf16_matmul(const uint16_t *w, uint32_t w_len, uint32_t rows, uint32_t cols, const float *x,
  //   uint32_t x_len, uint32_t m, float *y, uint32_t y_len, int32_t accumulate)
  qlora_bf16_matmul: {
    parameters: ["buffer", "u32", "u32", "u32", "buffer", "u32", "u32", "buffer", "u32", "i32"],
    result: "i32",
  },
  // int32_t qlora_bf16_matmul_t(const uint16_t *w, uint32_t w_len, uint32_t rows, uint32_t cols,
  //   const float *dy, uint32_t dy_len, uint32_t m, float *dx, uint32_t dx_len, int32_t accumulate)
  qlora_bf16_matmul_t: {
    parameters: ["buffer", "u32", "u32", "u32", "buffer", "u32", "u32", "buffer", "u32", "i32"],
    result: "i32",
  },
  // int32_t qlora_bf16_gather_rows(const uint16_t *w, uint32_t w_len, uint32_t rows, uint32_t cols,
  //   const uint32_t *ids, uint32_t ids_len, float *out, uint32_t out_len)
  qlora_bf16_gather_rows: {
    parameters: ["buffer", "u32", "u32", "u32", "buffer", "u32", "buffer", "u32"],
    result: "i32",
  },

  // --- ggml (rust-kernels/src/abi/ggml.rs) ---
  // int32_t qlora_ggml_dequantize(uint32_t ggml_type, const uint8_t *src, uint32_t src_len, float *dst,
  //   uint32_t dst_len)
  qlora_ggml_dequantize: { parameters: ["u32", "buffer", "u32", "buffer", "u32"], result: "i32" },

} as const satisfies Deno.ForeignLibraryInterface;
