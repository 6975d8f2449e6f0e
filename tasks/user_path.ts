/**
 * Where the user's relative paths start: `deno task` runs scripts in the repository root and puts the
 * directory it was started from in INIT_CWD; a plain `deno run` leaves the current directory as it is.
 */
import { resolve } from "node:path";
import { userDirectory } from "../lib/train/user_paths.ts";

export function userCwd(): string {
  return userDirectory(Deno.env, Deno.cwd());
}

/** A path from the command line, absolute. */
export function userPath(path: string): string {
  return resolve(userCwd(), path);
}
