/**
 * One generated answer: the question, the answer, and how fast it came (prompt tokens, generated tokens,
 * tokens per second, why it stopped).
 */
import type { Generation } from "../generate/generate.ts";
import { escapeHtml } from "./html.ts";
import { DISPLAY, type Displayable, type MimeBundle } from "./jupyter.ts";

export interface GenerationViewOptions {
  /** A title, e.g. "before fine-tuning". */
  label?: string;
}

export class GenerationView implements Displayable {
  constructor(readonly prompt: string, readonly generation: Generation, readonly label?: string) {}

  /** `12 tokens in 0.4 s (30.1 tok/s), prompt 25 tokens, stopped at an end token`. */
  statsLine(): string {
    const g = this.generation;
    const rate = g.generateSeconds > 0 ? ` (${(g.ids.length / g.generateSeconds).toFixed(1)} tok/s)` : "";
    const why = {
      stop: "stopped at an end token",
      length: "stopped at the token limit",
      abort: "stopped early (aborted)",
    }[g.finishReason];
    return `${g.ids.length} tokens in ${
      g.generateSeconds.toFixed(2)
    } s${rate}, prompt ${g.promptTokens} tokens, ${why}`;
  }

  [DISPLAY](): MimeBundle {
    const title = this.label ? `${this.label}\n` : "";
    const box = "border-left:3px solid #4269d0;padding:2px 8px;margin:4px 0;white-space:pre-wrap";
    return {
      "text/plain": `${title}prompt: ${this.prompt}\nanswer: ${this.generation.text}\n(${this.statsLine()})`,
      "text/html": `<div>${this.label ? `<b>${escapeHtml(this.label)}</b>` : ""}` +
        `<div style="color:#666;white-space:pre-wrap">${escapeHtml(this.prompt)}</div>` +
        `<div style="${box}">${escapeHtml(this.generation.text)}</div>` +
        `<div style="font-size:11px;color:#666">${escapeHtml(this.statsLine())}</div></div>`,
    };
  }
}

/** A displayable of a prompt and the model's answer to it. */
export function generationView(
  prompt: string,
  generation: Generation,
  opts: GenerationViewOptions = {},
): GenerationView {
  return new GenerationView(prompt, generation, opts.label);
}
