/**
 * Child process of the bench: loads the weights of a model directory into NF4 and prints one JSON line
 * (load seconds, NF4 model bytes, peak RSS), so the peak RSS is that of loading alone.
 *
 *   deno run -A tasks/bench/load_probe.ts <model dir>
 */
import { join } from "node:path";
import { loadModelConfig } from "../../lib/nn/config.ts";
import { buildModel } from "../../lib/pretrained/load_model.ts";
import { SafetensorsSource } from "../../lib/pretrained/weight_source.ts";
import { peakRss } from "./measure.ts";

const dir = Deno.args[0];
const t0 = performance.now();
const config = await loadModelConfig(join(dir, "config.json"));
using source = SafetensorsSource.open(dir);
const model = buildModel(source, config, { progress: true });
const loadSeconds = (performance.now() - t0) / 1000;
console.log(JSON.stringify({ loadSeconds, weightBytes: model.weightBytes, peakRss: peakRss() }));
model.close();
