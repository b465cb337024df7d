"""dedup: contamination, exact duplicates, near-duplicates; every removal with its reason.

The order, on one pool of training samples and the evaluation items:
 1. contamination: a training sample whose normalised text equals an evaluation item's, or whose
    real Jaccard similarity to one is >= threshold, is removed (rule "contamination", the eval item
    recorded). First, so that a contaminated sample cannot stand for a cluster.
 2. exact: samples with the same normalised text form a group; one representative stays.
 3. near: MinHash-LSH (rensa's R-MinHash, or datasketch) proposes candidate pairs among the exact
    representatives; each pair is verified by the real Jaccard similarity of the two shingle sets
    (>= threshold); verified pairs join clusters (connected components, scipy's union-find
    equivalent); one representative per cluster stays.
A representative is the sample with the highest quality score, ties broken by the smallest id.
Clusters are transitive: A ~ B and B ~ C put A and C together even when A and C are less similar;
the recorded similarity of a removed sample is its real Jaccard to its representative.

Normalisation: Unicode NFKC, case folded, whitespace collapsed, stripped. Shingles: word n-grams
of the normalised text (a text with fewer than n words is one shingle).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

_WORDS = re.compile(r"\w+", re.UNICODE)
CHUNK = 50_000   # samples hashed per batch: bounds the memory held by shingle lists


def normalise(text: str) -> str:
    if text.isascii():  # NFKC and casefold are lower() on ASCII: the common case, 5x faster
        return " ".join(text.lower().split())
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def norm_key(text: str) -> str:
    return hashlib.sha1(normalise(text).encode("utf-8")).hexdigest()


def shingles(text: str, n: int = 3) -> set[str]:
    words = _WORDS.findall(normalise(text))
    if len(words) < n:
        return {" ".join(words)}
    return set(map(" ".join, zip(*(words[k:] for k in range(n)))))


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def shingle_hashes(text: str, n: int = 3) -> np.ndarray:
    """The shingle set as sorted unique 64-bit hashes: a tenth of the memory of a set of strings
    (what lets the real-Jaccard check hold 674,000 samples in a few hundred MB). Python's str hash
    is salted per process, but only equality within one process matters here; a collision of
    two distinct shingles (about 1e-15 per pair of shingles) is the only way it can differ from
    the Jaccard of the strings."""
    return np.unique(np.fromiter((hash(s) for s in shingles(text, n)), dtype=np.int64))


def jaccard_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted unique arrays (a binary search of a's items in b: a third of
    np.intersect1d's time on arrays this small)."""
    if a.size == 0 or b.size == 0:
        return 1.0 if a.size == b.size else 0.0
    at = np.searchsorted(b, a)
    inter = int(np.count_nonzero(b[np.minimum(at, b.size - 1)] == a))
    return inter / (a.size + b.size - inter)


# ----------------------------------------------------------------------------- candidate pairs

ESTIMATE_MARGIN = 0.2
"""A candidate pair whose MinHash estimate of the Jaccard is below threshold - ESTIMATE_MARGIN is
rejected without the real Jaccard: with 128 permutations the estimate's standard deviation at a
Jaccard of 0.8 is 0.035, so a true pair is lost this way with a probability of about 1e-8, while
most LSH candidates (89% of them are below the threshold at 674,000 samples of the benchmark) are
far below it and skip the exact check. bench_curate_dedup.py measures the recall of the whole
search against the exact all-pairs Jaccard."""


def candidate_pairs(texts: Sequence[str], *, ngram: int = 3, num_perm: int = 128, bands: int = 32,
                    seed: int = 1, backend: str = "rensa",
                    heartbeat: Callable[[int], None] | None = None) -> set[tuple[int, int]]:
    """Index pairs (i < j) that share at least one LSH band of their MinHash signatures."""
    return _candidates(texts, ngram, num_perm, bands, seed, backend, heartbeat)[0]


def _candidates(texts, ngram, num_perm, bands, seed, backend, heartbeat):
    """(candidate pairs, the MinHash objects: .jaccard(other) estimates a pair's similarity)."""
    if backend == "rensa":
        return _pairs_rensa(texts, ngram, num_perm, bands, seed, heartbeat)
    if backend == "datasketch":
        return _pairs_datasketch(texts, ngram, num_perm, bands, seed, heartbeat)
    raise ValueError(f"dedup.backend {backend!r} is not known; known: rensa, datasketch")


def _pairs_rensa(texts, ngram, num_perm, bands, seed, heartbeat):
    import rensa

    lsh = rensa.RMinHashLSH(0.5, num_perm, bands)  # the threshold is unused by insert/query
    hashes = []
    for start in range(0, len(texts), CHUNK):
        chunk = [sorted(shingles(t, ngram)) for t in texts[start:start + CHUNK]]
        mh = rensa.RMinHash.from_token_sets(chunk, num_perm, seed)
        lsh.insert_many(mh, start_key=start)
        hashes.extend(mh)
        if heartbeat:
            heartbeat(start + len(chunk))
    pairs: set[tuple[int, int]] = set()
    for start in range(0, len(hashes), CHUNK):
        for i, cands in enumerate(lsh.query_all(hashes[start:start + CHUNK]), start=start):
            pairs.update((i, j) for j in cands if j > i)   # each pair once, from its smaller index
    return pairs, hashes


