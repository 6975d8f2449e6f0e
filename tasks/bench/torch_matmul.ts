/**
 * PyTorch's bf16 matmul for the bf16gemm section of `deno task bench`, in a child process that stays up
 * (`torch_bf16_matmul.py` under QLORA_REF_PYTHON), so the bench can alternate its timings with ours.
 */
import { fileURLToPath } from "node:url";
import type { GemmShape } from "./gemm.ts";

/** The child process; `time` runs one shape and direction there and returns its median GFLOP/s. */
export class TorchMatmul {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #lines: AsyncIterator<string>;
  version = "";

  private constructor(python: string, threads: number) {
    const script = fileURLToPath(new URL("./torch_bf16_matmul.py", import.meta.url));
    this.#child = new Deno.Command(python, {
      args: [script, String(threads)],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    this.#lines = this.#child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(splitLines())
      [Symbol.asyncIterator]();
  }

  /** Starts the child when QLORA_REF_PYTHON names a Python with torch; undefined otherwise. */
  static async start(threads: number): Promise<TorchMatmul | undefined> {
    const python = Deno.env.get("QLORA_REF_PYTHON");
    if (!python) return undefined;
    const torch = new TorchMatmul(python, threads);
    torch.version = (await torch.#answer()).torch as string;
    return torch;
  }

  async time(m: number, shape: GemmShape, dir: string, minSeconds: number): Promise<number> {
    const request = JSON.stringify([m, shape.inDim, shape.outDim, dir, minSeconds]) + "\n";
    await this.#writer.write(new TextEncoder().encode(request));
    return (await this.#answer()).gflops as number;
  }

  async #answer(): Promise<Record<string, unknown>> {
    const next = await this.#lines.next();
    if (next.done) throw new Error("torch_bf16_matmul.py ended without an answer (see its error above)");
    return JSON.parse(next.value);
  }

  async close(): Promise<void> {
    await this.#writer.close();
    const status = await this.#child.status;
    if (!status.success) throw new Error(`torch_bf16_matmul.py failed with code ${status.code}`);
  }
}

/** Splits a text stream into lines. */
function splitLines(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, controller) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const line of parts) if (line.trim()) controller.enqueue(line);
    },
    flush(controller) {
      if (rest.trim()) controller.enqueue(rest);
    },
  });
}
