/**
 * What of the generated text may be shown yet. The decoding of the tokens so far grows token by token;
 * a piece is released only when it is whole (a token can end inside a UTF-8 character) and cannot be
 * the beginning of a stop sequence (OpenAI's `stop`: the answer ends before the first one, which is
 * never shown).
 */
export class TextStream {
  /** The text so far, cut before a stop sequence once one has appeared. */
  text = "";
  /** Whether a stop sequence has appeared (generation should end). */
  stopped = false;
  #released = 0;
  readonly #stops: readonly string[];
  readonly #longest: number;

  constructor(stopSequences: readonly string[] = []) {
    for (const s of stopSequences) {
      if (typeof s !== "string" || s.length === 0) {
        throw new RangeError(`a stop sequence must be a non-empty string, got ${JSON.stringify(s)}`);
      }
    }
    this.#stops = stopSequences;
    this.#longest = Math.max(0, ...stopSequences.map((s) => s.length));
  }

  /** Takes the decoding of every token so far and returns the newly releasable piece (maybe ""). */
  update(decoded: string): string {
    if (this.stopped) return "";
    // Hold a broken last character back until the next token completes it.
    if (decoded.endsWith("\uFFFD")) return "";
    this.text = decoded;
    // A stop sequence can only start in the held-back tail or later: search from there.
    const from = Math.max(0, this.#released - this.#longest + 1);
    let cut = -1;
    for (const stop of this.#stops) {
      const at = decoded.indexOf(stop, from);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.stopped = true;
      this.text = decoded.slice(0, cut);
      return this.#release(cut);
    }
    return this.#release(decoded.length - this.#partialStop(decoded));
  }

  /** Generation ended without a stop sequence: releases what was held back. */
  finish(decoded: string): string {
    if (this.stopped) return "";
    this.text = decoded;
    return this.#release(decoded.length);
  }

  #release(upTo: number): string {
    if (upTo <= this.#released) return "";
    const piece = this.text.slice(this.#released, upTo);
    this.#released = upTo;
    return piece;
  }

  /** Length of the longest end of `text` that is the start of a stop sequence. */
  #partialStop(text: string): number {
    for (let n = Math.min(this.#longest - 1, text.length); n > 0; n--) {
      const tail = text.slice(text.length - n);
      if (this.#stops.some((s) => s.startsWith(tail))) return n;
    }
    return 0;
  }
}
