/**
 * Training checkpoints: `outputDir/checkpoint-<step>/` holds everything a resumed run needs to continue
 * exactly as the uninterrupted run would have:
 *
 *   adapter_model.safetensors   the trainable parameters, f32, under their names (with
 *   adapter_config.json         an adapter config: a PEFT adapter that `PeftModel.from_pretrained` loads)
 *   optimizer.safetensors       AdamW's `<name>.exp_avg` and `<name>.exp_avg_sq`, and its step count
 *   trainer_state.json          step, data-stream position, RNG state, best evaluation, elapsed time, the
 *                               run's options, and the size of every file above (written last)
 *
 * Crash safety (a SIGKILL or power loss at any moment): the directory is written as
 * `checkpoint-<step>.tmp/`, each file synced, then renamed into place in one step; only then is the
 * `latest` pointer replaced (temp file + rename) and older checkpoints pruned. `findLatestCheckpoint`
 * ignores `.tmp` directories and any directory whose files do not validate (missing, wrong size, a
 * damaged safetensors header, unreadable state), so a crash can cost the checkpoint being written but
 * never leaves one that resumes wrongly. The `latest` file is for people and tools; the search does not
 * need it.
 */
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { basename, join } from "node:path";
import type { StreamState } from "../data/batch.ts";
import type { AdapterConfig } from "../io/peft/config.ts";
import { ADAPTER_WEIGHTS_FILE } from "../io/peft/read.ts";
import type { LoraWeights } from "../lora/weights.ts";
import { rankOf } from "../io/peft/targets.ts";
import { writePeftAdapter } from "../io/peft/write.ts";
import { SafetensorsReader } from "../io/safetensors/reader.ts";
import { type TensorToWrite, writeSafetensors } from "../io/safetensors/writer.ts";
import type { OptimizerState, Parameter } from "./optimizer.ts";

export const CHECKPOINT_PREFIX = "checkpoint-";
export const TMP_SUFFIX = ".tmp";
export const LATEST_FILE = "latest";
/** Names the checkpoint with the best eval loss (kept by pruning, whatever its age). */
export const BEST_FILE = "best";
export const OPTIMIZER_FILE = "optimizer.safetensors";
export const TRAINER_STATE_FILE = "trainer_state.json";
const FORMAT = "qlora-deno-checkpoint";
const VERSION = 1;

/** The trainer's own state: everything but tensors. */
export interface TrainerState {
  /** Optimizer steps done. */
  step: number;
  /** Where the training batch stream is (the next batch comes from here). */
  stream: StreamState;
  /** The model's dropout generator (null when the model has none). */
  rng: [number, number, number, number] | null;
  /** Lowest validation loss so far and its step (null before the first evaluation). */
  bestEvalLoss: number | null;
  bestEvalStep: number | null;
  /** Evaluations in a row without a new best (early stopping); absent in older checkpoints. */
  evalsWithoutImprovement?: number;
  /** True once early stopping ended the run (a resume then has nothing left to do). */
  earlyStopped?: boolean;
  /** Seconds spent in training steps (evaluation and saving excluded), over all resumed runs. */
  elapsedSeconds: number;
  /** Real (non-padding) tokens trained on so far. */
  tokensSeen: number;
  /** The options of the run that saved it (to tell a resumed run what changed). */
  args: unknown;
}

export interface CheckpointContents {
  trainer: TrainerState;
  parameters: readonly Parameter[];
  optimizer: OptimizerState;
  /** With a config, the parameters are saved as a PEFT adapter (their names must be PEFT's). */
  adapter?: AdapterConfig;
}

export interface CheckpointRef {
  dir: string;
  step: number;
}

export interface LoadedCheckpoint extends CheckpointRef {
  trainer: TrainerState;
  /** Parameter values by name. */
  parameters: Map<string, Float32Array>;
  optimizer: OptimizerState;
}

