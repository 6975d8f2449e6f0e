/**
 * Files that appear whole or not at all: written to `path + ".tmp"`, flushed to disk, then renamed over
 * `path`. A crash leaves at most the `.tmp` file, never a truncated `path`.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";

/** The largest single write, as for reads. */
const MAX_WRITE_BYTES = 1 << 30;

/** Calls `write(chunk)` as often as `fill` likes, into a temporary file renamed to `path` when done. */
export function writeFileAtomically(path: string, fill: (write: (bytes: Uint8Array) => void) => void): void {
  const temporary = `${path}.tmp`;
  const fd = openSync(temporary, "w");
  try {
    fill((bytes) => {
      for (let done = 0; done < bytes.length;) {
        done += writeSync(fd, bytes, done, Math.min(bytes.length - done, MAX_WRITE_BYTES));
      }
    });
    fsyncSync(fd);
    closeSync(fd);
  } catch (error) {
    closeSync(fd);
    rmSync(temporary, { force: true });
    throw error;
  }
  renameSync(temporary, path);
}
