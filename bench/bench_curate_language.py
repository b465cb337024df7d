"""Benchmark: the curate recipe's language filter (lingua) on lingua's own test data: precision and
recall for the kept language by text length, texts per second and peak RSS.

    .venv/bin/python bench/bench_curate_language.py [--per-file 300] [--language en]

Data: ../shared/data/langid-testdata, 27 languages x {sentences, word-pairs, single-words}, the
language given by the file name; split on "\\n" only (fr, nb, pl sentences hold U+0085). The first
--per-file lines of every file (all of them with --per-file 0).

For the kept language (default English): precision = texts kept as English that are English /
texts kept as English; recall = English texts kept as English / English texts; an abstention
(lingua returns no language: its top two are within min_relative_distance) is not a keep, so it
lowers recall, and is counted apart. Length buckets in characters: < 20, 20-60, 60-120, > 120.

Measured in the same run: the recipe's detector (all 75 languages, high accuracy, relative
distance 0.1) with min_chars 0 (lingua alone) and with the recipe's default min_chars 20 (short
texts abstain); lingua's low-accuracy mode (the speed reference); and the trivial reference "keep
everything" (precision = the share of English, recall 1).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "langid-testdata"
BUCKETS = (("<20", 0, 20), ("20-60", 20, 60), ("60-120", 60, 120), (">120", 120, 10**9))


def load(per_file: int) -> list[tuple[str, str, str]]:
    """(text, language, kind) for every line of every file."""
    out = []
    for kind in ("sentences", "word-pairs", "single-words"):
        for f in sorted((DATA / kind).glob("*.txt")):
            lines = [x for x in f.read_text(encoding="utf-8").split("\n") if x.strip()]
            out += [(x, f.stem, kind) for x in (lines[:per_file] if per_file else lines)]
    return out


def scores(items, verdicts, language: str) -> dict:
    rows = {}
    for name, lo, hi in BUCKETS + (("all", 0, 10**9),):
        sel = [(lang, v) for (t, lang, _), v in zip(items, verdicts) if lo <= len(t) < hi]
        tp = sum(1 for lang, v in sel if lang == language and v == "keep")
        fp = sum(1 for lang, v in sel if lang != language and v == "keep")
        pos = sum(1 for lang, _ in sel if lang == language)
        ab = sum(1 for _, v in sel if v == "abstain")
        rows[name] = {"n": len(sel), "english": pos, "precision": tp / (tp + fp) if tp + fp else float("nan"),
                      "recall": tp / pos if pos else float("nan"), "abstain": ab / len(sel) if sel else float("nan")}
    return rows


def show(title: str, rows: dict, seconds: float, n: int) -> None:
    print(f"\n{title}: {n:,} texts in {seconds:.1f} s = {n / seconds:,.0f} texts/s")
    print(f"  {'length':>8} {'texts':>7} {'English':>7} {'precision':>9} {'recall':>7} {'abstain':>7}")
    for k, r in rows.items():
        print(f"  {k:>8} {r['n']:>7,} {r['english']:>7,} {r['precision']:>9.4f} {r['recall']:>7.4f} "
              f"{r['abstain']:>7.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-file", type=int, default=300)
    ap.add_argument("--language", default="en")
    a = ap.parse_args()

    from lingua import LanguageDetectorBuilder

    from fairtrial.recipes.curate.language import classify, detector

    items = load(a.per_file)
    texts = [t for t, _, _ in items]
    print(f"langid-testdata: {len(items):,} texts, {len({l for _, l, _ in items})} languages, "
          f"{sum(1 for _, l, _ in items if l == a.language):,} in {a.language!r}")

    t = time.perf_counter()
    detector(0.1, None)  # build; models load lazily on first use: included in the first timing
    v0, _ = classify(texts, a.language, min_chars=0)
    dt0 = time.perf_counter() - t
    show("lingua (recipe's detector, all languages, high accuracy), min_chars 0, first call incl. "
         "model loading", scores(items, v0, a.language), dt0, len(items))
    t = time.perf_counter()
    v1, _ = classify(texts, a.language, min_chars=20)
    dt1 = time.perf_counter() - t
    show("the recipe's default (min_chars 20: shorter texts abstain), models loaded",
         scores(items, v1, a.language), dt1, len(items))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"\npeak RSS after the high-accuracy runs: {rss:.2f} GB")

    low = (LanguageDetectorBuilder.from_all_languages().with_minimum_relative_distance(0.1)
           .with_low_accuracy_mode().build())
    t = time.perf_counter()
    found = low.detect_languages_in_parallel_of(texts)
    dt2 = time.perf_counter() - t
    v2 = ["abstain" if x is None else "keep" if x.iso_code_639_1.name.lower() == a.language else "other"
          for x in found]
    show("reference: lingua low-accuracy mode (same languages and distance)", scores(items, v2, a.language),
         dt2, len(items))
    r = scores(items, ["keep"] * len(items), a.language)["all"]
    print(f"\nreference: keep everything: precision {r['precision']:.4f}, recall 1.0000")
    print(f"peak RSS at the end: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GB")


if __name__ == "__main__":
    main()