/** What trainer_state.json holds besides the state itself. */
interface StateFile {
  format: typeof FORMAT;
  version: number;
  trainer: TrainerState;
  /** Parameter names in order (the optimizer state follows it). */
  parameters: string[];
  optimizerStep: number;
  /** Size in bytes of every other file of the checkpoint. */
  files: Record<string, number>;
}

/**
 * Writes the checkpoint of `contents.trainer.step` crash-safely; keeps the newest `keep` (and the best one).
 * With `best`, the `best` pointer names it before older ones are pruned. Returns its dir.
 */
export function saveCheckpoint(
  outputDir: string,
  contents: CheckpointContents,
  keep = Infinity,
  options: { best?: boolean } = {},
): string {
  const { step } = contents.trainer;
  const name = checkpointName(step);
  const dir = join(outputDir, name);
  const tmp = dir + TMP_SUFFIX;
  mkdirSync(outputDir, { recursive: true });
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);

  saveParameters(tmp, contents.parameters, contents.adapter);
  writeSafetensors(join(tmp, OPTIMIZER_FILE), optimizerTensors(contents.optimizer), {
    step: String(contents.optimizer.step),
  });
  const files: Record<string, number> = {};
  for (const file of readdirSync(tmp).sort()) files[file] = statSync(join(tmp, file)).size;
  const state: StateFile = {
    format: FORMAT,
    version: VERSION,
    trainer: contents.trainer,
    parameters: contents.parameters.map((p) => p.name),
    optimizerStep: contents.optimizer.step,
    files,
  };
  writeFileDurably(join(tmp, TRAINER_STATE_FILE), JSON.stringify(state, null, 2) + "\n");
  syncDir(tmp);

  // A leftover directory of the same step (an abandoned run's) is replaced.
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  syncDir(outputDir);
  pointLatestAt(outputDir, name);
  if (options.best) pointBestAt(outputDir, name);
  pruneCheckpoints(outputDir, keep, step);
  return dir;
}

/** Replaces the `latest` pointer (a kill between a checkpoint's rename and this leaves it one behind). */
export function pointLatestAt(outputDir: string, checkpointName: string): void {
  writeFileDurably(join(outputDir, LATEST_FILE), checkpointName + "\n");
  syncDir(outputDir);
}

/** Replaces the `best` pointer. */
export function pointBestAt(outputDir: string, checkpointName: string): void {
  writeFileDurably(join(outputDir, BEST_FILE), checkpointName + "\n");
  syncDir(outputDir);
}

/** The checkpoint the `best` pointer names, when it is there and valid. */
export function findBestCheckpoint(outputDir: string): CheckpointRef | undefined {
  const name = bestName(outputDir);
  const m = name === undefined ? null : /^checkpoint-(\d+)$/.exec(name);
  if (!m) return undefined;
  const dir = join(outputDir, name!);
  return checkpointProblem(dir) === undefined ? { dir, step: Number(m[1]) } : undefined;
}

function bestName(outputDir: string): string | undefined {
  const path = join(outputDir, BEST_FILE);
  return existsSync(path) ? readFileSync(path, "utf8").trim() : undefined;
}

/** The valid checkpoint with the highest step, or undefined. */
export function findLatestCheckpoint(outputDir: string): CheckpointRef | undefined {
  const candidates = checkpointDirs(outputDir).sort((a, b) => b.step - a.step);
  return candidates.find((c) => checkpointProblem(c.dir) === undefined);
}

/** Every `checkpoint-<step>` directory (valid or not; `.tmp` ones excluded), in step order. */
export function checkpointDirs(outputDir: string): CheckpointRef[] {
  if (!existsSync(outputDir)) return [];
  const out: CheckpointRef[] = [];
  for (const entry of readdirSync(outputDir, { withFileTypes: true })) {
    const m = /^checkpoint-(\d+)$/.exec(entry.name);
    if (m && entry.isDirectory()) out.push({ dir: join(outputDir, entry.name), step: Number(m[1]) });
  }
  return out.sort((a, b) => a.step - b.step);
}

