"""Baseline for `deno task bench --sections train,train7b`: the same training step in PyTorch + PEFT on this CPU.

Either a model shape (HF config as JSON on argv) with random fp32 weights — speed does not depend on the
values — or `--model DIR`, a checkpoint loaded with transformers (the bench's Mistral-7B-shaped bf16 one, in
`--dtype bf16`). LoRA r=16 alpha=32 on every block linear, AdamW, sequence 256, batch 1; `--gradient-checkpointing`
recomputes each block in backward as ours does. Prints one JSON line with tokens/s, the load time and this
process's peak RSS. Needs torch, transformers and peft (not part of the project: run with the interpreter
named by QLORA_REF_PYTHON).

    python peft_reference.py '{"hidden_size": 576, ...}' [threads]
    python peft_reference.py --model DIR --dtype bf16 --gradient-checkpointing --steps 2 [--threads N]
"""

import argparse
import json
import resource
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

TOKENS = 256
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", nargs="?", help="HF config JSON of a model shape (random weights)")
    parser.add_argument("threads", nargs="?", type=int)
    parser.add_argument("--threads", dest="threads_flag", type=int)
    parser.add_argument("--model", help="a checkpoint directory to load instead of random weights")
    parser.add_argument("--dtype", choices=DTYPES, default="fp32")
    # The median step is reported: this machine's speed drifts.
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    threads = args.threads_flag or args.threads
    torch.manual_seed(0)
    if threads:
        torch.set_num_threads(threads)
    dtype = DTYPES[args.dtype]
    start = time.perf_counter()
    if args.model:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype, device_map="cpu")
    else:
        model = LlamaForCausalLM(LlamaConfig(**json.loads(args.config))).to(dtype)
    load_seconds = time.perf_counter() - start
    config = model.config
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
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
        loss = torch.nn.functional.cross_entropy(logits.float().view(-1, vocab), labels.view(-1))
        loss.backward()
        optimizer.step()

    step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    print(json.dumps({
        "tokensPerSecond": TOKENS / seconds,
        "msPerStep": seconds * 1000,
        "peakRss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "loadSeconds": load_seconds,
        "torch": torch.__version__,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        # Which of ATen's kernel builds ran (ATEN_CPU_CAPABILITY can hold it to AVX2).
        "cpuCapability": torch.backends.cpu.get_cpu_capability(),
    }))


if __name__ == "__main__":
    main()
