import pytest

from fairtrial.analysis.decision import settle, settle_text, verdict


@pytest.mark.parametrize("lo,hi,m,expected,why", [
    (0.06, 0.10, 0.05, "supported", "beyond"),
    (0.04, 0.10, 0.05, "inconclusive", "contains"),
    (-0.03, 0.03, 0.05, "refuted", "no-effect band"),
    (-0.20, -0.08, 0.05, "refuted", "worse"),
    (-0.08, 0.02, 0.05, "refuted", "smaller than"),
    (0.001, 0.02, 0.0, "supported", "beyond"),
    (-0.02, -0.001, 0.0, "refuted", "worse"),
    (-0.01, 0.01, 0.0, "inconclusive", "contains"),
    (float("nan"), 1.0, 0.0, "inconclusive", "could not"),
])
def test_rule(lo, hi, m, expected, why):
    v, reason = verdict(lo, hi, m)
    assert v == expected and why in reason


def test_settle_scales_with_seeds_and_items():
    # estimate 0.08, interval +-0.04 (half-width 0.04), margin 0.05: needs half-width < 0.03
    s = settle(0.08, 0.04, 0.12, 0.05, n_seeds=3, n_items=100, var_seeds=0.0002, var_items=0.0002)
    # h = z*sqrt(4e-4) -> z = 2; need z^2 (vs*3/S' + vi) <= 0.03^2 -> vs*3/S' <= 2.25e-4 - 2e-4
    assert s["seeds_total"] == 24 and s["seeds_extra"] == 21
    assert s["items_total"] == 800
    assert "more seeds" in settle_text(s) and "more items" in settle_text(s)


def test_settle_says_when_one_kind_cannot():
    s = settle(0.11, 0.0, 0.22, 0.05, 3, 100, var_seeds=0.0008, var_items=0.0001)
    # the item part alone (with seeds fixed) already exceeds the budget: only seeds can settle it
    assert s["items_total"] is None and s["seeds_total"] == 15
    one_seed = settle(0.06, 0.0, 0.12, 0.05, 1, 100, var_seeds=None, var_items=0.0009)
    assert one_seed["seeds_total"] is None and "one seed" in one_seed["note"]
    on_margin = settle(0.05, 0.0, 0.1, 0.05, 3, 100, 0.0001, 0.0001)
    assert "unlikely" in on_margin["note"]


def test_settle_text_prints_no_absurd_counts_and_says_which_kind_is_sooner():
    # a tiny effect with a huge seed-to-seed spread: thousands of seeds, few more items
    s = settle(0.051, 0.0, 0.102, 0.05, n_seeds=3, n_items=1000, var_seeds=0.0006, var_items=1e-7)
    assert s["seeds_total"] > 1000 and s["items_total"] is None  # the absurd count is kept in data
    assert settle_text(s) == ("more than 50 seeds would be needed (more items alone would not "
                              "settle it)")
    # within the bounds both counts are printed, as before
    ok = {"seeds_total": 24, "seeds_extra": 21, "items_total": 800, "items_extra": 700,
          "note": "", "n_seeds": 3, "n_items": 100}
    assert settle_text(ok) == ("about 21 more seeds (24 in all, same items) or about 700 more items "
                               "(800 in all, same seeds)")
    # seeds past the bound, items within: only the items count, and the seeds bound
    far_seeds = dict(ok, seeds_total=4910, seeds_extra=4907)
    assert settle_text(far_seeds) == ("about 700 more items (800 in all, same seeds); more seeds "
                                      "alone would take more than 50 seeds")
    far_items = dict(ok, items_total=8000, items_extra=7900)
    assert settle_text(far_items) == ("about 21 more seeds (24 in all, same items); more items "
                                      "alone would take more than 10x the items (1,000)")
    # both past: which one is sooner, by how many times the data it needs
    both = dict(ok, seeds_total=4910, seeds_extra=4907, items_total=8000, items_extra=7900)
    assert settle_text(both) == ("more than 50 seeds or more than 10x the items (1,000) would be "
                                 "needed; more items would settle it sooner (about 80x the items)")
    both_s = dict(both, seeds_total=60, seeds_extra=57, items_total=100_000)
    assert settle_text(both_s).endswith("more seeds would settle it sooner (about 20x the seeds)")
    assert "4907" not in settle_text(both) and "4,907" not in settle_text(both)
