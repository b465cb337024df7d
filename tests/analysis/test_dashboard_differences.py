"""analysis.dashboard: the compare page's paired item differences on a table small enough to
compute by hand (pairing on item and seed, one value per (item, seed), the arms' baselines and
other metrics left out, the largest disagreements first)."""

from __future__ import annotations

import pandas as pd
import pytest

from fairtrial.analysis.dashboard import (ItemDifference, arms_with_scores, eval_sets_of,
                                          paired_differences)

COLUMNS = ["arm", "system", "metric", "eval_set", "item_id", "replicate", "value"]


def table(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


SCORES = table([
    ("a", "model", "m", "e", "i1", 0, 1.0),
    ("a", "model", "m", "e", "i1", 1, 0.0),
    ("a", "model", "m", "e", "i2", 0, 0.5),
    ("a", "model", "m", "e", "i3", 0, 1.0),        # b has no i3: only a's
    ("a", "model", "m", "e", "i1", 0, 9.0),        # a duplicate (item, seed): the first counts
    ("a", "constant", "m", "e", "i1", 0, 100.0),   # a trivial baseline, not the arm
    ("a", "model", "other", "e", "i1", 0, 50.0),   # another metric
    ("a", "model", "m", "f", "i1", 0, 70.0),       # another eval set
    ("b", "model", "m", "e", "i1", 0, 0.0),
    ("b", "model", "m", "e", "i1", 1, 0.0),
    ("b", "model", "m", "e", "i2", 0, 0.5),
    ("b", "model", "m", "e", "i2", 1, 1.0),        # a has no (i2, 1): only b's
])


def test_pairs_on_item_and_seed_by_hand():
    d = paired_differences(SCORES, "a", "b", "m", "e")
    # pairs: (i1,0) 1-0, (i1,1) 0-0 -> i1: a 0.5, b 0, diff 0.5; (i2,0) 0.5-0.5 -> i2: diff 0
    assert d.items == [ItemDifference("i1", 0.5, 0.0, 0.5), ItemDifference("i2", 0.5, 0.5, 0.0)]
    assert d.seeds == [0, 1] and d.n_items == 2 and d.only_a == 1 and d.only_b == 1
    assert (d.mean_a, d.mean_b, d.mean_diff) == (0.5, 0.25, 0.25)
    assert (d.a_higher, d.b_higher, d.ties) == (1, 0, 1)


def test_swapped_arms_negate_the_differences_and_keep_the_order():
    d = paired_differences(SCORES, "b", "a", "m", "e")
    assert [(i.item_id, i.diff) for i in d.items] == [("i1", -0.5), ("i2", 0.0)]
    assert (d.a_higher, d.b_higher, d.ties) == (0, 1, 1) and d.mean_diff == -0.25


def test_top_keeps_the_largest_disagreements_and_ties_in_item_order():
    rows = [(arm, "model", "m", "e", f"i{k}", 0, v)
            for k, (va, vb) in enumerate([(0.0, 1.0), (1.0, 0.0), (0.5, 0.5), (0.0, 0.2)])
            for arm, v in (("a", va), ("b", vb))]
    d = paired_differences(table(rows), "a", "b", "m", "e", top=2)
    assert [(i.item_id, i.diff) for i in d.items] == [("i0", -1.0), ("i1", 1.0)]
    assert d.n_items == 4 and d.ties == 1  # the counts cover every item, not only the top ones
    assert paired_differences(table(rows), "a", "b", "m", "e", top=0).items == []


def test_no_shared_item_gives_no_means():
    rows = [("a", "model", "m", "e", "x", 0, 1.0), ("b", "model", "m", "e", "y", 0, 0.0)]
    d = paired_differences(table(rows), "a", "b", "m", "e")
    assert d.n_items == 0 and d.items == [] and d.seeds == []
    assert d.mean_a is None and d.mean_b is None and d.mean_diff is None
    assert (d.only_a, d.only_b) == (1, 1)


def test_arms_and_eval_sets_listed():
    assert arms_with_scores(SCORES) == ["a", "b"]
    assert arms_with_scores(table([])) == []
    assert eval_sets_of(SCORES, "m") == ["e", "f"]
    assert eval_sets_of(SCORES, "other") == ["e"]
    assert eval_sets_of(SCORES, "nope") == []


@pytest.mark.parametrize("top", [1, 25])
def test_means_agree_with_a_plain_python_pairing(top):
    """The same numbers by dicts: the pandas pairing is not the definition."""
    import random

    rnd = random.Random(7)
    rows = [(arm, "model", "m", "e", f"it{i}", s, float(rnd.randint(0, 4)))
            for arm in ("a", "b") for i in range(30) for s in range(3) if rnd.random() < 0.8]
    got = paired_differences(table(rows), "a", "b", "m", "e", top=top)
    va = {(r[4], r[5]): r[6] for r in rows if r[0] == "a"}
    vb = {(r[4], r[5]): r[6] for r in rows if r[0] == "b"}
    both = sorted(set(va) & set(vb))
    per_item: dict[str, list[float]] = {}
    for k in both:
        per_item.setdefault(k[0], []).append(va[k] - vb[k])
    diffs = {i: sum(v) / len(v) for i, v in per_item.items()}
    assert got.n_items == len(diffs)
    assert got.mean_diff == pytest.approx(sum(diffs.values()) / len(diffs))
    assert got.a_higher == sum(v > 0 for v in diffs.values())
    assert all(i.diff == pytest.approx(diffs[i.item_id]) for i in got.items)
    assert len(got.items) == min(top, len(diffs))
    assert abs(got.items[0].diff) == pytest.approx(max(abs(v) for v in diffs.values()))
