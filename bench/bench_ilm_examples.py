"""Benchmark: building ILM training examples at the seed corpus's scale.

578,625 documents of about 330 characters (built from real CEFR-SP and OneStopEnglish sentences) x 16
masks, tokenised and written to memory-mapped shards. Target: <= 5 minutes wall on 2 cores and
<= 2 GB peak RSS. Reference measured in the same run: the naive way (tokenise every masked example
separately with the transformers tokenizer and keep all examples in one in-memory list, pickled),
on a subset, scaled linearly to the full corpus.

    python bench/bench_ilm_examples.py [--docs N] [--workers 2] [--ref-docs 2000]
"""

from __future__ import annotations

import argparse
import pickle
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"


def corpus(n: int, seed: int = 0):
    """n documents of ~330 characters: random runs of real sentences."""
    from fairtrial.data import read_cefr_sp, read_onestopenglish
    from fairtrial.data.textsplit import split_sentences

    sents = [d.text for d in read_cefr_sp(DATA / "cefr-sp")]
    for d in read_onestopenglish(DATA / "onestopenglish"):
        sents += split_sentences(d.text)
    rng = np.random.default_rng(seed)
    for i in range(n):
        parts, size = [], 0
        while size < 330:
            s = sents[int(rng.integers(len(sents)))]
            parts.append(s)
            size += len(s) + 1
        yield f"doc{i}", " ".join(parts)


def peak_rss_mb() -> float:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(self_kb, child_kb) / 1024


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=578_625)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ref-docs", type=int, default=2000)
    args = ap.parse_args()

    from fairtrial.recipes.ilm import masking as M
    from fairtrial.recipes.ilm import tokenizer as T
    from fairtrial.recipes.ilm.examples import ExampleShards, build_shards

    tmp = Path(tempfile.mkdtemp(prefix="bench_ilm_"))
    tok = T.train_bpe((t for _, t in corpus(5000, seed=1)), vocab_size=8192)
    tok.save_pretrained(str(tmp / "tok"))

    # reference: naive per-example tokenisation, all examples in memory, one pickle
    t0 = time.perf_counter()
    ids = T.special_ids(tok)
    blank = {k: T.BLANK_TOKENS[k] for k in M.SPAN_TYPES}
    examples = []
    for doc_id, text in corpus(args.ref_docs):
        masks, _ = M.distinct_masks(M.doc_tree(text), M.MaskConfig(), M.doc_rng(0, doc_id), 16)
        for mk in masks:
            ctx, ans, pos = [], [], 0
            for t, s, e in mk:
                ctx.append(text[pos:s] + blank[t])
                ans.append(text[s:e] + T.END_INFILL)
                pos = e
            s = "".join(ctx) + text[pos:] + T.START_INFILL + "".join(ans) + T.EOS
            examples.append(tok(s)["input_ids"])
    with open(tmp / "ref.pkl", "wb") as f:
        pickle.dump(examples, f)
    ref_s = (time.perf_counter() - t0) * args.docs / args.ref_docs
    del examples, ids

    t0 = time.perf_counter()
    meta = build_shards(corpus(args.docs), tmp / "shards", tmp / "tok" / "tokenizer.json",
                        n_masks=16, workers=args.workers)
    wall = time.perf_counter() - t0
    sh = ExampleShards(tmp / "shards")
    assert len(sh) == meta["n_examples"]
    size = sum(p.stat().st_size for p in (tmp / "shards").iterdir())
    print(f"documents            {meta['n_docs']:,}")
    print(f"examples             {meta['n_examples']:,}  tokens {meta['n_tokens']:,}  "
          f"on disk {size / 2**20:,.0f} MiB")
    print(f"token mask rate      {meta['token_mask_rate']:.3f}  span counts {meta['span_counts']}")
    print(f"fairtrial build      {wall:,.1f} s wall ({args.workers} workers)   target <= 300 s "
          f"at 578,625 docs")
    print(f"naive reference      {ref_s:,.1f} s (measured on {args.ref_docs:,} docs, scaled)")
    print(f"speed-up vs naive    {ref_s / wall:.2f}x")
    print(f"peak RSS             {peak_rss_mb():,.0f} MB (largest process)   target <= 2048 MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
