"""Greedy exact match of GGUF files in llama.cpp itself (llama-cpp-python, built from PyPI's source
package), on the first records of a chat JSONL set, using the chat template stored in each file:

    python tasks/bench/llama_cpp_exact_match.py [--data data/dates/valid.jsonl] [--limit 20] FILE.gguf ...

Checks that an exported GGUF runs in llama.cpp and keeps the fine-tune (compare with
tasks/bench/export_fidelity.ts, which scores the same records with our own runtime).
"""

import argparse
import json

from llama_cpp import Llama

parser = argparse.ArgumentParser()
parser.add_argument("--data", default="data/dates/valid.jsonl")
parser.add_argument("--limit", type=int, default=20)
parser.add_argument("files", nargs="+")
args = parser.parse_args()

records = [json.loads(line) for line in open(args.data)][: args.limit]
for path in args.files:
    llm = Llama(model_path=path, n_ctx=512, verbose=False, seed=0)
    correct = 0
    for record in records:
        prompt, answer = record["messages"][:-1], record["messages"][-1]["content"]
        out = llm.create_chat_completion(messages=prompt, temperature=0.0, max_tokens=16)
        correct += out["choices"][0]["message"]["content"].strip() == answer
    print(f"{path}: exact match {correct}/{len(records)}", flush=True)
