/**
 * The training loop (mlx-lm's `train`, nanoGPT's loop): `train({model, optimizer, data, args, callbacks})`
 * runs `Trainer.step()` — the one hot path — until the last step, evaluating and checkpointing on the way.
 *
 * One step: `gradAccumulation` micro-batches, each `model.lossAndGrad` adding the gradient of its *summed*
 * token losses; the sum is turned into the gradient of the mean over all trained tokens of the step (so
 * accumulation equals one bigger batch), clipped to `maxGradNorm`, and AdamW moves the parameters at the
 * schedule's learning rate. All math on the parameters is in the Rust kernels.
 *
 * Determinism: the run is a function of (options, data, seed). A checkpoint holds the parameters, AdamW's
 * moments and step, the data stream's position and the dropout generator's state; the schedule is a pure
 * function of the step. So `--resume` continues bit for bit as if never interrupted.
 *
 * A non-finite loss or gradient norm stops the run before the update, with the last good checkpoint
 * untouched (the bad state is never saved).
 *
 * Several processes (lib/train/distributed.ts) run the same loop on the same global batches: `gradients`
 * shares each step's micro-batches among them and leaves the same summed gradient everywhere
 * (step_gradients.ts), every process applies the same update, and rank 0 alone logs, evaluates and saves.
 */
import { mkdirSync, rmSync } from "node:fs";
import { basename, join } from "node:path";
import { drainBufferPool } from "../../ffi/buffer_pool.ts";
import { type Batch, BatchStream } from "../data/batch.ts";
import type { AdapterConfig } from "../io/peft/config.ts";
import { parseTrainingArgs, type TrainingArgs, type TrainingArgsInput } from "./args.ts";
import {
  BEST_FILE,
  checkpointDirs,
  checkpointName,
  checkpointProblem,
  type CheckpointRef,
  findBestCheckpoint,
  findLatestCheckpoint,
  loadCheckpoint,
  type LoadedCheckpoint,
  pointBestAt,
  pointLatestAt,
  pruneCheckpoints,
  removeCheckpointsAfter,
  removePartialCheckpoints,
  saveCheckpoint,
  type TrainerState,
} from "./checkpoint.ts";
import { clipFactor, gradNorm, scaleGrads } from "./clip.ts";
import { earlyStoppingVerdict } from "./early_stopping.ts";
import { METRICS_FILE, MetricsLog } from "./metrics_log.ts";
import { AdamW, type Parameter } from "./optimizer.ts";
import { TrainProgress } from "./progress.ts";
import { learningRate, type ScheduleOptions } from "./schedule.ts";
import { LocalGradients, type StepGradients } from "./step_gradients.ts";

export type { Parameter } from "./optimizer.ts";

/** Summed token losses and how many tokens had a target. */
export interface LossSum {
  lossSum: number;
  lossTokens: number;
}

/** What the trainer needs from a model (LoraModel implements it; tests use small fakes). */
export interface TrainableModel {
  /** The trainable tensors, in a stable order, named (PEFT names for LoRA). */
  parameters(): Parameter[];
  /**
   * Forward and backward on one batch, in training mode (dropout on): adds to each `grad` the gradient of
   * `lossSum`, the **sum** of the batch's token losses (not their mean); returns that sum and its token count.
   */
  lossAndGrad(batch: Batch): LossSum;
  /** Forward only, evaluation mode (no dropout, no gradients). */
  loss(batch: Batch): LossSum;
  /** Sets every gradient to zero. */
  zeroGrad(): void;
  /** The generator behind dropout; saved in checkpoints so a resumed run draws the same masks. */
  readonly rng?: { state: [number, number, number, number] };
}

export interface TrainData {
  /** The training batches (its position is part of every checkpoint). */
  train: BatchStream;
  /** Validation batches, in a fixed order (`args.evalBatches` takes the first N). */
  valid?: readonly Batch[];
}

export interface StepReport {
  step: number;
  totalSteps: number;
  /** The epoch of the step's last micro-batch. */
  epoch: number;
  /** Mean loss over the step's trained tokens. */
  loss: number;
  /** Learning rate used by this update. */
  lr: number;
  /** Global gradient norm of the mean loss, before clipping. */
  gradNorm: number;
  /** Trained tokens and real tokens (not padding) in the step. */
  lossTokens: number;
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
}

