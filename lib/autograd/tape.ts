/**
 * The tape: each op that has a trainable input records one node (its inputs, outputs and a backward closure
 * written beside its forward in `ops/`). `backward(root)` seeds the root's gradient and walks the nodes in
 * reverse, running a node only when a gradient reached one of its outputs; an op records nothing when none
 * of its inputs requires a gradient, so the frozen part of a graph never costs a backward step.
 *
 * Gradient ownership: every `grad` buffer belongs to exactly one tensor. A backward either writes into the
 * input's buffer with a kernel's accumulate flag (`gradSink`) or hands over a buffer it computed and will not
 * touch again (`addGrad`: adopted as is when the input has none yet, else added with `addScaled`). After a
 * node ran, its outputs' gradients are dropped (every consumer has already contributed, since consumers were
 * recorded later) and so is the node, with the activations it kept: memory falls as backward proceeds.
 */
import { addScaled } from "../../ffi/ops.ts";
import type { Tensor } from "./tensor.ts";

interface Node {
  op: string;
  inputs: readonly Tensor[];
  outputs: readonly Tensor[];
  backward: () => void;
}

export class Tape {
  #nodes: Node[] = [];

  /** Nodes recorded so far. */
  get length(): number {
    return this.#nodes.length;
  }

  /** The ops recorded, in order (for tests and debugging). */
  get ops(): string[] {
    return this.#nodes.map((n) => n.op);
  }

  /**
   * Records `backward` for outputs computed from inputs; does nothing (and leaves the outputs without
   * `requiresGrad`) when no input requires a gradient. Returns whether it recorded.
   */
  record(op: string, inputs: readonly Tensor[], outputs: readonly Tensor[], backward: () => void): boolean {
    if (!inputs.some((t) => t.requiresGrad)) return false;
    for (const t of outputs) t.requiresGrad = true;
    this.#nodes.push({ op, inputs, outputs, backward });
    return true;
  }

  /**
   * Backpropagates from `root` (a 1-element loss unless `seed` gives its gradient) and empties the tape.
   * Leaves (parameters, inputs) keep their accumulated gradients; intermediate ones are freed on the way.
   */
  backward(root: Tensor, seed?: Float32Array): void {
    if (seed === undefined && root.size !== 1) {
      throw new RangeError(`Tape.backward: root has ${root.size} elements; pass its gradient as seed`);
    }
    if (seed !== undefined && seed.length !== root.size) {
      throw new RangeError(`Tape.backward: seed has ${seed.length} elements, root has ${root.size}`);
    }
    addGrad(root, seed ?? Float32Array.of(1));
    for (let node = this.#nodes.pop(); node; node = this.#nodes.pop()) {
      if (!node.outputs.some((t) => t.grad)) continue;
      node.backward();
      for (const t of node.outputs) t.grad = undefined;
    }
  }

  /** Drops every node (e.g. after an evaluation forward that recorded by mistake, or an aborted step). */
  clear(): void {
    this.#nodes = [];
  }
}

/** Gives `t` the gradient `g` (a buffer the caller never uses again): adopted if `t` has none, else added. */
export function addGrad(t: Tensor, g: Float32Array): void {
  if (g.length !== t.size) {
    throw new RangeError(`addGrad: gradient has ${g.length} elements, tensor has ${t.size}`);
  }
  if (t.grad === undefined) t.grad = g;
  else addScaled(t.grad, 1, g);
}

/**
 * Where a backward kernel writes `t`'s gradient: the existing buffer with `accumulate` set, or a new zeroed
 * buffer (now `t.grad`) that the kernel may overwrite.
 */
export function gradSink(t: Tensor): { buffer: Float32Array; accumulate: boolean } {
  if (t.grad !== undefined) return { buffer: t.grad, accumulate: true };
  t.grad = new Float32Array(t.size);
  return { buffer: t.grad, accumulate: false };
}