/** Why `dir` is not a usable checkpoint, or undefined when it is. Reads only headers and sizes. */
export function checkpointProblem(dir: string): string | undefined {
  let state: StateFile;
  try {
    state = readState(dir);
  } catch (error) {
    return (error as Error).message;
  }
  const m = /checkpoint-(\d+)$/.exec(dir);
  if (m && Number(m[1]) !== state.trainer.step) {
    return `${dir}: ${TRAINER_STATE_FILE} is for step ${state.trainer.step}`;
  }
  for (const [file, size] of Object.entries(state.files)) {
    const path = join(dir, file);
    if (!existsSync(path)) return `${path}: missing`;
    const actual = statSync(path).size;
    if (actual !== size) return `${path}: ${actual} bytes, expected ${size}`;
    if (file.endsWith(".safetensors")) {
      try {
        SafetensorsReader.open(path).close();
      } catch (error) {
        return (error as Error).message;
      }
    }
  }
  for (const required of [ADAPTER_WEIGHTS_FILE, OPTIMIZER_FILE]) {
    if (!(required in state.files)) return `${dir}: ${TRAINER_STATE_FILE} does not list ${required}`;
  }
  return undefined;
}

/** Reads a checkpoint written by `saveCheckpoint` (validating it first). */
export function loadCheckpoint(dir: string): LoadedCheckpoint {
  const problem = checkpointProblem(dir);
  if (problem !== undefined) throw new Error(`cannot resume from ${dir}: ${problem}`);
  const state = readState(dir);
  const parameters = new Map<string, Float32Array>();
  {
    using reader = SafetensorsReader.open(join(dir, ADAPTER_WEIGHTS_FILE));
    for (const name of state.parameters) parameters.set(name, readF32(reader, name));
  }
  using reader = SafetensorsReader.open(join(dir, OPTIMIZER_FILE));
  const moments = state.parameters.map((name) => ({
    name,
    m: readF32(reader, `${name}.exp_avg`),
    v: readF32(reader, `${name}.exp_avg_sq`),
  }));
  return {
    dir,
    step: state.trainer.step,
    trainer: state.trainer,
    parameters,
    optimizer: { step: state.optimizerStep, moments },
  };
}

/**
 * Writes parameters into `dir` as `adapter_model.safetensors` (+ `adapter_config.json` when a PEFT config is
 * given: the names must then be PEFT's `base_model.model.<module>.lora_{A,B}.weight`).
 */
export function saveParameters(dir: string, parameters: readonly Parameter[], adapter?: AdapterConfig): void {
  mkdirSync(dir, { recursive: true });
  if (adapter === undefined) {
    const tensors = parameters.map((p) => ({
      name: p.name,
      dtype: "F32" as const,
      shape: [p.data.length],
      data: p.data,
    }));
    writeSafetensors(join(dir, ADAPTER_WEIGHTS_FILE), tensors, { format: "pt" });
    return;
  }
  writePeftAdapter(dir, adapter, peftLayers(parameters, adapter));
}

/** Removes `checkpoint-*.tmp` directories and the `latest` pointer's temp file (what a crash leaves). */
export function removePartialCheckpoints(outputDir: string): string[] {
  if (!existsSync(outputDir)) return [];
  const removed: string[] = [];
  for (const entry of readdirSync(outputDir)) {
    if (
      /^checkpoint-\d+\.tmp$/.test(entry) || entry === LATEST_FILE + TMP_SUFFIX ||
      entry === BEST_FILE + TMP_SUFFIX
    ) {
      rmSync(join(outputDir, entry), { recursive: true, force: true });
      removed.push(entry);
    }
  }
  return removed;
}