export interface EvalReport {
  step: number;
  /** Mean loss over the validation tokens, and exp of it. */
  loss: number;
  perplexity: number;
  lossTokens: number;
  batches: number;
  seconds: number;
  /** Lowest so far. */
  best: boolean;
}

export interface SaveReport {
  step: number;
  dir: string;
}

export interface TrainCallbacks {
  onStep?: (report: StepReport, trainer: Trainer) => void;
  onEval?: (report: EvalReport, trainer: Trainer) => void;
  onSave?: (report: SaveReport, trainer: Trainer) => void;
  /** Messages (resume notes, warnings); default: printed through the progress display. */
  onMessage?: (message: string) => void;
}

export interface TrainOptions {
  model: TrainableModel;
  /** Default: AdamW over `model.parameters()` with the args' betas, eps and weight decay. */
  optimizer?: AdamW;
  data: TrainData;
  /** Options (any subset; defaults from args.ts). */
  args?: TrainingArgs | TrainingArgsInput;
  callbacks?: TrainCallbacks;
  /** With a PEFT config, every checkpoint's parameters form a PEFT adapter. */
  adapter?: AdapterConfig;
  /** Progress line on stderr (default true). */
  progress?: boolean;
  /** How a step's micro-batches become its gradient: in this process (default) or across processes. */
  gradients?: StepGradients;
}

export interface TrainResult {
  step: number;
  totalSteps: number;
  /** The last step's loss (NaN when no step ran in this call). */
  loss: number;
  /** The last evaluation (undefined without validation data). */
  eval?: EvalReport;
  bestEvalLoss: number | null;
  bestEvalStep: number | null;
  /** The last checkpoint written or resumed from. */
  checkpoint?: CheckpointRef;
  /** The checkpoint of the best eval loss (with `keepBest`), kept whatever its age. */
  bestCheckpoint?: CheckpointRef;
  elapsedSeconds: number;
  /** True when `requestStop()` ended the run early (after saving a checkpoint). */
  stopped: boolean;
  /** True when early stopping ended the run (after saving a checkpoint). */
  earlyStopped: boolean;
}

/** The loss or the gradients stopped being finite; nothing of that step was applied or saved. */
export class TrainingDivergedError extends Error {
  override name = "TrainingDivergedError";

  constructor(message: string, readonly step: number, readonly lastCheckpoint?: CheckpointRef) {
    super(message);
  }
}

/** Runs a whole training (resuming first when `args.resume`); see Trainer for the pieces. */
export async function train(opts: TrainOptions): Promise<TrainResult> {
  const trainer = new Trainer(opts);
  trainer.prepareOutput();
  return await trainer.run();
}

export class Trainer {
  readonly model: TrainableModel;
  readonly params: Parameter[];
  readonly optimizer: AdamW;
  readonly args: TrainingArgs;
  readonly totalSteps: number;
  readonly valid: readonly Batch[];
  readonly callbacks: TrainCallbacks;
  readonly adapter?: AdapterConfig;
  readonly gradients: StepGradients;
  /** The data stream; replaced by one at the saved position when a checkpoint is restored. */
  stream: BatchStream;
  state: TrainerState;
  /** The last checkpoint written or restored. */
  lastCheckpoint?: CheckpointRef;
  lastEval?: EvalReport;
  #schedule: ScheduleOptions;
  #log?: MetricsLog;
  #progress?: TrainProgress;
  #stopRequested = false;
  /** Every process agreed to stop after the last step. */
  #stopAgreed = false;
  readonly #showProgress: boolean;

