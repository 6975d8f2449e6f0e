/**
 * Early stopping on the eval loss (transformers' EarlyStoppingCallback): after each evaluation, a loss
 * below the best so far by more than `threshold` is an improvement and resets the count; otherwise the
 * count grows, and the run stops once it reaches `patience`. The count lives in the trainer state, so a
 * resumed run continues it.
 */

export interface EarlyStoppingOptions {
  /** Evaluations in a row without improvement before stopping; 0 = never stop. */
  patience: number;
  /** How much lower than the best a loss must be to count as an improvement. */
  threshold: number;
}

export interface EarlyStoppingVerdict {
  /** Evaluations in a row without improvement, this one included. */
  evalsWithoutImprovement: number;
  stop: boolean;
}

/** The verdict after an evaluation of `loss`, given the best loss before it (null: none yet). */
export function earlyStoppingVerdict(
  loss: number,
  bestBefore: number | null,
  evalsWithoutImprovementBefore: number,
  options: EarlyStoppingOptions,
): EarlyStoppingVerdict {
  const improved = Number.isFinite(loss) && (bestBefore === null || loss < bestBefore - options.threshold);
  const evalsWithoutImprovement = improved ? 0 : evalsWithoutImprovementBefore + 1;
  return {
    evalsWithoutImprovement,
    stop: options.patience > 0 && evalsWithoutImprovement >= options.patience,
  };
}
