// Notebook display helpers (rich output in a Deno Jupyter kernel, plain text elsewhere). Named re-exports only.
export {
  bundleOf,
  DISPLAY,
  display,
  type Displayable,
  displayable,
  type DisplayOptions,
  type DisplaySink,
  inJupyter,
  isDisplayable,
  jupyterSink,
  LiveDisplay,
  type LiveDisplayOptions,
  type MimeBundle,
  type SinkOptions,
} from "./jupyter.ts";
export { escapeHtml } from "./html.ts";
export { type ModelFacts, ModelSummary, modelSummary, type ModelSummaryOptions } from "./model_summary.ts";
export {
  DatasetPreview,
  datasetPreview,
  type DatasetPreviewOptions,
  type PreviewRow,
  type PreviewToken,
  recordText,
  type TokenDecoder,
} from "./dataset_preview.ts";
export { type LossPlotOptions, lossPlotSvg, type LossPoint } from "./loss_plot.ts";
export {
  type MetricRow,
  MetricsTable,
  TrainingHistory,
  type TrainingHistoryOptions,
} from "./training_history.ts";
export {
  compareAnswers,
  compareExactMatch,
  Comparison,
  type ComparisonOptions,
  type ComparisonRow,
  promptText,
} from "./comparison.ts";
export { GenerationView, generationView, type GenerationViewOptions } from "./generation.ts";
