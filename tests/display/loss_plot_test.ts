import assert from "node:assert/strict";
import { lossPlotSvg } from "../../lib/display/loss_plot.ts";

const TRAIN = Array.from({ length: 8 }, (_, i) => ({ step: i + 1, loss: 3 - 0.25 * i }));
const EVALS = [{ step: 0, loss: 3.2 }, { step: 8, loss: 1.5 }];

const count = (svg: string, re: RegExp) => svg.match(re)?.length ?? 0;

Deno.test("lossPlotSvg: a standalone <svg> root with the SVG namespace", () => {
  const svg = lossPlotSvg(TRAIN, EVALS);
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.ok(svg.endsWith("</svg>"));
  assert.match(svg, /viewBox="0 0 640 280"/);
});

Deno.test("lossPlotSvg: a line and a dot per training step, a dot per evaluation, a legend", () => {
  const svg = lossPlotSvg(TRAIN, EVALS);
  assert.equal(count(svg, /<circle /g), TRAIN.length + EVALS.length);
  assert.equal(count(svg, /<circle [^>]*r="4"/g), EVALS.length);
  assert.ok(count(svg, /<path [^>]*d="M/g) >= 2, "the train and eval lines");
  assert.match(svg, />━ train loss<\/text>/);
  assert.match(svg, />● eval loss<\/text>/);
  assert.match(svg, /step/);
  assert.match(svg, /loss/);
});

Deno.test("lossPlotSvg: long runs get a smoothed line over a faint raw one, without per-step dots", () => {
  const long = Array.from({ length: 40 }, (_, i) => ({ step: i + 1, loss: 2 + Math.sin(i) }));
  const svg = lossPlotSvg(long, [], { smoothing: 5 });
  assert.equal(count(svg, /<circle /g), 0);
  assert.match(svg, /stroke-opacity="0\.35"/);
  assert.match(svg, />━ train loss \(mean of 5 steps\)<\/text>/);
  assert.ok(count(svg, /<path [^>]*d="M/g) >= 2);
});

Deno.test("lossPlotSvg: the x axis reaches totalSteps, so a live plot keeps its scale", () => {
  const svg = lossPlotSvg(TRAIN.slice(0, 2), [], { totalSteps: 500 });
  assert.match(svg, />500<\/text>/);
  assert.doesNotMatch(lossPlotSvg(TRAIN.slice(0, 2), []), />500<\/text>/);
});

Deno.test("lossPlotSvg: non-finite losses are left out and an empty history still draws axes", () => {
  const svg = lossPlotSvg([{ step: 1, loss: 2 }, { step: 2, loss: NaN }, { step: 3, loss: Infinity }]);
  assert.equal(count(svg, /<circle /g), 1);
  const empty = lossPlotSvg([], [], { totalSteps: 10 });
  assert.match(empty, /^<svg /);
  assert.match(empty, /aria-label="x-axis tick"/);
  assert.equal(count(empty, /<circle /g), 0);
});

Deno.test("lossPlotSvg: a short run has one x tick per whole step, no fractional steps", () => {
  const svg = lossPlotSvg(TRAIN.slice(0, 4), [], { totalSteps: 4 });
  const xTicks = svg.match(/aria-label="x-axis tick label".*?<\/g>/s)![0];
  assert.deepEqual([...xTicks.matchAll(/>([^<]+)<\/text>/g)].map((m) => m[1]), ["0", "1", "2", "3", "4"]);
});