  constructor(opts: TrainOptions) {
    this.args = parseTrainingArgs(opts.args ?? {});
    const a = this.args;
    this.model = opts.model;
    this.params = opts.model.parameters();
    if (this.params.length === 0) throw new RangeError("train: the model has no trainable parameters");
    this.optimizer = opts.optimizer ??
      new AdamW(this.params, { beta1: a.beta1, beta2: a.beta2, eps: a.eps, weightDecay: a.weightDecay });
    if (this.optimizer.params.length !== this.params.length) {
      throw new RangeError("train: the optimizer was built for other parameters than the model's");
    }
    this.stream = opts.data.train;
    this.valid = opts.data.valid ?? [];
    this.callbacks = opts.callbacks ?? {};
    this.adapter = opts.adapter;
    this.gradients = opts.gradients ?? new LocalGradients();
    if (a.earlyStoppingPatience > 0 && this.gradients.size > 1) {
      // Rank 0 alone evaluates; stopping the others at the same step would need one more agreement.
      throw new RangeError("early stopping is not supported with several processes (MPI) yet");
    }
    if (a.earlyStoppingPatience > 0 && this.valid.length === 0) {
      throw new RangeError(
        "early stopping needs validation data to watch (--valid FILE or --valid-fraction F)",
      );
    }
    this.#showProgress = (opts.progress ?? true) && this.isRoot;
    this.totalSteps = a.steps > 0 ? a.steps : stepsForEpochs(this.stream, a.epochs, a.gradAccumulation);
    this.#schedule = {
      lr: a.lr,
      kind: a.schedule,
      warmupSteps: a.warmupSteps,
      totalSteps: this.totalSteps,
      minLrRatio: a.minLrRatio,
    };
    this.state = {
      step: 0,
      stream: this.stream.state,
      rng: this.model.rng ? [...this.model.rng.state] : null,
      bestEvalLoss: null,
      bestEvalStep: null,
      elapsedSeconds: 0,
      tokensSeen: 0,
      args: this.args,
    };
  }

  /** Rank 0 of a multi-process run, or the only process: the one that logs, evaluates and saves. */
  get isRoot(): boolean {
    return this.gradients.rank === 0;
  }

  /** The learning rate of update `step` (1-based). */
  lrAt(step: number): number {
    return learningRate(step, this.#schedule);
  }

  /**
   * Readies `outputDir`: removes what a crash leaves (`*.tmp`); with `resume`, restores the latest valid
   * checkpoint (if any) and drops newer, invalid ones and the metrics after it; without, refuses to start
   * over a directory that holds checkpoints. Returns the checkpoint resumed from. With several processes,
   * rank 0 does this and the others take its state.
   */
  prepareOutput(): CheckpointRef | undefined {
    const resumed = this.isRoot ? this.#prepareFiles() : undefined;
    this.gradients.shareState?.(this);
    return resumed;
  }

  #prepareFiles(): CheckpointRef | undefined {
    const dir = this.args.outputDir;
    mkdirSync(dir, { recursive: true });
    removePartialCheckpoints(dir);
    const latest = findLatestCheckpoint(dir);
    const metricsPath = join(dir, METRICS_FILE);
    if (!this.args.resume) {
      if (latest) {
        throw new Error(
          `${dir} already holds checkpoints (the latest is ${latest.dir}); pass --resume to continue that run, ` +
            `or choose another --output-dir`,
        );
      }
      removeCheckpointsAfter(dir, -1);
      rmSync(join(dir, BEST_FILE), { force: true });
      this.#log = MetricsLog.truncate(metricsPath);
      return undefined;
    }
    if (!latest) {
      const leftovers = checkpointDirs(dir).length;
      this.#message(
        `no valid checkpoint in ${dir}${
          leftovers > 0 ? ` (${leftovers} incomplete removed)` : ""
        }; starting afresh`,
      );
      removeCheckpointsAfter(dir, -1);
      this.#log = MetricsLog.truncate(metricsPath);
      return undefined;
    }
    this.restore(latest.dir);
    removeCheckpointsAfter(dir, latest.step);
    // A kill between a best checkpoint's rename and its `best` pointer leaves the pointer one behind; the
    // restored state knows the best step, so point at it again before pruning.
    const bestStep = this.state.bestEvalStep;
    if (this.args.keepBest && bestStep !== null) {
      const name = checkpointName(bestStep);
      if (checkpointProblem(join(dir, name)) === undefined) pointBestAt(dir, name);
    }
    pruneCheckpoints(dir, this.args.keepCheckpoints, latest.step);
    pointLatestAt(dir, basename(latest.dir));
    this.#log = MetricsLog.resumeAt(metricsPath, latest.step);
    this.#message(`resumed from ${latest.dir} (step ${latest.step}/${this.totalSteps})`);
    return latest;
  }

  /** Restores parameters, optimizer, data position, RNG and counters from a checkpoint directory. */
  restore(dir: string): void {
    this.importState(loadCheckpoint(dir));
  }

  /** The state a checkpoint would hold now, in memory (what rank 0 shares with the other processes). */
  exportState(): LoadedCheckpoint {
    const dir = this.lastCheckpoint?.dir ?? "";
    const trainer = {
      ...this.state,
      stream: this.stream.state,
      rng: this.model.rng ? [...this.model.rng.state] as TrainerState["rng"] : null,
    };
    const parameters = new Map(this.params.map((p) => [p.name, p.data]));
    return { dir, step: this.state.step, trainer, parameters, optimizer: this.optimizer.state() };
  }

  /** Restores parameters, optimizer, data position, RNG and counters from a loaded state. */
  importState(ckpt: LoadedCheckpoint): void {
    const dir = ckpt.dir;
    const names = new Set(this.params.map((p) => p.name));
    const extra = [...ckpt.parameters.keys()].filter((n) => !names.has(n));
    const missing = this.params.filter((p) => !ckpt.parameters.has(p.name)).map((p) => p.name);
    if (extra.length > 0 || missing.length > 0) {
      throw new Error(
        `${dir} was saved for other adapters (missing ${missing.length}, unknown ${extra.length}: ` +
          `${[...missing, ...extra].slice(0, 3).join(", ")}); check --lora-targets and --lora-rank`,
      );
    }
    for (const p of this.params) {
      const values = ckpt.parameters.get(p.name)!;
      if (values.length !== p.data.length) {
        throw new Error(
          `${dir}: "${p.name}" has ${values.length} values, the model's ${p.data.length}; check --lora-rank`,
        );
      }
    }
    for (const p of this.params) p.data.set(ckpt.parameters.get(p.name)!);
    this.optimizer.loadState(ckpt.optimizer);
    const t = ckpt.trainer;
    this.stream = new BatchStream(this.stream.examples, this.stream.options, t.stream);
    if (this.model.rng && t.rng) this.model.rng.state = [...t.rng];
    this.state = { ...t, args: this.args };
    if (dir !== "") this.lastCheckpoint = { dir, step: t.step };
    const changed = changedArgs(t.args, this.args);
    if (changed.length > 0) {
      this.#message(
        `resuming with changed options (the run will differ from an uninterrupted one): ${
          changed.join("; ")
        }`,
      );
    }
  }

  /** One optimizer step: the hot path. Throws TrainingDivergedError (before updating) on NaN/inf. */
  step(): StepReport {
    const t0 = performance.now();
    const { model, params, args } = this;
    const { lossSum, lossTokens, tokens, epoch, stop } = this.gradients.accumulate({
      model,
      params,
      stream: this.stream,
      microBatches: args.gradAccumulation,
      stopRequested: this.#stopRequested,
    });
    this.#stopAgreed = stop;
    const step = this.state.step + 1;
    if (lossTokens === 0) throw new Error(`step ${step}: no trained tokens in the step's batches`);
    const loss = lossSum / lossTokens;
    // The gradients are of the summed losses; the mean's are 1/lossTokens of them.
    const norm = gradNorm(params) / lossTokens;
    if (!Number.isFinite(loss) || !Number.isFinite(norm)) throw this.#diverged(step, loss, norm);
    scaleGrads(params, clipFactor(norm, args.maxGradNorm) / lossTokens);
    const lr = this.lrAt(step);
    this.optimizer.step(lr);

    const seconds = (performance.now() - t0) / 1000;
    this.state.step = step;
    this.state.tokensSeen += tokens;
    this.state.elapsedSeconds += seconds;
    return {
      step,
      totalSteps: this.totalSteps,
      epoch,
      loss,
      lr,
      gradNorm: norm,
      lossTokens,
      tokens,
      seconds,
      tokensPerSecond: tokens / seconds,
    };
  }

  /**
   * Validation loss and perplexity over the first `evalBatches` validation batches (all when 0). Changes
   * no state (`run` records the best); call it before `run` for the loss of the untrained adapters.
   */
  evaluate(): EvalReport {
    const t0 = performance.now();
    const n = this.args.evalBatches > 0
      ? Math.min(this.args.evalBatches, this.valid.length)
      : this.valid.length;
    if (n === 0) throw new Error("evaluate: there are no validation batches");
    const { loss, perplexity, lossTokens } = this.lossOn(this.valid.slice(0, n));
    const s = this.state;
    const best = Number.isFinite(loss) && (s.bestEvalLoss === null || loss < s.bestEvalLoss);
    const seconds = (performance.now() - t0) / 1000;
    return { step: s.step, loss, perplexity, lossTokens, batches: n, seconds, best };
  }

  /** Mean token loss and perplexity over `batches` in evaluation mode (e.g. a test set). */
  lossOn(batches: readonly Batch[]): { loss: number; perplexity: number; lossTokens: number } {
    let lossSum = 0;
    let lossTokens = 0;
    for (const batch of batches) {
      const r = this.model.loss(batch);
      lossSum += r.lossSum;
      lossTokens += r.lossTokens;
    }
    const loss = lossSum / lossTokens;
    return { loss, perplexity: Math.exp(loss), lossTokens };
  }

  /** Writes the checkpoint of the current step into `outputDir` (keeping `keepCheckpoints`, and the best). */
  save(options: { best?: boolean } = {}): SaveReport {
    this.state.stream = this.stream.state;
    this.state.rng = this.model.rng ? [...this.model.rng.state] : null;
    const dir = saveCheckpoint(
      this.args.outputDir,
      {
        trainer: { ...this.state, args: this.args },
        parameters: this.params,
        optimizer: this.optimizer.state({ view: true }), // written now, before the next step
        adapter: this.adapter,
      },
      this.args.keepCheckpoints,
      options,
    );
    this.lastCheckpoint = { dir, step: this.state.step };
    return { step: this.state.step, dir };
  }

  /** A message through the progress display (callbacks use it so their lines do not break the bar). */
  note(text: string): void {
    this.#message(text);
  }

  /** Appends an event to metrics.jsonl while `run` is running (e.g. sample generations). */
  record(event: { event: string; step: number } & Record<string, unknown>): void {
    this.#log?.append(event);
  }

  /** Ends `run` after the current step, saving a checkpoint first (e.g. on Ctrl-C). */
  requestStop(): void {
    this.#stopRequested = true;
  }

  /** Steps until `totalSteps`, evaluating every `evalEvery` and saving every `saveEvery` (and at the end). */
  async run(): Promise<TrainResult> {
    const a = this.args;
    if (this.isRoot) this.#log ??= new MetricsLog(join(a.outputDir, METRICS_FILE));
    if (this.#showProgress) this.#progress = new TrainProgress(this.totalSteps, this.state.step);
    let last: StepReport | undefined;
    try {
      while (this.state.step < this.totalSteps && !this.state.earlyStopped) {
        let report: StepReport;
        try {
          report = this.step();
        } catch (error) {
          if (error instanceof TrainingDivergedError) {
            this.#log?.append({ event: "stop", step: error.step, reason: error.message });
          }
          throw error;
        }
        last = report;
        const { step } = report;
        this.#log?.append({
          event: "train",
          step,
          epoch: report.epoch,
          loss: report.loss,
          lr: report.lr,
          gradNorm: report.gradNorm,
          tokens: report.tokens,
          tokensPerSecond: report.tokensPerSecond,
          elapsedSeconds: this.state.elapsedSeconds,
        });
        this.#progress?.update(report);
        this.callbacks.onStep?.(report, this);

        const final = step === this.totalSteps;
        let newBest = false;
        let earlyStop = false;
        if (
          this.isRoot && this.valid.length > 0 && (final || (a.evalEvery > 0 && step % a.evalEvery === 0))
        ) {
          const ev = this.evaluate();
          this.lastEval = ev;
          const verdict = earlyStoppingVerdict(
            ev.loss,
            this.state.bestEvalLoss,
            this.state.evalsWithoutImprovement ?? 0,
            { patience: a.earlyStoppingPatience, threshold: a.earlyStoppingThreshold },
          );
          this.state.evalsWithoutImprovement = verdict.evalsWithoutImprovement;
          earlyStop = verdict.stop && !final;
          newBest = ev.best;
          if (ev.best) [this.state.bestEvalLoss, this.state.bestEvalStep] = [ev.loss, step];
          this.#log?.append({
            event: "eval",
            step,
            evalLoss: ev.loss,
            perplexity: ev.perplexity,
            best: ev.best,
          });
          this.#message(
            `step ${step}: eval loss ${ev.loss.toFixed(4)}, perplexity ${ev.perplexity.toFixed(2)}` +
              (ev.best ? " (best)" : ""),
          );
          this.callbacks.onEval?.(ev, this);
        }
        if (earlyStop) {
          this.state.earlyStopped = true;
          const reason = `no eval-loss improvement in ${a.earlyStoppingPatience} evaluations (best ` +
            `${this.state.bestEvalLoss?.toFixed(4)} at step ${this.state.bestEvalStep})`;
          this.#log?.append({ event: "stop", step, reason: `early stopping: ${reason}` });
          this.#message(`step ${step}: early stopping, ${reason}`);
        }
        // Alone, a request made during this step's callbacks counts now; processes agree on it in a step.
        const stop = this.gradients.size === 1 ? this.#stopRequested : this.#stopAgreed;
        const stopping = stop && !final;
        const keepBest = a.keepBest && newBest;
        if (
          this.isRoot &&
          (final || stopping || earlyStop || keepBest || (a.saveEvery > 0 && step % a.saveEvery === 0))
        ) {
          const saved = this.save({ best: keepBest });
          this.#log?.append({ event: "save", step, dir: saved.dir, ...(keepBest ? { best: true } : {}) });
          this.callbacks.onSave?.(saved, this);
        }
        if (earlyStop) break;
        if (stopping) {
          this.#message(`stopped at step ${step}; ${this.lastCheckpoint?.dir} holds it (--resume continues)`);
          break;
        }
        // Let timers, progress redraws and signals run between steps (notebooks stay responsive).
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    } finally {
      this.#progress?.stop();
      drainBufferPool(); // the recycled activation buffers go back to the system with the run
      this.#log?.close();
      this.#log = undefined;
    }
    return {
      step: this.state.step,
      totalSteps: this.totalSteps,
      loss: last?.loss ?? NaN,
      eval: this.lastEval,
      bestEvalLoss: this.state.bestEvalLoss,
      bestEvalStep: this.state.bestEvalStep,
      checkpoint: this.lastCheckpoint,
      bestCheckpoint: a.keepBest ? findBestCheckpoint(a.outputDir) : undefined,
      elapsedSeconds: this.state.elapsedSeconds,
      stopped: this.state.step < this.totalSteps && !this.state.earlyStopped,
      earlyStopped: this.state.earlyStopped ?? false,
    };
  }

  #diverged(step: number, loss: number, norm: number): TrainingDivergedError {
    const what = !Number.isFinite(loss) ? `the loss is ${loss}` : `the gradient norm is ${norm}`;
    const ckpt = this.lastCheckpoint;
    const keep = ckpt
      ? `the last good checkpoint is ${ckpt.dir} (step ${ckpt.step}); lower --lr or raise --warmup-steps ` +
        `and --resume from it`
      : "no checkpoint was saved yet; lower --lr or raise --warmup-steps and start again";
    return new TrainingDivergedError(
      `step ${step}: ${what}; training stopped before applying this step (nothing of it was saved). ${keep}`,
      step,
      ckpt,
    );
  }

  #message(text: string): void {
    if (!this.isRoot) return;
    if (this.callbacks.onMessage) this.callbacks.onMessage(text);
    else if (this.#progress) this.#progress.log(text);
    else if (this.#showProgress) console.error(text);
  }
}

