/** The README's TypeScript example must keep working: it is extracted and run as a script. */
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

Deno.test("the README's TypeScript example runs and prints the model facts", async () => {
  const readme = readFileSync(`${ROOT}README.md`, "utf8");
  const example = readme.match(/```ts\n([\s\S]*?)```/);
  assert.ok(example, "README.md has a ```ts block");
  const script = `${ROOT}.readme_example_${Deno.pid}.ts`;
  writeFileSync(script, example[1]);
  try {
    const out = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", script], cwd: ROOT }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(stdout, /^576 \[ [\d, ]+ \] 6144 2304$/m);
  } finally {
    rmSync(script, { force: true });
  }
});
