import assert from "node:assert/strict";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { createAdapterConfig } from "../../lib/io/peft/config.ts";
import { SafetensorsReader } from "../../lib/io/safetensors/reader.ts";
import {
  type CheckpointContents,
  checkpointProblem,
  findLatestCheckpoint,
  LATEST_FILE,
  loadCheckpoint,
  OPTIMIZER_FILE,
  removePartialCheckpoints,
  saveCheckpoint,
  TRAINER_STATE_FILE,
} from "../../lib/train/checkpoint.ts";
import type { Parameter } from "../../lib/train/optimizer.ts";
import { bits } from "./_fake.ts";

function contents(step: number, params?: Parameter[]): CheckpointContents {
  const parameters = params ??
    [
      { name: "a", data: Float32Array.from([1, 2, step]), grad: new Float32Array(3) },
      { name: "b", data: Float32Array.from([step, -1]), grad: new Float32Array(2) },
    ];
  return {
    trainer: {
      step,
      stream: { epoch: 1, position: step },
      rng: [1, 2, 3, step],
      bestEvalLoss: 0.5,
      bestEvalStep: step,
      elapsedSeconds: 1.25,
      tokensSeen: 100 * step,
      args: { lr: 0.1 },
    },
    parameters,
    optimizer: {
      step,
      moments: parameters.map((p) => ({
        name: p.name,
        m: p.data.map((x) => x / 10),
        v: p.data.map((x) => x * x),
      })),
    },
  };
}

function tempDir(): string {
  return Deno.makeTempDirSync({ prefix: "ckpt_test_" });
}

Deno.test("checkpoint: save then load restores parameters, optimizer and trainer state exactly", () => {
  const dir = tempDir();
  const c = contents(3);
  const saved = saveCheckpoint(dir, c);
  assert.equal(saved, join(dir, "checkpoint-3"));
  assert.equal(readFileSync(join(dir, LATEST_FILE), "utf8"), "checkpoint-3\n");
  const loaded = loadCheckpoint(saved);
  assert.equal(loaded.step, 3);
  assert.deepEqual(loaded.trainer, c.trainer);
  for (const p of c.parameters) assert.deepEqual(bits(loaded.parameters.get(p.name)!), bits(p.data));
  assert.equal(loaded.optimizer.step, 3);
  c.optimizer.moments.forEach((m, i) => {
    assert.equal(loaded.optimizer.moments[i].name, m.name);
    assert.deepEqual(bits(loaded.optimizer.moments[i].m), bits(m.m));
    assert.deepEqual(bits(loaded.optimizer.moments[i].v), bits(m.v));
  });
  assert.deepEqual(findLatestCheckpoint(dir), { dir: saved, step: 3 });
  rmSync(dir, { recursive: true });
});

Deno.test("checkpoint: with a PEFT config the parameters form a PEFT adapter directory", () => {
  const dir = tempDir();
  const module = "model.layers.0.self_attn.q_proj";
  const params: Parameter[] = [
    {
      name: `base_model.model.${module}.lora_A.weight`,
      data: new Float32Array(2 * 6).fill(0.5),
      grad: new Float32Array(12),
    },
    {
      name: `base_model.model.${module}.lora_B.weight`,
      data: new Float32Array(4 * 2).fill(-1),
      grad: new Float32Array(8),
    },
  ];
  const adapter = createAdapterConfig({ r: 2, loraAlpha: 4, targetModules: ["q_proj"] });
  const saved = saveCheckpoint(dir, { ...contents(1, params), adapter });
  const config = JSON.parse(readFileSync(join(saved, "adapter_config.json"), "utf8"));
  assert.equal(config.r, 2);
  assert.equal(config.lora_alpha, 4);
  using reader = SafetensorsReader.open(join(saved, "adapter_model.safetensors"));
  assert.deepEqual(reader.info(params[0].name).shape, [2, 6]);
  assert.deepEqual(reader.info(params[1].name).shape, [4, 2]);
  assert.deepEqual(bits(loadCheckpoint(saved).parameters.get(params[1].name)!), bits(params[1].data));
  rmSync(dir, { recursive: true });
});

Deno.test("checkpoint: a crash before the rename leaves only a .tmp dir, which is ignored and removed", () => {
  const dir = tempDir();
  saveCheckpoint(dir, contents(2));
  // The complete state right before the final rename of step 3: the whole tmp dir, latest still at 2.
  saveCheckpoint(dir, contents(3));
  renameSync(join(dir, "checkpoint-3"), join(dir, "checkpoint-3.tmp"));
  writeFileSync(join(dir, LATEST_FILE), "checkpoint-2\n");
  // And an earlier crash, in the middle of writing step 4's tmp dir.
  mkdirSync(join(dir, "checkpoint-4.tmp"));
  writeFileSync(join(dir, "checkpoint-4.tmp", "adapter_model.safetensors.tmp"), "partial");
  assert.deepEqual(findLatestCheckpoint(dir), { dir: join(dir, "checkpoint-2"), step: 2 });
  assert.deepEqual(removePartialCheckpoints(dir).sort(), ["checkpoint-3.tmp", "checkpoint-4.tmp"]);
  assert.deepEqual(readdirSync(dir).sort(), ["checkpoint-2", "latest"]);
  rmSync(dir, { recursive: true });
});

Deno.test("checkpoint: half-written or damaged directories are skipped; the previous good one is found", () => {
  const dir = tempDir();
  saveCheckpoint(dir, contents(5));
  const damage: Record<number, (d: string) => void> = {
    6: (d) => truncateSync(join(d, OPTIMIZER_FILE), 100), // cut short
    7: (d) => rmSync(join(d, TRAINER_STATE_FILE)), // state not written yet
    8: (d) => writeFileSync(join(d, TRAINER_STATE_FILE), '{"format": "qlora-deno-checkpoint", "vers'), // half a file
    9: (d) => rmSync(join(d, "adapter_model.safetensors")), // a file missing
    10: (d) => { // right size, damaged header
      const path = join(d, OPTIMIZER_FILE);
      const bytes = readFileSync(path);
      bytes[0] = 0xff;
      bytes[7] = 0xff;
      writeFileSync(path, bytes);
    },
  };
  for (const [step, spoil] of Object.entries(damage)) {
    const d = saveCheckpoint(dir, contents(Number(step)));
    spoil(d);
    assert.notEqual(checkpointProblem(d), undefined, `step ${step} should not validate`);
  }
  // A directory named for one step holding another's state is refused too.
  const other = saveCheckpoint(join(dir, "elsewhere"), contents(11));
  renameSync(other, join(dir, "checkpoint-12"));
  assert.match(checkpointProblem(join(dir, "checkpoint-12"))!, /is for step 11/);

  assert.deepEqual(findLatestCheckpoint(dir), { dir: join(dir, "checkpoint-5"), step: 5 });
  assert.throws(() => loadCheckpoint(join(dir, "checkpoint-6")), /cannot resume from .*checkpoint-6/);
  rmSync(dir, { recursive: true });
});

Deno.test("checkpoint: only the newest `keep` checkpoints stay", () => {
  const dir = tempDir();
  for (let step = 1; step <= 5; step++) saveCheckpoint(dir, contents(step), 2);
  assert.deepEqual(readdirSync(dir).sort(), ["checkpoint-4", "checkpoint-5", "latest"]);
  assert.equal(existsSync(join(dir, "latest.tmp")), false);
  rmSync(dir, { recursive: true });
});
