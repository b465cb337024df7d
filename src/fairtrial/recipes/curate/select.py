"""select: the arms' training sets, equal in size and in token budget, so that arms differ only in
how they were curated.

Pools (every pool excludes contaminated samples: an arm that trains on evaluation items would void
the comparison, so that removal is not an ablation):
  curated        passed quality, language and dedup; ordered by quality (highest first), then id
  random         the raw pool; a seeded random order
  quality_only   passed quality; seeded random order
  language_only  passed language; seeded random order
  dedup_only     dedup run on the raw pool; seeded random order
Each arm takes the first `size` samples of its order. The token budget is the smallest total
tokens among those first-`size` sets (or the study's `token_budget`); an arm above budget x (1 +
tolerance) swaps its longest chosen sample for the earliest sample of its order that is shorter
(but not so short that the total falls below budget x (1 - tolerance)), until it fits (the swaps
are counted). An arm that cannot fit, or a pool smaller than `size`, is an error
naming the arm.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Chosen:
    arm: str
    indices: list[int]          # into the pool table, in the arm's order
    tokens: int
    swaps: int
    pool: int
    budget: int


def seeded_order(n: int, seed: int, arm: str) -> list[int]:
    """A permutation of range(n) from the seed and the arm's name (arms get different orders)."""
    salt = int.from_bytes(arm.encode("utf-8")[:8].ljust(8, b"\0"), "little")
    return list(np.random.default_rng([seed, salt]).permutation(n))


def fit_budget(order: Sequence[int], tokens: Sequence[int], size: int, low: float,
               high: float) -> tuple[list[int], int]:
    """The first `size` of `order`; while the total is above `high`, the longest chosen sample
    is swapped for the earliest unchosen sample of the order that is shorter but not so short
    that the total falls below `low`. Returns (chosen in the arm's order, swaps)."""
    chosen = list(order[:size])
    total = sum(tokens[i] for i in chosen)
    heap = [(-tokens[i], i) for i in chosen]  # max-heap by tokens
    heapq.heapify(heap)
    rest = list(order[size:])
    out, swaps = set(chosen), 0
    while total > high and heap:
        neg, longest = heap[0]
        lo_len = -neg - (total - low)          # shortest replacement that keeps total >= low
        pick = next((k for k, i in enumerate(rest) if lo_len <= tokens[i] < -neg), None)
        if pick is None:                       # nothing fits in its place: try the next longest
            heapq.heappop(heap)
            continue
        new = rest.pop(pick)
        heapq.heapreplace(heap, (-tokens[new], new))
        out.discard(longest)
        out.add(new)
        total += tokens[new] + neg
        swaps += 1
    return [i for i in order if i in out], swaps


def choose(pools: dict[str, list[int]], tokens: Sequence[int], size: int | None,
           token_budget: int | None, tolerance: float) -> dict[str, Chosen]:
    """pools: arm -> pool indices in the arm's order. Equal size; totals within the budget."""
    small = min(pools, key=lambda a: len(pools[a]))
    if size is None:
        size = len(pools[small])
    short = {a: len(p) for a, p in pools.items() if len(p) < size}
    if short:
        raise ValueError(f"select.size = {size} is larger than the pool of "
                         + ", ".join(f"arm {a} ({n} samples)" for a, n in short.items())
                         + "; lower select.size or loosen that arm's filters")
    firsts = {a: sum(tokens[i] for i in p[:size]) for a, p in pools.items()}
    budget = token_budget if token_budget is not None else min(firsts.values())
    limit = budget * (1 + tolerance)
    out = {}
    for a, p in pools.items():
        chosen, swaps = fit_budget(p, tokens, size, budget * (1 - tolerance), limit)
        total = sum(tokens[i] for i in chosen)
        if total > limit:
            raise ValueError(f"arm {a}: {size} samples of its pool cannot fit the token budget "
                             f"{budget:,} (+{tolerance:.0%}): the shortest it reaches is {total:,}; "
                             "raise select.token_budget or lower select.size")
        if total < budget * (1 - tolerance):
            raise ValueError(f"arm {a}: its {size} samples hold {total:,} tokens, under the token "
                             f"budget {budget:,} (-{tolerance:.0%}); lower select.token_budget, "
                             "raise select.size or raise select.tolerance")
        out[a] = Chosen(a, chosen, total, swaps, len(p), int(budget))
    return out
