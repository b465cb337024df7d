"""Benchmark: building ILM training examples at the seed corpus's scale.

578,625 documents of about 330 characters (random runs of real CEFR-SP and OneStopEnglish sentences)
x 16 masks, tokenised and written to memory-mapped shards. Target: <= 5 minutes wall on 2 cores and
<= 2 GB peak RSS.

Reference measured in the same run ("naive"): the way the ILM reference code works, one document
and one example at a time: split the document, walk its tree with Python's `random` (one draw per
node), build each masked example as a string with blank tokens and tokenise it with the
transformers tokenizer, keep all examples in one in-memory list and pickle it. It runs on
--ref-docs documents in one process and is scaled linearly to --docs. Its masking alone is timed
too (the issue quotes ~500 documents/s on one core for the old masker).

    python bench/bench_ilm_examples.py [--docs N] [--workers 2] [--ref-docs 2000]

The machine may be shared: the load average is printed at start and end; compare ratios.
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
FULL = 578_625


def corpus(n: int, seed: int = 0):
    """n documents of ~330 characters: random runs of real sentences (streamed)."""
    from fairtrial.data import read_cefr_sp, read_onestopenglish
    from fairtrial.data.textsplit import split_sentences

    sents = [d.text for d in read_cefr_sp(DATA / "cefr-sp")]
    for d in read_onestopenglish(DATA / "onestopenglish"):
        sents += split_sentences(d.text)
    lens = [len(s) + 1 for s in sents]
    rng = np.random.default_rng(seed)
    picks = iter(())
    for i in range(n):
        parts, size = [], 0
        while size < 330:
            k = next(picks, None)
            if k is None:  # sentence indices are drawn in blocks: the generator stays cheap
                picks = iter(rng.integers(len(sents), size=65536).tolist())
                k = next(picks)
            parts.append(sents[k])
            size += lens[k]
        yield f"doc{i}", " ".join(parts)


# ----------------------------------------------------------------------------- naive reference

def naive_masks(text: str, seed: int, doc_id: str, n_masks=16, p=0.03, ngram_max=8, retries=8):
    """The paper's walk, one node and one Python random draw at a time."""
    from fairtrial.data.textsplit import paragraph_spans, sentence_spans, word_spans

    rng = random.Random(f"{seed}\0{doc_id}")
    out, seen = [], set()
    for _ in range(n_masks * (1 + retries)):
        if len(out) == n_masks:
            break
        spans = []
        if rng.random() < p:
            spans.append(("document", 0, len(text)))
        else:
            for a, b in paragraph_spans(text):
                if rng.random() < p:
                    spans.append(("paragraph", a, b))
                    continue
                for sa, sb in sentence_spans(text, a, b):
                    if rng.random() < p:
                        spans.append(("sentence", sa, sb))
                        continue
                    words = word_spans(text, sa, sb)
                    w = 0
                    while w < len(words):
                        if rng.random() < p:  # the paper's rule: n-gram half the time
                            is_ng = rng.random() < 0.5
                            k = min(rng.randint(1, ngram_max), len(words) - w) if is_ng else 1
                            spans.append(("ngram" if is_ng else "word", words[w][0],
                                          words[w + k - 1][1]))
                            w += k
                        else:
                            w += 1
        mk = tuple(spans)
        if mk and mk not in seen:
            seen.add(mk)
            out.append(mk)
    return out


def naive_reference(n_docs: int, tok, out: Path) -> tuple[float, float]:
    """(seconds for n_docs end to end, seconds for their masking alone, CPU seconds in all)."""
    from fairtrial.recipes.ilm import tokenizer as T

    docs = list(corpus(n_docs))
    t0 = time.perf_counter()
    for doc_id, text in docs:
        naive_masks(text, 0, doc_id)
    mask_s = time.perf_counter() - t0
    c0 = time.process_time()
    t0 = time.perf_counter()
    examples = []
    for doc_id, text in docs:
        for mk in naive_masks(text, 0, doc_id):
            ctx, ans, pos = [], [], 0
            for t, s, e in mk:
                ctx.append(text[pos:s] + T.BLANK_TOKENS[t])
                ans.append(text[s:e] + T.END_INFILL)
                pos = e
            s = "".join(ctx) + text[pos:] + T.START_INFILL + "".join(ans) + T.EOS
            examples.append(tok(s)["input_ids"])
    with open(out, "wb") as f:
        pickle.dump(examples, f)
    return time.perf_counter() - t0, mask_s, time.process_time() - c0


