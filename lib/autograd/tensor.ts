/**
 * A tensor of the training graph: f32 storage plus a shape, and the gradient buffer once one exists. No math
 * here; the ops in `ops/` compute with the Rust kernels and the tape routes gradients between them.
 *
 * `requiresGrad` marks trainable parameters (leaves) and every activation computed from one: only those ever
 * get a `grad`. Frozen weights (NF4, bf16, norms) are not tensors at all, so they can never get one.
 */
export class Tensor {
  /** Same length as `data`; absent until a gradient reaches this tensor. */
  grad?: Float32Array;

  constructor(
    public data: Float32Array,
    readonly shape: readonly number[],
    public requiresGrad = false,
    readonly name?: string,
  ) {
    const size = shape.reduce((a, b) => a * b, 1);
    if (!shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new RangeError(`Tensor${name ? ` ${name}` : ""}: bad shape [${shape}]`);
    }
    if (data.length !== size) {
      throw new RangeError(
        `Tensor${name ? ` ${name}` : ""}: data has ${data.length} elements, shape [${shape}] needs ${size}`,
      );
    }
  }

  /** A trainable leaf; its gradient buffer exists from the start (zeros) and is accumulated into. */
  static parameter(data: Float32Array, shape: readonly number[], name: string): Tensor {
    const t = new Tensor(data, shape, true, name);
    t.grad = new Float32Array(data.length);
    return t;
  }

  /** Elements, from the shape (stays right when an activation's buffer was freed after its last use). */
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** Rows of a 2-D `[rows, cols]` tensor (the only layout the ops use). */
  get rows(): number {
    return this.shape[0];
  }

  get cols(): number {
    return this.shape[1];
  }
}
