/** The README's TypeScript example must keep working: it is extracted and run as a script. */
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

const README = readFileSync(`${ROOT}README.md`, "utf8");
const EXAMPLES = [...README.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);

async function run(example: string): Promise<string> {
  const script = `${ROOT}.readme_example_${Deno.pid}.ts`;
  writeFileSync(script, example);
  try {
    const out = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", script], cwd: ROOT }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    return new TextDecoder().decode(out.stdout);
  } finally {
    rmSync(script, { force: true });
  }
}

Deno.test("the README's kernel example runs and prints the model facts", async () => {
  assert.equal(EXAMPLES.length, 3, "README.md has three ```ts examples");
  assert.match(await run(EXAMPLES[0]), /^576 \[ [\d, ]+ \] 6144 2304$/m);
});

Deno.test("the README's generation example answers the question", async () => {
  assert.match(await run(EXAMPLES[1]), /^The capital of France is Paris/m);
});

Deno.test("the README's fine-tuning example trains and saves a PEFT adapter", async () => {
  const out = await run(EXAMPLES[2]);
  assert.match(out, /^step 1: loss \d+\.\d{3}$/m);
  assert.match(out, /^step 2: loss \d+\.\d{3}$/m);
  const dir = out.match(/^PEFT adapter in (.+)$/m)?.[1];
  assert.ok(dir, out);
  const files = [...Deno.readDirSync(dir)].map((e) => e.name);
  assert.ok(
    files.includes("adapter_config.json") && files.includes("adapter_model.safetensors"),
    files.join(", "),
  );
});
