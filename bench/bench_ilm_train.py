"""Useful (non-padding) training tokens per second: length-bucketed batches vs every example padded
to 256 tokens (the reference), same model, same examples, same steps, in the same run.

    python bench/bench_ilm_train.py                 # CEFR-SP sentences, 4-layer GPT-2 on the CPU
    python bench/bench_ilm_train.py --data onestop --steps 10 --device cuda

Examples are real ILM examples: the data side's masking and BPE over ../shared/data. The target is
a ratio >= 2; for sentence-length data it is far higher, since a padded batch is mostly padding.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"


def load_texts(which: str, n: int) -> list[tuple[str, str]]:
    from fairtrial.data.readers import read_cefr_sp, read_onestopenglish

    if which == "cefr":
        docs = read_cefr_sp(DATA / "cefr-sp" / "wikiauto_train.tsv")
    else:
        docs = read_onestopenglish(DATA / "onestopenglish" / "Texts-SeparatedByReadingLevel")
    return [(d.id, d.text) for d in docs[:n]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=["cefr", "onestop"], default="cefr")
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from fairtrial.recipes.ilm.examples import ExampleShards, build_shards
    from fairtrial.recipes.ilm.model import ModelParams, build_model
    from fairtrial.recipes.ilm.tokenizer import special_ids, train_bpe
    from fairtrial.recipes.ilm.train import TrainParams, train

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_ilm_train_"))
    texts = load_texts(args.data, args.docs)
    tok = train_bpe((t for _, t in texts), vocab_size=4096)
    tok.save_pretrained(tmp / "tok")
    build_shards(texts, tmp / "train", tmp / "tok" / "tokenizer.json", n_masks=1, seed=0,
                 max_doc_tokens=200)
    data = ExampleShards(tmp / "train")
    lengths = data.lengths()
    ids = special_ids(tok)
    print(f"data: {args.data}, {len(data)} ILM examples, length mean {lengths.mean():.1f}, "
          f"max {lengths.max()} tokens; model: GPT-2 n_layer={args.n_layer} "
          f"n_embd={args.n_embd}; {args.steps} steps of {args.micro_batch} examples on "
          f"{args.device}")

    def model_():
        return build_model(ModelParams(n_layer=args.n_layer, n_embd=args.n_embd,
                                       n_head=max(1, args.n_embd // 32), n_positions=256,
                                       dropout=0.0), tok, seed=0)

    # warm-up (allocator, kernels, lazy imports), untimed, so neither layout pays it
    for batching in ("padded", "bucketed"):
        train(model_(), data, data, TrainParams(steps=2, micro_batch=args.micro_batch,
                                                batching=batching, eval_every=0,
                                                eval_examples=1), ids=ids, seed=1,
              device=args.device)

    results = {}
    for batching in ("padded", "bucketed"):  # reference first
        model = model_()
        p = TrainParams(steps=args.steps, micro_batch=args.micro_batch, batching=batching,
                        pad_to=256, eval_every=0, eval_examples=1, warmup_frac=0.0)
        t0 = time.perf_counter()
        r = train(model, data, data, p, ids=ids, seed=0, device=args.device)
        results[batching] = r
        print(f"{batching:>9}: {r['useful_tokens_per_s']:>10,.0f} useful tok/s  "
              f"({r['useful_tokens']:,} useful of {r['computed_tokens']:,} computed tokens, "
              f"{r['seconds']:.1f} s; wall {time.perf_counter() - t0:.1f} s)")
    ratio = results["bucketed"]["useful_tokens_per_s"] / results["padded"]["useful_tokens_per_s"]
    print(f"ratio bucketed / padded-to-256 (reference): {ratio:.2f}x  (target >= 2x)")
    return 0 if ratio >= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
