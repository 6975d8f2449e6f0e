/**
 * Finds, builds when missing or stale, opens and verifies the rust-kernels library.
 *
 * Order: `QLORA_KERNELS_LIB` (a path to the library; never rebuilt), then the crate's release build in this
 * checkout, rebuilt with cargo whenever a source file is newer than the library.
 */
import { existsSync, readdirSync, statSync, utimesSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { symbols } from "./symbols.ts";
import { check, useLastError } from "./errors.ts";

/** The ABI version this TS code was written against (rust-kernels/src/abi/mod.rs). */
export const ABI_VERSION = 8;

export type Kernels = Deno.DynamicLibrary<typeof symbols>["symbols"];

const CRATE_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "rust-kernels");

function libraryFileName(): string {
  switch (Deno.build.os) {
    case "windows":
      return "qlora_kernels.dll";
    case "darwin":
      return "libqlora_kernels.dylib";
    default:
      return "libqlora_kernels.so";
  }
}

function newestSourceTime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSourceTime(path));
    else newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

function isStale(lib: string): boolean {
  if (!existsSync(lib)) return true;
  const built = statSync(lib).mtimeMs;
  const sources = [join(CRATE_DIR, "Cargo.toml"), join(CRATE_DIR, "Cargo.lock")].filter(existsSync);
  const newest = Math.max(
    newestSourceTime(join(CRATE_DIR, "src")),
    ...sources.map((p) => statSync(p).mtimeMs),
  );
  return newest > built;
}

function build(): void {
  console.error("qlora-deno: building rust-kernels (cargo build --release)…");
  let output: Deno.CommandOutput;
  try {
    output = new Deno.Command("cargo", {
      args: ["build", "--release", "--manifest-path", join(CRATE_DIR, "Cargo.toml")],
      stdout: "inherit",
      stderr: "inherit",
    }).outputSync();
  } catch (e) {
    throw new Error(
      `cannot build rust-kernels: running cargo failed (${(e as Error).message}). ` +
        "Install Rust (https://rustup.rs) or set QLORA_KERNELS_LIB to a built library.",
    );
  }
  if (!output.success) throw new Error(`cannot build rust-kernels: cargo exited with code ${output.code}`);
}

function locate(): string {
  const tried: string[] = [];
  const override = Deno.env.get("QLORA_KERNELS_LIB");
  if (override) {
    if (existsSync(override)) return override;
    tried.push(`${override} (QLORA_KERNELS_LIB): not found`);
  } else {
    const lib = join(CRATE_DIR, "target", "release", libraryFileName());
    if (existsSync(join(CRATE_DIR, "Cargo.toml"))) {
      if (isStale(lib)) {
        build();
        // cargo may find nothing to rebuild (e.g. a file touched without a change): mark the library as
        // current so the next start does not call cargo again.
        if (existsSync(lib) && isStale(lib)) utimesSync(lib, new Date(), new Date());
      }
      if (existsSync(lib)) return lib;
      tried.push(`${lib}: not found after building`);
    } else {
      tried.push(`${lib}: no crate at ${CRATE_DIR} to build it from`);
    }
  }
  throw new Error(`qlora-deno: cannot find the rust-kernels library. Tried:\n  ${tried.join("\n  ")}`);
}

let loaded: Kernels | undefined;

/** The library's symbols, loaded (and built if needed) on first use. */
export function kernels(): Kernels {
  if (loaded) return loaded;
  const path = locate();
  const lib = Deno.dlopen(path, symbols).symbols;
  const version = lib.qlora_abi_version();
  if (version !== ABI_VERSION) {
    throw new Error(
      `qlora-deno: ${path} has ABI version ${version}, this code expects ${ABI_VERSION}; ` +
        "rebuild it (deno task build) or point QLORA_KERNELS_LIB at a matching build",
    );
  }
  useLastError((buf, cap) => lib.qlora_last_error(buf, cap));
  loaded = lib;
  return lib;
}

/**
 * Replaces every symbol by `wrap(name, fn)` for the rest of the process (the bench's per-kernel time split).
 * Callers fetch symbols through `kernels()` on each call, so the wrappers see every call from then on.
 */
export function wrapKernels(wrap: (name: string, fn: (...args: never[]) => unknown) => unknown): void {
  const lib = kernels() as unknown as Record<string, (...args: never[]) => unknown>;
  loaded = Object.fromEntries(
    Object.entries(lib).map(([name, fn]) => [name, wrap(name, fn)]),
  ) as unknown as Kernels;
}

export { check };