def _pairs_datasketch(texts, ngram, num_perm, bands, seed, heartbeat):
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(num_perm=num_perm, params=(bands, num_perm // bands))
    hashes = []
    for i, t in enumerate(texts):
        m = MinHash(num_perm=num_perm, seed=seed)
        m.update_batch([s.encode("utf-8") for s in shingles(t, ngram)])
        lsh.insert(i, m)
        hashes.append(m)
        if heartbeat and i % CHUNK == 0:
            heartbeat(i)
    pairs: set[tuple[int, int]] = set()
    for i, m in enumerate(hashes):
        pairs.update((i, j) for j in lsh.query(m) if j > i)
    return pairs, hashes


# ----------------------------------------------------------------------------- the whole dedup

@dataclass
class Removal:
    index: int
    rule: str              # contamination | exact | near
    representative: str    # the kept id (contamination: the evaluation item's id)
    similarity: float      # real Jaccard to the representative (exact: 1.0)


@dataclass
class DedupResult:
    kept: list[int]
    removed: list[Removal]
    clusters: list[list[int]] = field(default_factory=list)   # near clusters of size >= 2 (indices)
    n_candidates: int = 0
    n_verified: int = 0
    pairs: list[tuple[int, int, float]] = field(default_factory=list)
    """Verified near pairs among the exact representatives (sample indices, Jaccard)."""


def _best(members: Sequence[int], quality: Sequence[float], ids: Sequence[str]) -> int:
    return min(members, key=lambda i: (-quality[i], ids[i]))


def deduplicate(ids: Sequence[str], texts: Sequence[str], quality: Sequence[float], *,
                eval_ids: Sequence[str] = (), eval_texts: Sequence[str] = (), threshold: float = 0.8,
                ngram: int = 3, num_perm: int = 128, bands: int = 32, seed: int = 1,
                backend: str = "rensa", contamination: bool = True,
                heartbeat: Callable[[int], None] | None = None) -> DedupResult:
    """Indices of the training samples kept, and every removal with its rule and representative."""
    n = len(texts)
    if not (0 < threshold <= 1):
        raise ValueError(f"dedup.threshold = {threshold} is outside (0, 1]")
    if len(set(ids)) != n:
        raise ValueError("dedup: sample ids are not unique")
    removed: dict[int, Removal] = {}

    # 1. contamination (exact, then near through the same LSH as the near-duplicates)
    keys = [norm_key(t) for t in texts]
    eval_of_key: dict[str, str] = {}
    if contamination:
        for eid, et in zip(eval_ids, eval_texts):
            eval_of_key.setdefault(norm_key(et), eid)
        for i, k in enumerate(keys):
            if k in eval_of_key:
                removed[i] = Removal(i, "contamination", eval_of_key[k], 1.0)

    # 2. exact groups among the rest
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        if i not in removed:
            groups.setdefault(k, []).append(i)
    reps = []
    twins: dict[int, list[int]] = {}   # representative -> the exact duplicates it stands for
    for members in groups.values():
        r = _best(members, quality, ids)
        reps.append(r)
        twins[r] = [i for i in members if i != r]
        for i in twins[r]:
            removed[i] = Removal(i, "exact", ids[r], 1.0)
    reps.sort()

    # 3. one LSH over the exact representatives and the evaluation items
    pool = [texts[i] for i in reps] + (list(eval_texts) if contamination else [])
    cands, mh = (_candidates(pool, ngram, num_perm, bands, seed, backend, heartbeat)
                 if len(pool) > 1 else (set(), []))
    cache: dict[int, np.ndarray] = {}

    def sh(p: int) -> np.ndarray:
        if p not in cache:
            cache[p] = shingle_hashes(pool[p], ngram)
        return cache[p]

    n_reps = len(reps)
    verified_train: list[tuple[int, int, float]] = []
    best_eval: dict[int, tuple[float, int]] = {}
    n_verified = 0
    for a, b in cands:
        if b >= n_reps and a >= n_reps:
            continue  # two evaluation items
        if mh[a].jaccard(mh[b]) < threshold - ESTIMATE_MARGIN:
            continue
        s = jaccard_sorted(sh(a), sh(b))
        if s < threshold:
            continue
        n_verified += 1
        if b >= n_reps:  # a training rep near an evaluation item: the most similar, then the first
            e = b - n_reps
            prev = best_eval.get(a)
            if prev is None or s > prev[0] or (s == prev[0] and e < prev[1]):
                best_eval[a] = (s, e)
        else:
            verified_train.append((a, b, s))
    for a, (s, e) in best_eval.items():
        i = reps[a]
        for j in (i, *twins[i]):  # its exact duplicates go with it: they are the same text
            removed[j] = Removal(j, "contamination", eval_ids[e], s)

    # 4. near clusters among the surviving representatives
    pos = {r: a for a, r in enumerate(reps)}
    alive = [a for a in range(n_reps) if reps[a] not in removed]
    edges = [(a, b) for a, b, _ in verified_train if reps[a] not in removed and reps[b] not in removed]
    clusters: list[list[int]] = []
    if edges:
        rows, cols = zip(*edges)
        g = coo_matrix((np.ones(len(edges)), (rows, cols)), shape=(n_reps, n_reps))
        _, label = connected_components(g, directed=False)
        by_label: dict[int, list[int]] = {}
        for a in alive:
            by_label.setdefault(int(label[a]), []).append(reps[a])
        for members in by_label.values():
            if len(members) < 2:
                continue
            members.sort()
            clusters.append(members)
            r = _best(members, quality, ids)
            rs = sh(pos[r])
            for i in members:
                if i != r:
                    sim = jaccard_sorted(sh(pos[i]), rs)
                    for j in (i, *twins[i]):  # every removal points at a kept sample
                        removed[j] = Removal(j, "near", ids[r], sim)
    kept = [i for i in range(n) if i not in removed]
    return DedupResult(kept=kept, removed=[removed[i] for i in sorted(removed)], clusters=clusters,
                       n_candidates=len(cands), n_verified=n_verified,
                       pairs=[(reps[a], reps[b], s) for a, b, s in verified_train])
