/**
 * Writes a model directory of a given architecture's shape with random bf16 weights (config.json + sharded
 * safetensors + index), for load-time, memory and training benchmarks of big models we cannot download here.
 * A Llama-2 tokenizer (32000 ids, Mistral-7B's vocabulary size) with a Mistral-style chat template makes the
 * directory usable by `deno task finetune --model DIR` with the default chat data.
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { writeSafetensors } from "../../lib/io/safetensors/writer.ts";
import { f32ToBf16 } from "../../lib/io/dtype.ts";
import { randomF32 } from "./measure.ts";

/** Mistral-7B-v0.1's shape. */
export const MISTRAL_7B_CONFIG = {
  architectures: ["MistralForCausalLM"],
  model_type: "mistral",
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  vocab_size: 32000,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  bos_token_id: 1,
  eos_token_id: 2,
};

type Config = typeof MISTRAL_7B_CONFIG;

function tensorShapes(c: Config): [string, number[]][] {
  const hd = c.hidden_size / c.num_attention_heads;
  const shapes: [string, number[]][] = [["model.embed_tokens.weight", [c.vocab_size, c.hidden_size]]];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    shapes.push(
      [`${p}.input_layernorm.weight`, [c.hidden_size]],
      [`${p}.self_attn.q_proj.weight`, [c.num_attention_heads * hd, c.hidden_size]],
      [`${p}.self_attn.k_proj.weight`, [c.num_key_value_heads * hd, c.hidden_size]],
      [`${p}.self_attn.v_proj.weight`, [c.num_key_value_heads * hd, c.hidden_size]],
      [`${p}.self_attn.o_proj.weight`, [c.hidden_size, c.num_attention_heads * hd]],
      [`${p}.post_attention_layernorm.weight`, [c.hidden_size]],
      [`${p}.mlp.gate_proj.weight`, [c.intermediate_size, c.hidden_size]],
      [`${p}.mlp.up_proj.weight`, [c.intermediate_size, c.hidden_size]],
      [`${p}.mlp.down_proj.weight`, [c.hidden_size, c.intermediate_size]],
    );
  }
  shapes.push(["model.norm.weight", [c.hidden_size]], ["lm_head.weight", [c.vocab_size, c.hidden_size]]);
  return shapes;
}

/** Random bf16 values: a fixed random pool, read at a different offset for each tensor (fast to make). */
function randomBf16(n: number, salt: number, pool: Uint16Array): Uint16Array {
  const out = new Uint16Array(n);
  let offset = (salt * 7919) % pool.length;
  for (let filled = 0; filled < n;) {
    const take = Math.min(n - filled, pool.length - offset);
    out.set(pool.subarray(offset, offset + take), filled);
    filled += take;
    offset = 0;
  }
  return out;
}

/** Writes the model into `dir` unless it is already complete; returns the parameter count. */
export function writeSyntheticModel(
  dir: string,
  config: Config = MISTRAL_7B_CONFIG,
  shardBytes = 2 ** 31,
): number {
  const shapes = tensorShapes(config);
  const params = shapes.reduce((n, [, s]) => n + s.reduce((a, b) => a * b, 1), 0);
  if (existsSync(join(dir, "DONE"))) {
    writeTokenizerFiles(dir);
    return params;
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const pool = f32ToBf16(randomF32(1 << 22, 7, 0.02));
  const shards: [string, number[]][][] = [[]];
  let bytes = 0;
  for (const entry of shapes) {
    const size = 2 * entry[1].reduce((a, b) => a * b, 1);
    if (bytes + size > shardBytes && shards.at(-1)!.length > 0) (shards.push([]), (bytes = 0));
    shards.at(-1)!.push(entry);
    bytes += size;
  }
  const weightMap: Record<string, string> = {};
  for (const [i, shard] of shards.entries()) {
    const file = `model-${String(i + 1).padStart(5, "0")}-of-${
      String(shards.length).padStart(5, "0")
    }.safetensors`;
    console.error(`writing ${file} (${shard.length} tensors)`);
    writeSafetensors(
      join(dir, file),
      shard.map(([name, shape], t) => ({
        name,
        dtype: "BF16",
        shape,
        data: () =>
          name.endsWith("norm.weight")
            ? f32ToBf16(new Float32Array(shape[0]).fill(1))
            : randomBf16(shape.reduce((a, b) => a * b, 1), i * 1000 + t, pool),
      })),
      { format: "pt" },
    );
    for (const [name] of shard) weightMap[name] = file;
  }
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  writeFileSync(
    join(dir, "model.safetensors.index.json"),
    JSON.stringify({ metadata: { total_size: params * 2 }, weight_map: weightMap }, null, 2),
  );
  writeTokenizerFiles(dir);
  writeFileSync(join(dir, "DONE.tmp"), "");
  renameSync(join(dir, "DONE.tmp"), join(dir, "DONE"));
  return params;
}

/** The Llama-2 tokenizer of the test fixtures: 32000 ids, `<s>` = 1 and `</s>` = 2 as in MISTRAL_7B_CONFIG. */
const TOKENIZER_FIXTURE = new URL("../../tests/fixtures/text/llama2_tokenizer", import.meta.url);

/** Mistral-Instruct's turn layout ([INST] … [/INST] answer</s>), with a system message put before the first user turn. */
const CHAT_TEMPLATE = "{{ bos_token }}{% set system = namespace(text='') %}" +
  "{% for message in messages %}{% if message['role'] == 'system' %}{% set system.text = message['content'] + '\\n\\n' %}" +
  "{% elif message['role'] == 'user' %}{{ '[INST] ' + system.text + message['content'] + ' [/INST]' }}" +
  "{% set system.text = '' %}{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}" +
  "{% endif %}{% endfor %}";

/** tokenizer.json and tokenizer_config.json (with the chat template), unless present. */
function writeTokenizerFiles(dir: string): void {
  const tokenizer = join(dir, "tokenizer.json");
  if (!existsSync(tokenizer)) {
    copyFileSync(fileURLToPath(`${TOKENIZER_FIXTURE.href}.json`), `${tokenizer}.tmp`);
    renameSync(`${tokenizer}.tmp`, tokenizer);
  }
  const configPath = join(dir, "tokenizer_config.json");
  if (!existsSync(configPath)) {
    const config = JSON.parse(readFileSync(fileURLToPath(`${TOKENIZER_FIXTURE.href}_config.json`), "utf8"));
    config.chat_template = CHAT_TEMPLATE;
    writeFileSync(`${configPath}.tmp`, JSON.stringify(config, null, 2));
    renameSync(`${configPath}.tmp`, configPath);
  }
}
