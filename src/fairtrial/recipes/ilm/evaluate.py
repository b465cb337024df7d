"""Per-item perplexities of an ILM on the fixed test examples of every level.

Three metrics, as in Donahue et al. (2020), table 3, all per item (test document) and lower-better:
  infill_ppl           exp(mean NLL) over the infill text tokens: the answers, without any
                       <|end_infill|>. What the paper reports as "PPL".
  infill_ppl_with_end  the same over the answers and their <|end_infill|> tokens: also rewards
                       knowing where an answer stops.
  context_ppl          over the masked context tokens (blank tokens included) before
                       <|start_infill|>; the first token, which has nothing to condition on, and
                       <|start_infill|> itself are left out.
The closing <|endoftext|> counts in none of them. Each row also carries `nll_sum` and `n_tokens`,
so the analysis can aggregate token-weighted (sum NLL / sum tokens) instead of averaging per-item
perplexities. When several test examples belong to one document (several maskings, or the pieces
of a document cut to fit the model), their NLLs and token counts are summed before the perplexity
is taken: one item per test document.

`score_examples` and `item_rows` serve the unigram baseline too (unigram.py), so the model and the
baseline count exactly the same targets.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from fairtrial.recipes.ilm.params import EvalParams
from fairtrial.recipes.ilm.train import CONTEXT, END, INFILL, objective

# metric -> target kinds it counts (see train.target_kinds)
METRIC_KINDS = {
    "infill_ppl": (INFILL,),
    "infill_ppl_with_end": (INFILL, END),
    "context_ppl": (CONTEXT,),
}


# ---------------------------------------------------------------------------------------------
# scoring


SCORED_KINDS = (INFILL, END, CONTEXT)
"""The target kinds whose NLL is summed per example (METRIC_KINDS combines them)."""


def empty_sums(n: int) -> dict[str, np.ndarray]:
    from fairtrial.ml.causal_lm.scoring import empty_sums as zeros

    return zeros(n, SCORED_KINDS)


def score_examples(model, examples: Sequence[np.ndarray], ids: dict[str, int], *,
                   batch_size: int = 32, device: str = "cpu",
                   progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Summed NLL (nats) and target counts per example and ILM target kind (the shared scorer,
    fairtrial.ml.causal_lm.scoring, with the ILM target kinds); results in input order."""
    from fairtrial.ml.causal_lm.scoring import score_examples as score

    return score(model, examples, objective(ids), SCORED_KINDS, batch_size=batch_size,
                 device=device, progress=progress)


def item_rows(item_ids: Sequence[str], sums: dict[str, np.ndarray], *, eval_set: str,
              digest: str, system: str = "model") -> tuple[list[dict[str, Any]], int]:
    """One row per item and metric (ppl with `nll_sum` and `n_tokens` columns), summing over
    examples that share an item id. Returns (rows, number of item x metric pairs left out because
    the item has no target of that kind)."""
    order: list[str] = []
    index: dict[str, list[int]] = {}
    for i, item in enumerate(item_ids):
        if item not in index:
            order.append(item)
            index[item] = []
        index[item].append(i)
    rows, skipped = [], 0
    for item in order:
        at = index[item]
        for metric, kinds in METRIC_KINDS.items():
            nll = float(sum(sums[f"nll_{k}"][at].sum() for k in kinds))
            n = int(sum(sums[f"n_{k}"][at].sum() for k in kinds))
            if n == 0:
                skipped += 1
                continue
            rows.append({"item_id": str(item), "eval_set": eval_set, "eval_set_digest": digest,
                         "metric": metric, "value": math.exp(nll / n), "system": system,
                         "nll_sum": nll, "n_tokens": n})
    return rows, skipped


# ---------------------------------------------------------------------------------------------
# test sets


def test_levels(testset: Path, levels: list[str] | None = None) -> list[str]:
    """The level folders of a testset artifact (each a shard folder with meta.json)."""
    testset = Path(testset)
    found = sorted(p.name for p in testset.iterdir() if (p / "meta.json").exists()) \
        if testset.is_dir() else []
    if not found:
        raise ValueError(f"{testset} holds no test level folders (subfolders with meta.json)")
    if levels is None:
        return found
    missing = [lv for lv in levels if lv not in found]
    if missing:
        raise ValueError(f"eval.levels: {missing} not in the test set; it has {found}")
    return list(levels)


def open_testset(folder: Path):
    """(examples, the item id of each example, eval_set_digest) of one level's shard folder.
    An item is a test document: the pieces of a document cut to fit the model (max_doc_tokens)
    and its several maskings are examples of one item, summed by `item_rows`, so the items the
    bootstrap resamples are independent documents, not correlated parts of one. The digest is
    the one the testset stage wrote; a folder without one gets a digest of its example ids and
    token ids, so equal content still means equal digests."""
    from fairtrial.recipes.ilm.examples import ExampleShards
    from fairtrial.scores import eval_set_digest

    shards = ExampleShards(folder)
    digest = shards.meta.get("eval_set_digest")
    if not digest:
        digest = eval_set_digest(shards.item_ids(), [np.asarray(e).tolist() for e in shards])
    return shards, shards.doc_ids(), digest


def check_lengths(examples, item_ids: Sequence[str], max_len: int, where: str) -> None:
    lengths = examples.lengths() if hasattr(examples, "lengths") else [len(e) for e in examples]
    too_long = [(item_ids[i], int(n)) for i, n in enumerate(lengths) if n > max_len]
    if too_long:
        item, n = too_long[0]
        raise ValueError(
            f"{where}: {len(too_long)} test examples are longer than the model's {max_len} "
            f"positions (first: item {item!r}, {n} tokens); cutting them would change what is "
            f"scored, so raise model.n_positions or shorten the test examples")


def evaluate_model(model, testset: Path, ids: dict[str, int], params: EvalParams, *,
                   device: str = "cpu", progress: Callable[..., None] | None = None,
                   log=None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score every test level; returns (item-score rows, summary per level)."""
    from fairtrial.ml.causal_lm.model import max_positions

    levels = test_levels(testset, params.levels)
    opened = {lv: open_testset(Path(testset) / lv) for lv in levels}
    total = sum(len(s) for s, _, _ in opened.values())
    rows, summary, done = [], {}, 0
    for lv, (shards, item_ids, digest) in opened.items():
        check_lengths(shards, item_ids, max_positions(model), f"testset/{lv}")

        def tick(k: int, base=done) -> None:
            if progress is not None:
                progress(base + k, total, unit="example", message=f"level {lv}")

        sums = score_examples(model, shards, ids, batch_size=params.batch_size, device=device,
                              progress=tick)
        done += len(shards)
        level_rows, skipped = item_rows(item_ids, sums, eval_set=lv, digest=digest)
        if skipped and log:
            log.warning("level %s: %d item x metric pairs have no tokens and are left out",
                        lv, skipped)
        rows += level_rows
        summary[lv] = summarise(sums)
    return rows, summary


def summarise(sums: dict[str, np.ndarray]) -> dict[str, float | None]:
    """Token-weighted perplexities of a whole level (for the stage's summary and logs)."""
    out = {}
    for metric, kinds in METRIC_KINDS.items():
        nll = sum(float(sums[f"nll_{k}"].sum()) for k in kinds)
        n = sum(int(sums[f"n_{k}"].sum()) for k in kinds)
        out[metric] = math.exp(nll / n) if n else None
    return out


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    (Path(out) / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
