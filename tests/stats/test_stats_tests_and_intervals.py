import numpy as np
import pytest

from fairtrial.stats import adjust_p, alpha_levels, fit_power_law, sign_flip_p, wilson
from fairtrial.stats import permutation


def test_sign_flip_null_and_shift():
    rng = np.random.default_rng(0)
    null_p = [sign_flip_p(rng.normal(0, 1, 200), 2000, seed=k) for k in range(200)]
    # under the null the p-values are uniform: about 5% below 0.05
    assert 0.01 <= np.mean(np.array(null_p) < 0.05) <= 0.10
    assert sign_flip_p(rng.normal(0.5, 1, 200), 2000) < 0.001


def test_sign_flip_normal_approximation_matches_exact(monkeypatch):
    d = np.random.default_rng(1).normal(0.12, 1, 400)
    exact = sign_flip_p(d, 20_000, seed=0)
    monkeypatch.setattr(permutation, "EXACT_BUDGET", 0)
    approx = sign_flip_p(d, 20_000)
    assert approx == pytest.approx(exact, abs=0.01)


def test_sign_flip_edge_cases():
    assert sign_flip_p(np.zeros(10)) == 1.0
    with pytest.raises(ValueError):
        sign_flip_p(np.array([]))
    with pytest.raises(ValueError):
        sign_flip_p(np.array([1.0, np.inf]))


def test_holm_and_bonferroni():
    p = [0.01, 0.04, 0.03]
    assert np.allclose(adjust_p(p, "holm"), [0.03, 0.06, 0.06])
    assert np.allclose(adjust_p(p, "bonferroni"), [0.03, 0.12, 0.09])
    assert np.allclose(adjust_p(p, "none"), p)
    assert np.allclose(alpha_levels(p, 0.05, "holm"), [0.05 / 3, 0.05 / 1, 0.05 / 2])
    assert np.allclose(alpha_levels(p, 0.05, "bonferroni"), [0.05 / 3] * 3)
    # an explicit order (strongest first) breaks ties in p
    assert np.allclose(alpha_levels([0.001, 0.001], 0.05, "holm", order=[1, 0]), [0.05, 0.025])
    with pytest.raises(ValueError, match="correction"):
        adjust_p(p, "fdr")


def test_wilson_known_values():
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson(0, 10)[0] == 0.0


def test_power_law_recovers_parameters():
    n = np.array([100, 300, 1000, 3000, 10000])
    y = 2.0 + 5.0 * n ** -0.5
    f = fit_power_law(n, y)
    assert f.b == pytest.approx(0.5, abs=1e-3) and f.c == pytest.approx(2.0, abs=1e-3)
    assert f(400) == pytest.approx(2.0 + 5.0 / 20, rel=1e-4)
    with pytest.raises(ValueError, match="3 or more"):
        fit_power_law([1, 2], [1.0, 0.5])
