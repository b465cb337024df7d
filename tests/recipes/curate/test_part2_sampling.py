"""maj@k (the exact mean over all k-subsets), the majority vote and consistency
(`fairtrial.recipes.curate.sampling`): hand-computed cases and a brute-force enumeration."""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from fractions import Fraction

import pytest

from fairtrial.recipes.curate import sampling as s


@pytest.mark.parametrize("answers,k,expected", [
    (["A", "A", "B"], 1, Fraction(2, 3)),
    # {A,A} wins, {A,B} twice ties 1:1 -> 1/2 each: (1 + 1/2 + 1/2) / 3
    (["A", "A", "B"], 2, Fraction(2, 3)),
    (["A", "A", "B"], 3, Fraction(1)),
    # 3 of the 6 pairs hold A, each a two-way tie: 3 * 1/2 / 6
    (["A", "B", "C", "D"], 2, Fraction(1, 4)),
    (["A", "A", "B", "B", None], 5, Fraction(1, 2)),
    ([None, None, "A"], 3, Fraction(0)),       # "no answer" wins the vote
    ([None, None, "A"], 1, Fraction(1, 3)),
    (["B", "B", "C"], 2, Fraction(0)),          # the correct answer never drawn
    # first-3-of-5 would say 0 (B, B, A); over all 10 triples: A wins the 4 with 2+ A's of
    # C(3,2)*C(2,1)=6 + C(3,3)=1 -> 7 triples win, 3 lose
    (["B", "B", "A", "A", "A"], 3, Fraction(7, 10)),
])
def test_hand_computed(answers, k, expected):
    assert s.maj_at_k_exact(answers, "A", k) == expected
    assert s.maj_at_k(answers, "A", k) == float(expected)


def _brute(answers, correct, k) -> Fraction:
    total = Fraction(0)
    subsets = list(itertools.combinations(range(len(answers)), k))
    for idx in subsets:
        c = Counter(answers[i] for i in idx)
        top = max(c.values())
        tied = [a for a, v in c.items() if v == top]
        total += Fraction(1, len(tied)) if correct in tied else 0
    return total / len(subsets)


def test_equals_brute_force_enumeration():
    rng = random.Random(0)
    cases = 0
    for _ in range(60):
        n = rng.randint(1, 9)
        answers = [rng.choice(["1", "2", "3", None]) for _ in range(n)]
        for k in range(1, n + 1):
            assert s.maj_at_k_exact(answers, "1", k) == _brute(answers, "1", k), (answers, k)
            cases += 1
    assert cases > 200


def test_large_n_is_exact_and_fast():
    rng = random.Random(1)
    answers = [rng.choice("AAABBC") for _ in range(64)]
    t = time.perf_counter()
    v = s.maj_at_k_exact(answers, "A", 32)  # C(64, 32) ~ 1.8e18 subsets: no enumeration
    assert time.perf_counter() - t < 2.0
    assert 0 < v < 1 and v.denominator <= __import__("math").comb(64, 32)
    # maj@k approaches the plain majority as k grows: A holds the plurality here
    assert s.maj_at_k(answers, "A", 63) > s.maj_at_k(answers, "A", 1)


def test_k_larger_than_the_samples_is_a_clear_error():
    with pytest.raises(ValueError, match="k=5 is larger than the 3 samples drawn"):
        s.maj_at_k(["A", "B", "A"], "A", 5)
    with pytest.raises(ValueError, match="k must be at least 1"):
        s.maj_at_k(["A"], "A", 0)


def test_majority_vote_and_consistency():
    assert s.majority_vote(["17", "18", "18", "17"]) == "17"  # tie: sampled first
    assert s.majority_vote(["18", "17", "17", "18"]) == "18"
    assert s.majority_vote([None, None, "3"]) is None
    assert s.consistency(["18", "18", "17", None]) == 0.5
    assert s.consistency([None, None]) == 0.0
    assert s.consistency(["5"] * 4) == 1.0
    assert "1/m" in s.TIE_RULE and "sampled first" in s.TIE_RULE
