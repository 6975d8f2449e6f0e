/**
 * Starts a `LoraModel` from a saved adapter (PEFT layout), to continue training it: each adapter's A and B
 * are overwritten with the saved values. The LoRA shape (targets, ranks, scales) must be the same.
 */
import type { LoraModel } from "./model.ts";
import type { LoraWeights } from "./weights.ts";

export function loadAdapterInto(
  lora: LoraModel,
  layers: ReadonlyMap<string, LoraWeights>,
  source = "adapter",
): void {
  const missing = [...lora.adapters.keys()].filter((m) => !layers.has(m));
  const extra = [...layers.keys()].filter((m) => !lora.adapters.has(m));
  if (missing.length > 0 || extra.length > 0) {
    throw new RangeError(
      `${source}: adapted modules differ from the LoRA being trained` +
        (missing.length
          ? `; not in the adapter: ${missing.slice(0, 3).join(", ")}${missing.length > 3 ? ", …" : ""}`
          : "") +
        (extra.length
          ? `; only in the adapter: ${extra.slice(0, 3).join(", ")}${extra.length > 3 ? ", …" : ""}`
          : ""),
    );
  }
  for (const [module, adapter] of lora.adapters) {
    const saved = layers.get(module)!;
    if (saved.r !== adapter.rank || Math.abs(saved.scale - adapter.scale) > 1e-6 * adapter.scale) {
      throw new RangeError(
        `${source}: ${module} has rank ${saved.r} and scale ${saved.scale}, the LoRA being trained rank ` +
          `${adapter.rank} and scale ${adapter.scale} (pass the same --lora-rank / --lora-alpha / --lora-rslora)`,
      );
    }
    adapter.load(saved);
  }
}
