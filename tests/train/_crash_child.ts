/**
 * The child process of crash_test.ts: the fake training with a checkpoint every step, resuming from the
 * latest valid checkpoint. `deno run -A _crash_child.ts <outputDir>`; prints "started" once training is
 * about to begin (so the parent times its SIGKILL from there) and "done" at the end.
 */
import { train } from "../../lib/train/trainer.ts";
import { CRASH_ARGS, crashData, crashModel } from "./_crash_setup.ts";

const [outputDir] = Deno.args;
const model = crashModel();
model.parameters(); // build everything before announcing the start
console.log("started");
await train({ model, data: crashData(), args: { ...CRASH_ARGS, outputDir, resume: true }, progress: false });
console.log("done");
