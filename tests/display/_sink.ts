/** A fake notebook for the display tests: records what `Deno.jupyter.display` would have been sent. */
import type { DisplaySink, MimeBundle, SinkOptions } from "../../lib/display/jupyter.ts";

export interface Sent {
  bundle: MimeBundle;
  options: SinkOptions;
}

export class RecordingSink implements DisplaySink {
  readonly sent: Sent[] = [];
  /** Makes the next `display` call reject with this error. */
  failNext?: Error;

  async display(bundle: MimeBundle, options: SinkOptions): Promise<void> {
    await Promise.resolve();
    if (this.failNext) {
      const error = this.failNext;
      this.failNext = undefined;
      throw error;
    }
    this.sent.push({ bundle, options });
  }
}

/** A clock the test moves by hand. */
export class FakeClock {
  ms = 0;
  readonly now = () => this.ms;
}
