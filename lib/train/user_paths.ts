/**
 * Paths a user types are relative to the directory they typed them in. `deno task` runs scripts from the
 * repository root and puts the user's directory in INIT_CWD (as npm does), so the task passes that here
 * and every relative path given in a flag or a config file is resolved against it. The defaults (the
 * shipped data set, `out/finetune`) stay relative to the repository. The model spec is resolved by
 * `resolveModel(spec, {cwd})`, which also tells a path from a hub id.
 */
import { isAbsolute, resolve } from "node:path";

/** The user's directory: INIT_CWD when a task runner set it, else the process's. */
export function userDirectory(env: { get(name: string): string | undefined }, cwd: string): string {
  return env.get("INIT_CWD") || cwd;
}

/** Fields holding a path (config/flag names as in args.ts); values that are not paths are kept. */
const PATH_FIELDS = [
  ["data", "dir"],
  ["data", "train"],
  ["data", "valid"],
  ["data", "test"],
  ["data", "chatTemplate"],
  ["outputDir"],
  ["adapter"],
] as const;

/** Resolves, in place, the relative paths of raw (unvalidated) options against `base`. */
export function resolveUserPaths(input: Record<string, unknown>, base: string): void {
  for (const path of PATH_FIELDS) {
    let holder: Record<string, unknown> | undefined = input;
    for (const part of path.slice(0, -1)) {
      const next: unknown = holder?.[part];
      holder = typeof next === "object" && next !== null ? next as Record<string, unknown> : undefined;
    }
    const key = path.at(-1)!;
    const value = holder?.[key];
    if (holder && typeof value === "string" && value !== "" && value !== "auto" && !isAbsolute(value)) {
      holder[key] = resolve(base, value);
    }
  }
}
