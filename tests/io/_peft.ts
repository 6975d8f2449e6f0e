/** Shared helpers of the PEFT adapter tests: fixture paths, the tiny Llama's config, adapter copies. */
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModelConfig, type ModelConfig } from "../../lib/nn/config.ts";

export const PEFT_FIXTURES = fileURLToPath(new URL("../fixtures/peft/", import.meta.url));
export const FIXTURE_SCRIPT = join(PEFT_FIXTURES, "make_peft_fixtures.py");
/** The adapters made by PEFT (see make_peft_fixtures.py). */
export const CASES = ["all_linear", "qv_rslora", "bf16_layers"] as const;

export function peftFixture(name: string, file?: string): string {
  return file === undefined ? join(PEFT_FIXTURES, name) : join(PEFT_FIXTURES, name, file);
}

export function tinyLlama(): Promise<ModelConfig> {
  return loadModelConfig(fileURLToPath(new URL("../fixtures/model/tiny_llama/config.json", import.meta.url)));
}

/** Copies fixture `name`'s adapter files into `dir`. */
export function copyAdapter(name: string, dir: string): void {
  for (const file of ["adapter_config.json", "adapter_model.safetensors"]) {
    cpSync(peftFixture(name, file), join(dir, file));
  }
}

/** Rewrites `dir`'s adapter_config.json through `edit`. */
export function editConfig(dir: string, edit: (json: Record<string, unknown>) => void): void {
  const path = join(dir, "adapter_config.json");
  const json = JSON.parse(readFileSync(path, "utf8"));
  edit(json);
  writeFileSync(path, JSON.stringify(json));
}

/** The reference Python (for the optional PEFT / gguf cross-checks), when QLORA_REF_PYTHON names one. */
export const REF_PYTHON = Deno.env.get("QLORA_REF_PYTHON");

/** Runs the fixture script with `args`; returns its stdout, failing with its stderr. */
export async function runFixtureScript(args: string[]): Promise<string> {
  const output = await new Deno.Command(REF_PYTHON!, { args: [FIXTURE_SCRIPT, ...args], stderr: "piped" })
    .output();
  const stdout = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    throw new Error(
      `${FIXTURE_SCRIPT} ${args.join(" ")} failed:\n${stdout}\n${new TextDecoder().decode(output.stderr)}`,
    );
  }
  return stdout;
}
