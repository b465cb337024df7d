"""maj@k, the majority vote and consistency over k sampled answers per item.

    maj_at_k(["18", "18", "17", None, "18"], correct="18", k=3)  # the exact expectation
    majority_vote(["17", "18", "18", "17"])                      # -> "17" (first seen of the tie)
    consistency(["18", "18", "17", None])                        # -> 0.5

**maj@k without the first-k shortcut.** With n > k samples drawn per item, reporting the vote of
the first k samples throws away n - k samples and adds noise. The unbiased estimate is the average
of the vote's score over *every* k-subset of the n samples (Chen et al. 2021 do the same for
pass@k). It is computed exactly, not by enumerating the C(n, k) subsets: a subset's answer counts
follow a multivariate hypergeometric law, so the sum over subsets in which the correct answer
holds `a` votes and no other answer more is a product of binomial coefficients, collected by a
small dynamic programme over the other answers (`maj_at_k`); the result is the same rational
number enumeration gives (tested), in O(answers x k^3) integer steps.

**Unparsed answers** (None) are votes for "no answer": they can win a vote, and then the item is
wrong; they never count as agreeing for `consistency`.

**Ties** (`TIE_RULE`, printed in the report): in maj@k, a subset whose vote ties between m answers
scores 1/m when the correct answer is among them (the expected score of a uniformly random
tie-break, so the estimate does not depend on sample order); `majority_vote`, which must name one
answer, takes among the tied answers the one drawn first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from fractions import Fraction
from math import comb

TIE_RULE = ("maj@k: a vote tied between m answers scores 1/m if the correct answer is among them "
            "(the expectation of a random tie-break); majority vote: among tied answers, the one "
            "sampled first; unparsed answers vote for 'no answer', which is never correct")


def _check(n: int, k: int) -> None:
    if k < 1:
        raise ValueError(f"maj@k: k must be at least 1, got {k}")
    if k > n:
        raise ValueError(f"maj@k: k={k} is larger than the {n} samples drawn for the item; "
                         f"draw at least k samples (sampling.n >= k)")


def maj_at_k_exact(answers: Sequence[Hashable | None], correct: Hashable, k: int) -> Fraction:
    """The exact mean, over all k-subsets of `answers`, of the vote's score (`TIE_RULE`)."""
    n = len(answers)
    _check(n, k)
    counts = Counter(answers)
    good = counts.pop(correct, 0) if correct is not None else 0
    others = list(counts.values())  # None's count is among them: a wrong answer like any other
    total = Fraction(0)
    for a in range(1, min(good, k) + 1):
        # ways[s][t]: subsets drawing s samples from the other answers, every other answer at
        # most a votes, t of them exactly a (tied with the correct one)
        rest = k - a
        ways = [[0] * (len(others) + 1) for _ in range(rest + 1)]
        ways[0][0] = 1
        for c in others:
            new = [[0] * (len(others) + 1) for _ in range(rest + 1)]
            for s in range(rest + 1):
                for t, w in enumerate(ways[s]):
                    if not w:
                        continue
                    for x in range(min(a, c, rest - s) + 1):
                        new[s + x][t + (x == a)] += w * comb(c, x)
            ways = new
        for t, w in enumerate(ways[rest]):
            if w:
                total += Fraction(comb(good, a) * w, t + 1)
    return total / comb(n, k)


def maj_at_k(answers: Sequence[Hashable | None], correct: Hashable, k: int) -> float:
    """`maj_at_k_exact` as a float, the item score of maj@k."""
    return float(maj_at_k_exact(answers, correct, k))


def majority_vote(answers: Sequence[Hashable | None]) -> Hashable | None:
    """The most frequent answer; a tie goes to the tied answer sampled first."""
    if not answers:
        raise ValueError("majority vote of no answers")
    counts = Counter(answers)
    top = max(counts.values())
    return next(a for a in answers if counts[a] == top)


def consistency(answers: Sequence[Hashable | None]) -> float:
    """The share of the samples that agree with the item's modal parsed answer (unparsed answers
    never agree; 0.0 when none parsed)."""
    if not answers:
        raise ValueError("consistency of no answers")
    parsed = Counter(a for a in answers if a is not None)
    return max(parsed.values(), default=0) / len(answers)