# ----------------------------------------------------------------------------- main

def rss_mb() -> tuple[float, float]:
    """Peak RSS (MB) of this process and of its largest finished child."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def cpu_s() -> float:
    """CPU seconds (user + system) of this process and its finished children."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=FULL)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ref-docs", type=int, default=2000)
    ap.add_argument("--keep", action="store_true", help="keep the shard folder")
    args = ap.parse_args()

    from fairtrial.recipes.ilm import tokenizer as T
    from fairtrial.recipes.ilm.examples import ExampleShards, build_shards

    load0 = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench_ilm_"))
    tok = T.train_bpe((t for _, t in corpus(5000, seed=1)), vocab_size=8192)
    tok.save_pretrained(str(tmp / "tok"))

    ref_s, ref_mask_s, ref_cpu = naive_reference(args.ref_docs, tok, tmp / "ref.pkl")
    (tmp / "ref.pkl").unlink()
    ref_full = ref_s * args.docs / args.ref_docs

    c0 = cpu_s()
    t0 = time.perf_counter()
    meta = build_shards(corpus(args.docs), tmp / "shards", tmp / "tok" / "tokenizer.json",
                        n_masks=16, workers=args.workers)
    wall = time.perf_counter() - t0
    cpu = cpu_s() - c0  # corpus generation in this process included
    load1 = os.getloadavg()
    sh = ExampleShards(tmp / "shards")
    assert len(sh) == meta["n_examples"]
    size = sum(p.stat().st_size for p in (tmp / "shards").iterdir())
    rss_self, rss_child = rss_mb()
    rate = meta["n_docs"] / wall
    print(f"load average         {load0[0]:.1f} at start, {load1[0]:.1f} at end "
          f"({os.cpu_count()} cores, shared)")
    print(f"documents            {meta['n_docs']:,}")
    print(f"examples             {meta['n_examples']:,}  tokens {meta['n_tokens']:,}  "
          f"on disk {size / 2**20:,.0f} MiB")
    print(f"token mask rate      {meta['token_mask_rate']:.3f}  char mask rate "
          f"{meta['char_mask_rate']:.3f}  span counts {meta['span_counts']}")
    print(f"fairtrial build      {wall:,.1f} s wall ({args.workers} workers): {rate:,.0f} docs/s, "
          f"{rate / args.workers:,.0f} docs/s/worker; at {FULL:,} docs ~{FULL / rate:,.0f} s "
          f"(target <= 300 s)")
    print(f"naive reference      {ref_full:,.1f} s for {args.docs:,} docs (measured on "
          f"{args.ref_docs:,} docs in 1 process: {args.ref_docs / ref_s:,.0f} docs/s; its masking "
          f"alone {args.ref_docs / ref_mask_s:,.0f} docs/s)")
    ref_cpu_rate = args.ref_docs / ref_cpu
    print(f"CPU time             fairtrial {cpu:,.1f} CPU-s: {meta['n_docs'] / cpu:,.0f} docs per "
          f"CPU-second (corpus generation included); naive {ref_cpu_rate:,.0f} docs per "
          f"CPU-second; ratio {meta['n_docs'] / cpu / ref_cpu_rate:.1f}x")
    print(f"speed-up vs naive    {ref_full / wall:.1f}x wall; "
          f"{(rate / args.workers) / (args.ref_docs / ref_s):.1f}x per process")
    print(f"peak RSS             {rss_self:,.0f} MB parent, {rss_child:,.0f} MB largest worker "
          f"(target <= 2048 MB)")
    if args.keep:
        print(f"shards kept in       {tmp / 'shards'}")
    else:
        import shutil

        shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
