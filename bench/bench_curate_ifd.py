"""Benchmark: the optional instruction-following difficulty (IFD) score under SmolLM2-135M, checked
against a known answer: a response paired with its own prompt should be easier to predict with
that prompt (lower IFD) than the same response paired with another sample's prompt.

    .venv/bin/python bench/bench_curate_ifd.py [--n 40]

Samples: the first --n GSM8K train items and --n slm-swap toolcall train items. Each response is
scored with its own prompt (matched) and with the prompt of the next item of the same source
(mismatched). Printed: mean IFD of each, the share of items whose matched IFD is below their
mismatched IFD (a paired AUC; the reference is 0.5, a score that knows nothing), with a Wilson
interval, the share of matched samples the default rule (IFD > 1) would remove, and samples/s.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    a = ap.parse_args()

    from fairtrial.data.instructions import read_gsm8k, read_slm_swap
    from fairtrial.ml.causal_lm.model import load_causal_lm
    from fairtrial.recipes.curate.ifd import ifd_scores

    t = time.perf_counter()
    model, tok = load_causal_lm("smollm2-135m")
    print(f"smollm2-135m loaded in {time.perf_counter() - t:.1f} s")
    for name, rows in (("gsm8k train", read_gsm8k(DATA / "gsm8k" / "train.jsonl")[: a.n]),
                       ("slm-swap toolcall", read_slm_swap(DATA / "slm-swap" / "toolcall" / "train.jsonl")[: a.n])):
        prompts = [r.prompt for r in rows]
        responses = [r.response for r in rows]
        wrong = prompts[1:] + prompts[:1]
        t = time.perf_counter()
        _, _, matched = ifd_scores(model, tok, prompts, responses)
        _, _, mismatched = ifd_scores(model, tok, wrong, responses)
        dt = time.perf_counter() - t
        k = int(np.sum(matched < mismatched))
        lo, hi = wilson(k, len(rows))
        print(f"{name}: {len(rows)} items; mean IFD matched {np.nanmean(matched):.3f}, mismatched "
              f"{np.nanmean(mismatched):.3f}; matched < mismatched for {k}/{len(rows)} = "
              f"{k / len(rows):.3f} [{lo:.3f}, {hi:.3f}] (reference: 0.5 for a score that knows "
              f"nothing); matched IFD > 1 (removed by the default rule): "
              f"{int(np.sum(matched > 1))}/{len(rows)}; {4 * len(rows) / dt:.1f} sequences/s")


if __name__ == "__main__":
    main()
