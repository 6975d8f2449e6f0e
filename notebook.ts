// qlora-deno for notebooks: everything of mod.ts plus the display helpers (tables, live loss plots, generation
// views), which load Observable Plot and linkedom — kept out of mod.ts so scripts do not pay for them.
export * from "./mod.ts";
export {
  compareAnswers,
  compareExactMatch,
  datasetPreview,
  DISPLAY,
  display,
  type Displayable,
  generationView,
  inJupyter,
  LiveDisplay,
  lossPlotSvg,
  type MimeBundle,
  modelSummary,
  TrainingHistory,
} from "./lib/display/mod.ts";