/** Optimizer steps that `epochs` passes over the stream take (a fractional last epoch rounds up). */
export function stepsForEpochs(stream: BatchStream, epochs: number, gradAccumulation: number): number {
  let batches = 0;
  const whole = Math.floor(epochs);
  for (let e = 0; e < whole; e++) batches += stream.batchesInEpoch(e);
  const part = epochs - whole;
  if (part > 0) batches += Math.ceil(part * stream.batchesInEpoch(whole));
  return Math.max(1, Math.ceil(batches / gradAccumulation));
}

/** Options that change the trajectory, compared between a checkpoint and the resuming run. */
const TRAJECTORY_KEYS = [
  "model",
  "data",
  "maxLength",
  "batchSize",
  "gradAccumulation",
  "steps",
  "epochs",
  "lr",
  "schedule",
  "warmupSteps",
  "minLrRatio",
  "weightDecay",
  "beta1",
  "beta2",
  "eps",
  "maxGradNorm",
  "seed",
  "lora",
  "compute",
] as const;

function changedArgs(saved: unknown, now: TrainingArgs): string[] {
  if (typeof saved !== "object" || saved === null) return [];
  const before = saved as Record<string, unknown>;
  const out: string[] = [];
  for (const key of TRAJECTORY_KEYS) {
    const [a, b] = [JSON.stringify(before[key]), JSON.stringify(now[key])];
    if (a !== b) out.push(`${key} ${a} → ${b}`);
  }
  return out;
}
