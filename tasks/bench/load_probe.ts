/**
 * Child process of the bench: loads the weights of a model directory into NF4 and prints one JSON line
 * (load seconds, NF4 model bytes, peak RSS, what the NF4 cache did), so the peak RSS is that of loading alone.
 *
 *   deno run -A tasks/bench/load_probe.ts <model dir> [<NF4 cache root>]
 */
import { loadModel } from "../../lib/pretrained/load_model.ts";
import { peakRss } from "./measure.ts";

const [dir, cacheRoot] = Deno.args;
const { model, loadSeconds, nf4Cache } = await loadModel(dir, {
  progress: true,
  nf4Cache: cacheRoot ? { root: cacheRoot } : undefined,
});
console.log(JSON.stringify({ loadSeconds, weightBytes: model.weightBytes, peakRss: peakRss(), nf4Cache }));
model.close();