/** Deletes checkpoint directories that are invalid or beyond `step` (an abandoned run's future). */
export function removeCheckpointsAfter(outputDir: string, step: number): string[] {
  const removed: string[] = [];
  for (const c of checkpointDirs(outputDir)) {
    if (c.step > step || checkpointProblem(c.dir) !== undefined) {
      rmSync(c.dir, { recursive: true, force: true });
      removed.push(c.dir);
    }
  }
  return removed;
}

export function checkpointName(step: number): string {
  return `${CHECKPOINT_PREFIX}${step}`;
}

// ---------------------------------------------------------------------------------------------------------

/**
 * Keeps the newest `keep` checkpoints at or before `step`, plus the one the `best` pointer names. (Saving
 * prunes after the new checkpoint is in place, so a crash between the two leaves one too many: resuming
 * prunes again.)
 */
export function pruneCheckpoints(outputDir: string, keep: number, step: number): void {
  const best = bestName(outputDir);
  const older = checkpointDirs(outputDir).filter((c) => c.step <= step);
  for (const c of older.slice(0, Math.max(0, older.length - keep))) {
    if (basename(c.dir) !== best) rmSync(c.dir, { recursive: true, force: true });
  }
}

/** PEFT layers from parameters named `base_model.model.<module>.lora_{A,B}.weight`. */
function peftLayers(parameters: readonly Parameter[], adapter: AdapterConfig): Map<string, LoraWeights> {
  const parts = new Map<string, { A?: Float32Array; B?: Float32Array }>();
  for (const p of parameters) {
    const m = /^base_model\.model\.(.+)\.lora_(A|B)\.weight$/.exec(p.name);
    if (!m) throw new RangeError(`parameter "${p.name}" is not named as a PEFT LoRA matrix`);
    const entry = parts.get(m[1]) ?? {};
    entry[m[2] as "A" | "B"] = p.data;
    parts.set(m[1], entry);
  }
  const layers = new Map<string, LoraWeights>();
  for (const [module, { A, B }] of parts) {
    if (!A || !B) throw new RangeError(`module ${module} has lora_${A ? "B" : "A"} missing`);
    const { r, scale } = rankOf(adapter, module);
    layers.set(module, { A, B, r, scale });
  }
  return layers;
}

function optimizerTensors(state: OptimizerState): TensorToWrite[] {
  return state.moments.flatMap(({ name, m, v }) => [
    { name: `${name}.exp_avg`, dtype: "F32" as const, shape: [m.length], data: m },
    { name: `${name}.exp_avg_sq`, dtype: "F32" as const, shape: [v.length], data: v },
  ]);
}

function readF32(reader: SafetensorsReader, name: string): Float32Array {
  if (!reader.has(name)) throw new Error(`${reader.path}: no tensor "${name}"`);
  const t = reader.readTensorF32(name);
  // A fresh copy with its own buffer (the read already is one).
  return t.data;
}

function readState(dir: string): StateFile {
  const path = join(dir, TRAINER_STATE_FILE);
  if (!existsSync(path)) throw new Error(`${path}: missing`);
  let state: StateFile;
  try {
    state = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new Error(`${path}: not valid JSON (${(error as Error).message})`);
  }
  const t = state?.trainer;
  const ok = state?.format === FORMAT && state.version === VERSION && typeof t === "object" && t !== null &&
    Number.isInteger(t.step) && typeof t.stream === "object" && Array.isArray(state.parameters) &&
    Number.isInteger(state.optimizerStep) && typeof state.files === "object" && state.files !== null;
  if (!ok) throw new Error(`${path}: not a ${FORMAT} state of version ${VERSION}`);
  return state;
}

/** Writes `path` so that it is either absent or whole: temp file, fsync, rename. */
function writeFileDurably(path: string, text: string): void {
  const tmp = path + TMP_SUFFIX;
  const fd = openSync(tmp, "w");
  try {
    const bytes = new TextEncoder().encode(text);
    for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** fsync a directory so renames inside it survive a power loss (best effort: not every OS allows it). */
function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Windows cannot open directories; the renames are still atomic there.
  }
}
