"""Benchmark: the lvm pipeline on OneStopEnglish at the example study's settings, for one arm.

Prints wall time per stage (and each stage's time as a ratio to the embed stage, the one pass
every arm shares), and the model against the trivial baselines on MRR and cosine (ratios to the
mean-of-context baseline, measured in the same run on the same test windows).

    .venv/bin/python bench/bench_lvm.py                       # transformer, train_fraction 1.0
    .venv/bin/python bench/bench_lvm.py --arch gru --train-fraction 0.3333 --seed 1
    .venv/bin/python bench/bench_lvm.py --all-arms --embed-cache /tmp/lvm-cache

Not a test: it embeds ~17,000 sentences with MiniLM (minutes on a laptop CPU).
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import tempfile
import time
import tomllib
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fairtrial.recipes.lvm import RECIPE  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lvm_data_scaling.toml"


def bench_context(params, out: Path, inputs, seed, device="cpu"):
    """The recipe harness's context (fairtrial.recipes.testing), printing progress every 5 s."""
    from fairtrial.recipes.testing import FakeContext

    last = [0.0]

    def show(done, total=None, unit="it", message=""):
        if time.time() - last[0] > 5 or (total and done >= total):
            last[0] = time.time()
            print(f"    {done}/{total or '?'} {unit} {message[:80]}", file=sys.stderr)

    return FakeContext(params=params, out=out, inputs=inputs, seed=seed, device=device,
                       log=logging.getLogger("bench.lvm"), on_progress=show)


def deep_merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="transformer")
    ap.add_argument("--train-fraction", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--all-arms", action="store_true",
                    help="train and evaluate every arch x train_fraction of the example (one seed)")
    ap.add_argument("--embed-cache", default=None, help="embed.cache_dir to reuse vectors")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    study = tomllib.loads(EXAMPLE.read_text())
    base = study["params"]
    if args.embed_cache:
        base = deep_merge(base, {"embed": {"cache_dir": args.embed_cache}})
    if args.all_arms:
        arms = [(a, f) for a in study["grid"]["arch"] for f in study["grid"]["train_fraction"]]
    else:
        arms = [(args.arch, args.train_fraction)]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_lvm_"))
    print(f"example: {EXAMPLE.name}; work dir {work}; seed {args.seed}")

    def run(stage_name, params, tag, dirs):
        stage = RECIPE.stage(stage_name)
        ctx = bench_context(params, work / f"{stage_name}-{tag}",
                           {n: dirs[n] for n in stage.needs},
                           args.seed if stage.seeded else None)
        t = time.perf_counter()
        summary = stage.fn(ctx)
        dirs[stage_name] = ctx.out
        return time.perf_counter() - t, summary or {}

    dirs: dict[str, Path] = {}
    times: dict[str, float] = {}
    times["prepare"], prep = run("prepare", base, "shared", dirs)
    times["embed"], emb = run("embed", base, "shared", dirs)
    print(f"prepare: {prep['documents']} documents, {prep['units']} units, "
          f"{prep['documents_train']}/{prep['documents_valid']}/{prep['documents_test']} "
          "train/valid/test documents")
    print(f"embed: {emb['distinct_texts']} distinct texts, {emb['encoded']} encoded "
          f"({emb['sentences_per_second']} sentences/s), load {emb['load_seconds']} s")

    rows, per_size = [], {}
    for arch, frac in arms:
        params = deep_merge(base, {"arch": arch, "train_fraction": frac})
        if frac not in per_size:  # windows and baselines are shared by every arch of a size
            d = dict(dirs)
            t_win, win = run("windows", params, f"{frac}", d)
            t_base, bl = run("baseline", params, f"{frac}", d)
            per_size[frac] = (d, t_win, t_base)
            print(f"windows f={frac}: {win['train_windows']} train / {win['valid_windows']} valid / "
                  f"{win['test_windows']} test windows; baselines {t_base:.1f} s")
        d = dict(per_size[frac][0])
        t_tr, tr = run("train", params, f"{arch}-{frac}", d)
        t_ev, ev = run("evaluate", params, f"{arch}-{frac}", d)
        rows.append((arch, frac, t_tr, t_ev, tr, ev))

    e = times["embed"]
    if emb["encoded"] == 0:
        print("\n(embeddings came from the cache: run without --embed-cache to measure the "
              "embedding pass; ratios below are to the cached read)")
    print(f"\nwall time per stage (ratio to embed = {e:.1f} s, the shared pass):")
    print(f"  prepare   {times['prepare']:7.1f} s  x{times['prepare'] / e:.2f}")
    print(f"  embed     {e:7.1f} s  x1.00")
    total = sum(t_win + t_base for _, t_win, t_base in per_size.values())
    for frac, (_, t_win, t_base) in per_size.items():
        print(f"  windows f={frac:<6} {t_win:5.1f} s   baselines {t_base:5.1f} s")
    for arch, frac, t_tr, t_ev, tr, ev in rows:
        total += t_tr + t_ev
        print(f"  {arch:11s} f={frac:<6} train {t_tr:6.1f} s "
              f"(x{t_tr / e:.2f}; {tr['epochs_run']} epochs, best {tr['best_epoch']}, "
              f"{tr['train_windows']} windows, {tr['parameters']} params)  evaluate {t_ev:5.1f} s")
    print(f"  everything after embed: {total:.1f} s; with prepare+embed: "
          f"{total + times['prepare'] + e:.1f} s (one seed)")

    print("\ntest windows: model vs baselines (ratio to mean_context, same windows):")
    for arch, frac, _, _, tr, ev in rows:
        ref_mrr, ref_cos = ev["mean_context.mrr"], ev["mean_context.cosine"]
        print(f"  {arch} train_fraction={frac} ({ev['test_windows']} windows, "
              f"{ev['candidates']} candidates; latency batch1 {ev['latency_ms_batch1']} ms, "
              f"batch256 {ev['latency_ms_batch256']} ms)")
        for system in ("model", "ridge", "mean_context", "copy_last"):
            m, c = ev[f"{system}.mrr"], ev[f"{system}.cosine"]
            print(f"    {system:13s} MRR {m:.4f} (x{m / ref_mrr:.2f})  cosine {c:.4f} "
                  f"(x{c / ref_cos:.2f})  R@1 {ev[f'{system}.recall_at_1']:.4f}  "
                  f"R@5 {ev[f'{system}.recall_at_5']:.4f}")


if __name__ == "__main__":
    main()
