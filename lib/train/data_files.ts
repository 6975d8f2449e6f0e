/**
 * Which files a run reads, from the options: `data.dir` (mlx-lm's `--data DIR`) holds `train.*` and, when
 * present, `valid.*` and `test.*` (any extension of lib/data/readers); otherwise `data.train`, `data.valid`
 * and `data.test`. Validation with the user's own data is opt-in: `valid: "auto"` means the shipped set's
 * validation file only when training on the shipped set. Explicit `train`/`valid`/`test` override the
 * directory's files.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { DATA_EXTENSIONS } from "../data/readers/read_rows.ts";
import { ArgsError, DEFAULT_TRAIN, DEFAULT_VALID, type TrainingArgs } from "./args.ts";

export interface DataFiles {
  train: string;
  /** Absent: no validation file (one may still be held out with validFraction). */
  valid?: string;
  test?: string;
}

export function dataFiles(data: TrainingArgs["data"]): DataFiles {
  let train = data.train;
  let valid: string | undefined = data.valid === "auto" ? undefined : data.valid || undefined;
  let test: string | undefined = data.test || undefined;
  if (data.dir !== "") {
    const inDir = (name: string) =>
      DATA_EXTENSIONS.map((ext) => join(data.dir, name + ext)).filter(existsSync);
    const found = { train: inDir("train"), valid: inDir("valid"), test: inDir("test") };
    for (const [split, files] of Object.entries(found)) {
      if (files.length > 1) {
        throw new ArgsError(`--data-dir ${data.dir}: several ${split} files (${files.join(", ")}); keep one`);
      }
    }
    // A train file given explicitly wins over the directory's.
    if (train === DEFAULT_TRAIN) {
      if (found.train.length === 0) {
        throw new ArgsError(
          `--data-dir ${data.dir}: no train file (train${DATA_EXTENSIONS.join(", train")})`,
        );
      }
      train = found.train[0];
    }
    if (data.valid === "auto") valid = found.valid[0];
    test ??= found.test[0];
  } else if (data.valid === "auto" && train === DEFAULT_TRAIN) {
    valid = DEFAULT_VALID;
  }
  if (data.validFraction > 0) valid = undefined;
  return { train, valid, test };
}
