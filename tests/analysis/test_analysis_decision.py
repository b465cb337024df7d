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
