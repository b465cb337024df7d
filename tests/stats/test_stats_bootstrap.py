import numpy as np
import pytest
from scipy import stats as sps

from fairtrial.stats import bootstrap_p_value, one_level_mean, percentile_interval, two_level


def test_one_level_agrees_with_scipy_bootstrap():
    # Same data, same percentile method: the endpoints differ only by Monte-Carlo error.
    v = np.random.default_rng(3).exponential(size=400)
    ours = one_level_mean(v, n_resamples=20_000, seed=1, method="exact")
    ref = sps.bootstrap((v,), np.mean, n_resamples=20_000, method="percentile",
                        random_state=np.random.default_rng(2)).confidence_interval
    width = ref.high - ref.low
    assert abs(ours[0] - ref.low) < 0.04 * width
    assert abs(ours[1] - ref.high) < 0.04 * width


def test_exact_and_normal_item_draws_agree():
    # The normal fast path must reproduce the exact item resampling on skewed data.
    rng = np.random.default_rng(0)
    x = rng.exponential(size=(2, 3, 1000)) + rng.normal(0, 0.05, size=(2, 3, 1))
    x[1] += 0.1
    e = two_level(x, n_resamples=8000, seed=1, method="exact")
    n = two_level(x, n_resamples=8000, seed=2, method="normal")
    de, dn = e.means[:, 1] - e.means[:, 0], n.means[:, 1] - n.means[:, 0]
    lo_e, hi_e = percentile_interval(de, 0.95)
    lo_n, hi_n = percentile_interval(dn, 0.95)
    w = hi_e - lo_e
    assert abs(lo_e - lo_n) < 0.06 * w and abs(hi_e - hi_n) < 0.06 * w
    assert np.std(e.means[:, 0]) == pytest.approx(np.std(n.means[:, 0]), rel=0.05)


def test_auto_picks_normal_only_for_large_inputs():
    small = np.zeros((1, 2, 50)) + np.arange(50)
    assert two_level(small, n_resamples=100).method == "exact"
    big = np.random.default_rng(0).normal(size=(1, 2, 20_000))
    assert two_level(big, n_resamples=10_000).method == "normal"


def test_seed_level_variance_is_resampled_and_corrected():
    # No item noise at all, only seed offsets: the spread must come from the seeds.
    offsets = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    x = np.broadcast_to(offsets[:, None], (5, 200))[None].copy()
    d = two_level(x, n_resamples=20_000, seed=0)
    # ddof=1 seed variance, widened by t(4)/z at 97.5% for the few seeds
    expected = offsets.std(ddof=1) / np.sqrt(5) * sps.t.ppf(0.975, 4) / sps.norm.ppf(0.975)
    assert np.std(d.means[:, 0]) == pytest.approx(expected, rel=0.05)
    plain = two_level(x, n_resamples=20_000, seed=0, seed_correction=False)
    assert np.std(plain.means[:, 0]) == pytest.approx(offsets.std(ddof=0) / np.sqrt(5), rel=0.05)


def test_items_are_crossed_with_seeds():
    # An item effect shared by all seeds must not shrink with the number of seeds: the same item
    # draw applies to every seed. Nested (independent per seed) draws would give sd / sqrt(S*N).
    item = np.random.default_rng(1).normal(size=400)
    x = np.broadcast_to(item, (8, 400))[None].copy()
    d = two_level(x, n_resamples=10_000, seed=0, method="exact")
    assert np.std(d.means[:, 0]) == pytest.approx(item.std() / np.sqrt(400), rel=0.06)


def test_reproducible_from_seed():
    x = np.random.default_rng(0).normal(size=(2, 3, 100))
    a, b = two_level(x, 500, seed=7), two_level(x, 500, seed=7)
    c = two_level(x, 500, seed=8)
    assert np.array_equal(a.means, b.means)
    assert not np.array_equal(a.means, c.means)


def test_means_stay_inside_the_data_range():
    x = np.ones((1, 3, 40))
    x[0, 0, :3] = 0.0
    d = two_level(x, 2000, seed=0)
    assert d.means.max() <= 1.0 and d.means.min() >= 0.0


@pytest.mark.parametrize("bad", [np.array([[np.nan, 1.0]]), np.zeros((1, 0)), np.zeros((2, 2, 2, 2))])
def test_bad_input_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="bootstrap data"):
        two_level(bad, 10)


def test_bootstrap_p_value():
    draws = np.random.default_rng(0).normal(1.0, 0.1, 5000)
    assert bootstrap_p_value(draws, 1.0) < 0.001          # 10 sd from 0
    draws0 = np.random.default_rng(0).normal(0.05, 1.0, 5000)
    assert bootstrap_p_value(draws0, 0.05) > 0.5


def test_seed_x_item_noise_is_not_counted_twice():
    # Pure cell noise (no seed or item effect): the variance of the grand mean is sigma^2/(S N).
    # The plain pigeonhole bootstrap counts it twice; the corrected one once (the seed level
    # shrinks to ~0 because the per-seed means vary only by that same noise).
    s, n = 4, 2000
    x = np.random.default_rng(5).normal(0, 1, (1, s, n))
    target = 1 / np.sqrt(s * n)
    plain = np.std(two_level(x, 4000, seed=1, seed_correction=False).means[:, 0])
    fixed = np.std(two_level(x, 4000, seed=1).means[:, 0])
    assert plain == pytest.approx(target * np.sqrt(2), rel=0.12)
    assert fixed == pytest.approx(target, rel=0.12)
