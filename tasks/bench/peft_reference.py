"""Baseline for `deno task bench --sections train`: the same training step in PyTorch + PEFT on this CPU.

SmolLM2-135M shape (config passed as JSON on argv[1]), fp32 weights (random: speed does not depend on the
values), LoRA r=16 alpha=32 on every block linear, AdamW, sequence 256, batch 1. Prints one JSON line with
tokens/s and this process's peak RSS. Needs torch, transformers and peft (not part of the project: run with
the interpreter named by QLORA_REF_PYTHON).

    python peft_reference.py '{"hidden_size": 576, ...}' [--quantize nf4]
"""

import json
import resource
import statistics
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

TOKENS = 256
STEPS = 7  # the median step is reported: this machine's speed drifts


def main() -> None:
    config = LlamaConfig(**json.loads(sys.argv[1]))
    torch.manual_seed(0)
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else torch.get_num_threads())
    model = LlamaForCausalLM(config).float()
    lora = LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    vocab = config.vocab_size
    inputs = torch.tensor([[(i * 7919) % vocab for i in range(TOKENS)]])
    labels = torch.tensor([[(i * 104729 + 13) % vocab for i in range(TOKENS)]])

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        logits = model(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.view(-1, vocab), labels.view(-1))
        loss.backward()
        optimizer.step()

    step()
    times = []
    for _ in range(STEPS):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    print(json.dumps({
        "tokensPerSecond": TOKENS / seconds,
        "msPerStep": seconds * 1000,
        "peakRss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
