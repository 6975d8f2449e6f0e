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
  // uint32_t qlora_keep_freed_memory(void)
  qlora_keep_freed_memory: { parameters: [], result: "u32" },
  // double qlora_fma_peak(double seconds)
  qlora_fma_peak: { parameters: ["f64"], result: "f64" },
  // double qlora_gemm_hot_loop(uint32_t which, double seconds)
  qlora_gemm_hot_loop: { parameters: ["u32", "f64"], result: "f64" },
  // int32_t qlora_set_kernel(const uint8_t *name, uint32_t len)
  qlora_set_kernel: { parameters: ["buffer", "u32"], result: "i32" },
  // uint32_t qlora_kernel_name(uint8_t *buf, uint32_t cap)
  qlora_kernel_name: { parameters: ["buffer", "u32"], result: "u32" },
  // uint32_t qlora_kernel_report(uint8_t *buf, uint32_t cap)
  qlora_kernel_report: { parameters: ["buffer", "u32"], result: "u32" },
  // uint32_t qlora_kernels_used(uint8_t *buf, uint32_t cap)
  qlora_kernels_used: { parameters: ["buffer", "u32"], result: "u32" },
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
  //   uint32_t y_len, int32_t accumulate, int32_t compute, const float *left, uint32_t left_len,
  //   const float *right, uint32_t right_len, uint32_t rank, float scale)
  qlora_nf4_matmul: {
    parameters: [
      "u32",
      "buffer",
      "u32",
      "u32",
      "buffer",
      "u32",
      "i32",
      "i32",
      "buffer",
      "u32",
      "buffer",
      "u32",
      "u32",
      "f32",
    ],
    result: "i32",
  },
  // int32_t qlora_nf4_matmul_t(uint32_t handle, const float *dy, uint32_t dy_len, uint32_t m, float *dx,
  //   uint32_t dx_len, int32_t accumulate, int32_t compute, const float *left, uint32_t left_len,
  //   const float *right, uint32_t right_len, uint32_t rank, float scale)
  qlora_nf4_matmul_t: {
    parameters: [
      "u32",
      "buffer",
      "u32",
      "u32",
      "buffer",
      "u32",
      "i32",
      "i32",
      "buffer",
      "u32",
      "buffer",
      "u32",
      "u32",
      "f32",
    ],
    result: "i32",
  },

  // int32_t qlora_bf16_matmul(const uint16_t *w, uint32_t w_len, uint32_t rows, uint32_t cols, const float *x,
  //   uint32_t x_len, uint32_t m, float *y, uint32_t y_len, int32_t accumulate, int32_t compute)
  qlora_bf16_matmul: {
    parameters: ["buffer", "u32", "u32", "u32", "buffer", "u32", "u32", "buffer", "u32", "i32", "i32"],
    result: "i32",
  },
  // int32_t qlora_bf16_matmul_t(const uint16_t *w, uint32_t w_len, uint32_t rows, uint32_t cols,
  //   const float *dy, uint32_t dy_len, uint32_t m, float *dx, uint32_t dx_len, int32_t accumulate,
  //   int32_t compute)
  qlora_bf16_matmul_t: {
    parameters: ["buffer", "u32", "u32", "u32", "buffer", "u32", "u32", "buffer", "u32", "i32", "i32"],
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
  // int32_t qlora_ggml_quantize(uint32_t ggml_type, const float *src, uint32_t src_len, uint8_t *dst,
  //   uint32_t dst_len)
  qlora_ggml_quantize: { parameters: ["u32", "buffer", "u32", "buffer", "u32"], result: "i32" },

  // --- ops (rust-kernels/src/abi/ops.rs) ---
  // int32_t qlora_rmsnorm_forward(const float *x, uint32_t x_len, const float *w, uint32_t w_len,
  //   uint32_t rows, uint32_t dim, float eps, float *y, uint32_t y_len, float *rstd, uint32_t rstd_len)
  qlora_rmsnorm_forward: {
    parameters: ["buffer", "u32", "buffer", "u32", "u32", "u32", "f32", "buffer", "u32", "buffer", "u32"],
    result: "i32",
  },
  // int32_t qlora_rmsnorm_backward(const float *dy, uint32_t dy_len, const float *x, uint32_t x_len,
  //   const float *w, uint32_t w_len, const float *rstd, uint32_t rstd_len, uint32_t rows, uint32_t dim,
  //   float *dx, uint32_t dx_len, uint32_t accumulate, float *dw, uint32_t dw_len)
  qlora_rmsnorm_backward: {
    parameters: [
      "buffer",
      "u32",
      "buffer",
      "u32",
      "buffer",
      "u32",
      "buffer",
      "u32",
      "u32",
      "u32",
      "buffer",
      "u32",
      "u32",
      "buffer",
      "u32",
    ],
    result: "i32",
  },
  // int32_t qlora_rope_cos_sin(const uint32_t *positions, uint32_t positions_len, const float *inv_freq,
  //   uint32_t inv_freq_len, uint32_t tokens, uint32_t half, float attention_scaling, float *cos,
  //   uint32_t cos_len, float *sin, uint32_t sin_len)
  qlora_rope_cos_sin: {
    parameters: ["buffer", "u32", "buffer", "u32", "u32", "u32", "f32", "buffer", "u32", "buffer", "u32"],
    result: "i32",
  },
  // int32_t qlora_rope_apply(float *x, uint32_t x_len, uint32_t tokens, uint32_t heads, uint32_t head_dim,
  //   uint32_t rotary_dim, const float *cos, uint32_t cos_len, const float *sin, uint32_t sin_len,
  //   uint32_t inverse)
  qlora_rope_apply: {
    parameters: ["buffer", "u32", "u32", "u32", "u32", "u32", "buffer", "u32", "buffer", "u32", "u32"],
    result: "i32",
  },
  // int32_t qlora_swiglu_forward(const float *g, uint32_t g_len, const float *u, uint32_t u_len, float *h,
  //   uint32_t h_len)
  qlora_swiglu_forward: { parameters: ["buffer", "u32", "buffer", "u32", "buffer", "u32"], result: "i32" },
  // int32_t qlora_swiglu_backward(const float *dh, uint32_t dh_len, const float *g, uint32_t g_len,
  //   const float *u, uint32_t u_len, float *dg, uint32_t dg_len, float *du, uint32_t du_len)
  qlora_swiglu_backward: {
    parameters: ["buffer", "u32", "buffer", "u32", "buffer", "u32", "buffer", "u32", "buffer", "u32"],
    result: "i32",
  },
  // int32_t qlora_geglu_forward(const float *g, uint32_t g_len, const float *u, uint32_t u_len, float *h,
  //   uint32_t h_len)
  qlora_geglu_forward: { parameters: ["buffer", "u32", "buffer", "u32", "buffer", "u32"], result: "i32" },
  // int32_t qlora_geglu_backward(const float *dh, uint32_t dh_len, const float *g, uint32_t g_len,
  //   const float *u, uint32_t u_len, float *dg, uint32_t dg_len, float *du, uint32_t du_len)
  qlora_geglu_backward: {
    parameters: ["buffer", "u32", "buffer", "u32", "buffer", "u32", "buffer", "u32", "buffer", "u32"],
    result: "i32",
  },
  // int32_t qlora_attention_forward(const float *q, uint32_t q_len, const float *k, uint32_t k_len,
  //   const float *v, uint32_t v_len, uint32_t tokens, uint32_t keys, uint32_t heads, uint32_t kv_heads,
  //   uint32_t head_dim, uint32_t q_offset, uint32_t window, float *o, uint32_t o_len, float *lse,
  //   uint32_t lse_len)
  qlora_attention_forward: {
    parameters: [
      "buffer",
      "u32",
      "buffer",
      "u32",
      "buffer",
      "u32",
      "u32",
      "u32",
      "u32",
      "u32",
      "u32",
      "u32",
      "u32",
      "buffer",
      "u32",
      "buffer",
      "u32",
    ],
    result: "i32",
  },
  // int32_t qlora_attention_backward(const float *q, uint32_t q_len, const float *k, uint32_t k_len,
  //   const float *v, uint32_t v_len, const float *o, uint32_t o_len, const float *lse, uint32_t lse_len,
  //   const float *dout, uint32_t dout_len, uint32_t tokens, uint32_t keys, uint32_t heads,
  //   uint32_t kv_heads, uint32_t head_dim, uint32_t q_offset, uint32_t window, float *dq, uint32_t dq_len,
  //   float *dk, uint32_t dk_len, float *dv, uint32_t dv_len)
  qlora_attention_backward: {
    parameters: [
      "buffer",
      "u32",
      "buffer",
      "u32",
      "buffer",
      "u32",
      "buffer",
      "u32",
      "buffer",
      "u32",
      "buffer",
      "u32",
      "u32",
      "u32",
      "u32",
      "u32",
      "u32",
      "u32",
      "u32",
      "buffer",
      "u32",
      "buffer",
      "u32",
      "buffer",
      "u32",
    ],
    result: "i32",
  },
  // int32_t qlora_cross_entropy(float *logits, uint32_t logits_len, const int32_t *targets,
  //   uint32_t targets_len, uint32_t rows, uint32_t vocab, float grad_scale, double *out, uint32_t out_len)
  qlora_cross_entropy: {
    parameters: ["buffer", "u32", "buffer", "u32", "u32", "u32", "f32", "buffer", "u32"],
    result: "i32",
  },
  // int32_t qlora_log_softmax_gather(const float *logits, uint32_t logits_len, const int32_t *targets,
  //   uint32_t targets_len, uint32_t rows, uint32_t vocab, float *out, uint32_t out_len)
  qlora_log_softmax_gather: {
    parameters: ["buffer", "u32", "buffer", "u32", "u32", "u32", "buffer", "u32"],
    result: "i32",
  },
  // int32_t qlora_adamw(float *p, uint32_t p_len, const float *g, uint32_t g_len, float *m, uint32_t m_len,
  //   float *v, uint32_t v_len, uint32_t step, double lr, double beta1, double beta2, double eps,
  //   double weight_decay)
  qlora_adamw: {
    parameters: [
      "buffer",
      "u32",
      "buffer",
      "u32",
      "buffer",
      "u32",
      "buffer",
      "u32",
      "u32",
      "f64",
      "f64",
      "f64",
      "f64",
      "f64",
    ],
    result: "i32",
  },
  // int32_t qlora_sum_squares(const float *x, uint32_t x_len, double *out, uint32_t out_len)
  qlora_sum_squares: { parameters: ["buffer", "u32", "buffer", "u32"], result: "i32" },
  // int32_t qlora_scale(float *x, uint32_t x_len, float c)
  qlora_scale: { parameters: ["buffer", "u32", "f32"], result: "i32" },
  // int32_t qlora_add_scaled(float *y, uint32_t y_len, float a, const float *x, uint32_t x_len)
  qlora_add_scaled: { parameters: ["buffer", "u32", "f32", "buffer", "u32"], result: "i32" },
  // int32_t qlora_dropout(const float *x, uint32_t x_len, float *out, uint32_t out_len, float p,
  //   uint32_t seed_lo, uint32_t seed_hi)
  qlora_dropout: { parameters: ["buffer", "u32", "buffer", "u32", "f32", "u32", "u32"], result: "i32" },
  // int32_t qlora_checksum64(const uint8_t *data, uint32_t len, uint32_t *out, uint32_t out_len)
  qlora_checksum64: { parameters: ["buffer", "u32", "buffer", "u32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;
