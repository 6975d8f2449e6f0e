/**
 * The loss curve as an SVG string, drawn by Observable Plot on linkedom's server-side DOM (there is no
 * browser document in Deno). Training loss per step as a line (plus a moving average once there are enough
 * steps to be noisy), evaluation loss as dots joined by a dashed line, and a legend in the top-right corner.
 */
import * as Plot from "@observablehq/plot";
import { parseHTML } from "linkedom";

export interface LossPoint {
  step: number;
  loss: number;
}

export interface LossPlotOptions {
  /** The x axis spans 0…totalSteps when given (a live plot then keeps its scale while it grows). */
  totalSteps?: number;
  /** Pixels (defaults 640 × 280). */
  width?: number;
  height?: number;
  /** Steps averaged by the smoothed training line (default 10; drawn only with at least twice as many steps). */
  smoothing?: number;
}

const SVG_NS = "http://www.w3.org/2000/svg";
const TRAIN_COLOR = "#4269d0";
const EVAL_COLOR = "#ef7a18";

type PlotDocument = NonNullable<Plot.PlotOptions["document"]>;

let dom: PlotDocument | undefined;

/** One server-side document for every plot (Plot only uses it to create elements). */
function plotDocument(): PlotDocument {
  if (dom === undefined) {
    // linkedom's types assume the DOM library, which Deno's are without: only `document` is used.
    const window = parseHTML("<!DOCTYPE html><html><head></head><body></body></html>") as unknown as {
      document: PlotDocument;
    };
    dom = window.document;
  }
  return dom;
}

/** An `<svg>` of the training and evaluation losses; non-finite losses are left out. */
export function lossPlotSvg(
  train: readonly LossPoint[],
  evals: readonly LossPoint[] = [],
  opts: LossPlotOptions = {},
): string {
  const finite = (points: readonly LossPoint[]) => points.filter((p) => Number.isFinite(p.loss));
  const t = finite(train);
  const e = finite(evals);
  const smoothing = opts.smoothing ?? 10;
  const marks: Plot.Markish[] = [];
  if (t.length > 0) {
    const raw = t.length >= 2 * smoothing;
    marks.push(
      Plot.line(t, { x: "step", y: "loss", stroke: TRAIN_COLOR, strokeOpacity: raw ? 0.35 : 1 }),
      Plot.dot(raw ? [] : t, { x: "step", y: "loss", fill: TRAIN_COLOR, r: 2 }),
    );
    if (raw) {
      marks.push(
        Plot.line(
          t,
          Plot.windowY({ k: smoothing, anchor: "end" }, { x: "step", y: "loss", stroke: TRAIN_COLOR }),
        ),
      );
    }
    marks.push(legend(raw ? `━ train loss (mean of ${smoothing} steps)` : "━ train loss", TRAIN_COLOR, 0));
  }
  if (e.length > 0) {
    marks.push(
      Plot.line(e, { x: "step", y: "loss", stroke: EVAL_COLOR, strokeDasharray: "4,3" }),
      Plot.dot(e, { x: "step", y: "loss", fill: EVAL_COLOR, r: 4 }),
      legend("● eval loss", EVAL_COLOR, t.length > 0 ? 1 : 0),
    );
  }
  const lastStep = Math.max(1, ...t.map((p) => p.step), ...e.map((p) => p.step));
  const xMax = Math.max(opts.totalSteps ?? 0, lastStep);
  // Steps are whole numbers: a short run gets a tick per step instead of 0.5, 1.5, …
  const xTicks = xMax <= 12 ? Array.from({ length: xMax + 1 }, (_, i) => i) : undefined;
  const element = Plot.plot({
    document: plotDocument(),
    width: opts.width ?? 640,
    height: opts.height ?? 280,
    grid: true,
    x: { label: "step", domain: [0, xMax], ticks: xTicks, tickFormat: "d" },
    y: { label: "loss", zero: false },
    marks,
  });
  const svg = element as unknown as {
    tagName: string;
    setAttribute(k: string, v: string): void;
    outerHTML: string;
  };
  if (svg.tagName.toLowerCase() !== "svg") {
    throw new Error(`lossPlotSvg: Plot returned a <${svg.tagName}>, expected an <svg>`);
  }
  // Standalone SVG (image/svg+xml, files) needs the namespace; Plot leaves it to the browser's DOM.
  svg.setAttribute("xmlns", SVG_NS);
  return svg.outerHTML;
}

/** A legend line in the top-right corner of the frame (`row` 0, 1, … downwards). */
function legend(text: string, color: string, row: number): Plot.Markish {
  return Plot.text([text], {
    frameAnchor: "top-right",
    dx: -4,
    dy: 4 + 14 * row,
    fill: color,
    textAnchor: "end",
    lineAnchor: "top",
  });
}
