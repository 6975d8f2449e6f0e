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
import { outputBuffer, recycleBuffer } from "../../ffi/buffer_pool.ts";
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
   *
   * `release`: the caller promises it holds no intermediate tensor of this graph (only the root and leaves),
   * so each activation buffer is detached (`recycleBuffer`) as soon as the last node that reads it
   * ran, which frees it (or pools it for the next output) at once instead of whenever the garbage collector gets to it. V8 collects large
   * external buffers late, so without this the gradients of the backward and the next step's forward are
   * allocated while the activations still sit in memory (~100 MB of peak RSS on the training bench).
   * Intermediate gradients are detached once their node ran, unless an input adopted them.
   * Buffers the root or a leaf uses are kept. Closures must read only their inputs, outputs and what they
   * allocated themselves (as every op in `ops/` does).
   */
  backward(root: Tensor, seed?: Float32Array, { release = false }: { release?: boolean } = {}): void {
    if (seed === undefined && root.size !== 1) {
      throw new RangeError(`Tape.backward: root has ${root.size} elements; pass its gradient as seed`);
    }
    if (seed !== undefined && seed.length !== root.size) {
      throw new RangeError(`Tape.backward: seed has ${seed.length} elements, root has ${root.size}`);
    }
    // With `release`: for each buffer of a node's output, the earliest node that references it (as input
    // or output, in-place ops share buffers); once that node ran, no node left on the tape can read it.
    const lastUse = new Map<number, ArrayBufferLike[]>();
    if (release) {
      const earliest = new Map<ArrayBufferLike, number>();
      const keep = new Set<ArrayBufferLike>([root.data.buffer]);
      const outputs = new Set<Tensor>(this.#nodes.flatMap((n) => n.outputs));
      this.#nodes.forEach((node, i) => {
        for (const t of [...node.inputs, ...node.outputs]) {
          if (!outputs.has(t)) keep.add(t.data.buffer);
          if (!earliest.has(t.data.buffer)) earliest.set(t.data.buffer, i);
        }
      });
      for (const [buffer, i] of earliest) {
        if (keep.has(buffer) || !(buffer instanceof ArrayBuffer)) continue;
        lastUse.set(i, [...lastUse.get(i) ?? [], buffer]);
      }
    }
    addGrad(root, seed ?? Float32Array.of(1));
    // The caller's seed (and any gradient a leaf already holds) is never freed.
    const keepGrads = new Set<ArrayBufferLike>(seed ? [seed.buffer] : []);
    for (let node = this.#nodes.pop(); node; node = this.#nodes.pop()) {
      if (node.outputs.some((t) => t.grad)) {
        node.backward();
        for (const t of node.outputs) {
          // A gradient handed over to an input (`addGrad` adopts buffers) lives on; any other is dead.
          const g = t.grad?.buffer;
          t.grad = undefined;
          if (release && g instanceof ArrayBuffer && !node.inputs.some((x) => x.grad?.buffer === g)) {
            if (!keepGrads.has(g)) recycleBuffer(g);
          }
        }
      }
      for (const buffer of lastUse.get(this.#nodes.length) ?? []) {
        recycleBuffer(buffer);
      }
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
 * Where a backward kernel writes `t`'s gradient: the existing buffer with `accumulate` set, or a new buffer
 * (now `t.grad`, contents unspecified) that the kernel overwrites.
 */
export function gradSink(t: Tensor): { buffer: Float32Array; accumulate: boolean } {
  if (t.grad !== undefined) return { buffer: t.grad, accumulate: true };
  t.grad = outputBuffer(t.size);
  return { buffer: t.grad, accumulate: false };
}
