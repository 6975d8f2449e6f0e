/**
 * The layers import one way (ARCHITECTURE.md): ffi ← autograd ← nn ← lora ← io ← pretrained / text / data ←
 * train ← generate / display ← tasks; `mod.ts` does not load the notebook display stack (d3, linkedom).
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Each folder and the folders it must never import from. */
const FORBIDDEN: Record<string, string[]> = {
  "ffi": ["lib"],
  "lib/autograd": ["lib/nn", "lib/lora", "lib/io", "lib/pretrained", "lib/train", "lib/data", "lib/text"],
  "lib/nn": ["lib/lora", "lib/io", "lib/pretrained", "lib/train", "lib/data", "lib/text", "lib/display"],
  "lib/lora": ["lib/io", "lib/pretrained", "lib/train", "lib/data", "lib/text", "lib/display"],
  "lib/io": ["lib/pretrained", "lib/train", "lib/text", "lib/data", "lib/display", "lib/generate"],
  "lib/generate": ["lib/serve", "lib/train", "lib/display"],
  "lib/serve": ["lib/train", "lib/display", "lib/data"],
};

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? tsFiles(path) : name.endsWith(".ts") ? [path] : [];
  });
}

function localImports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)].map((m) =>
    relative(ROOT, resolve(dirname(file), m[1]))
  );
}

for (const [folder, banned] of Object.entries(FORBIDDEN)) {
  Deno.test(`layers: ${folder} imports nothing from ${banned.join(", ")}`, () => {
    const bad = tsFiles(join(ROOT, folder)).flatMap((file) =>
      localImports(file)
        .filter((target) => banned.some((b) => target === b || target.startsWith(b + "/")))
        .map((target) => `${relative(ROOT, file)} → ${target}`)
    );
    assert.deepEqual(bad, []);
  });
}

Deno.test("layers: mod.ts loads no notebook display code (d3, linkedom); notebook.ts does", async () => {
  // The specifiers of the modules an entry point loads (`npmPackages` lists the whole lockfile, not the graph).
  const graph = async (entry: string) => {
    const out = await new Deno.Command(Deno.execPath(), { args: ["info", "--json", entry], cwd: ROOT })
      .output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: { specifier: string }[] };
    return info.modules.map((m) => m.specifier).join("\n");
  };
  const mod = await graph("mod.ts");
  assert.doesNotMatch(mod, /linkedom|@observablehq\/plot|lib\/display\//);
  assert.match(
    mod,
    /lib\/lora\/model\.ts/,
    "the graph lists our own modules (else the check proves nothing)",
  );
  assert.match(mod, /npm:\/zod@/, "the graph lists npm packages (else the check proves nothing)");
  const notebook = await graph("notebook.ts");
  assert.match(notebook, /npm:\/linkedom@/);
  assert.match(notebook, /npm:\/@observablehq\/plot@/);
});
