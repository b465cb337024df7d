"""The one document splitter of fairtrial: group-aware, stratified, seeded, reproducible.

Documents that must not be separated form a group, and a group never straddles train, valid and
test:
  - exact duplicates and normalised duplicates (equal after whitespace and case normalisation),
    so no test text is also a training text;
  - documents sharing meta["group"] (the readers set it: a OneStopEnglish topic, whose three
    level versions say the same thing).
`group_documents` builds the groups (union-find over both keys) and `group_labels` names them.
Two cuts use them, both seeded by the study (not the replicate), so every arm and every replicate
sees the same split:
  - `split_documents`: by fractions within each stratum (level x strata columns), train/valid/test
    (the ilm recipe);
  - `split_groups`: one seeded permutation of the group labels, train/val/test, unstratified (the
    lvm recipe), with `train_order` and `nested_subset` for nested training-size subsets;
    `split_joined` applies it so that duplicates follow their anchor. Library code: raises
ValueError naming the level and the fix; stages turn it into a StageError.
"""

from __future__ import annotations

import random
import re
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

import numpy as np

from fairtrial.data.readers import Document

PARTS = ("train", "valid", "test")


_SPACES = re.compile(r"\s+")


def _norm(text: str) -> str:
    return _SPACES.sub(" ", text).strip().lower()


def _meta_group(d: Document) -> str | None:
    g = d.meta.get("group")
    return None if g is None else str(g)


def group_documents(docs: Sequence[Document],
                    key: Callable[[Document], str | None] = _meta_group) -> list[list[int]]:
    """Indices of documents that must share a split: equal texts after whitespace/case
    normalisation, and equal `key` (default meta["group"], a OneStop topic; None: no key).
    Union-find over both keys; groups in order of their first document."""
    parent = list(range(len(docs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple, int] = {}
    for i, d in enumerate(docs):
        keys = [("text", _norm(d.text))]
        g = key(d)
        if g is not None:
            keys.append(("group", g))
        for k in keys:
            j = first.setdefault(k, i)
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(docs)):
        groups[find(i)].append(i)
    return [groups[k] for k in sorted(groups)]


def group_labels(docs: Sequence[Document],
                 key: Callable[[Document], str | None] = _meta_group) -> list[str]:
    """One label per document, equal within a group of `group_documents`: the smallest of the
    members' own labels (`key`, else the document id). Without duplicates, every document keeps
    its own label, so a split drawn over labels is the split drawn over the keys alone."""
    labels = [""] * len(docs)
    for g in group_documents(docs, key):
        own = sorted({key(docs[i]) or docs[i].id for i in g})
        for i in g:
            labels[i] = own[0]
    return labels


def _stratum(d: Document) -> tuple:
    return (d.level, tuple(sorted(d.strata.items())))


def split_documents(docs: list[Document], train: float = 0.8, valid: float = 0.1,
                    test: float = 0.1, seed: int = 0) -> dict[str, list[Document]]:
    """Deterministic group-aware stratified split. Groups (duplicates, shared topics) are kept
    whole; within each stratum (level x strata of a group's members) groups are shuffled with
    `seed` and cut by the fractions. Raises ValueError when a level cannot fill every part."""
    fractions = {"train": train, "valid": valid, "test": test}
    needed = [p for p in PARTS if fractions[p] > 0]
    per_level = Counter(d.level for d in docs)
    for lv, n in sorted(per_level.items()):
        if n < len(needed):
            raise ValueError(f'level "{lv}" has {n} document(s); the split '
                             f'{train:g}/{valid:g}/{test:g} needs at least {len(needed)} '
                             f"(one per part). Add documents, merge levels, or set a part to 0")
    groups = group_documents(docs)
    by_stratum: dict[tuple, list[list[int]]] = defaultdict(list)
    for g in groups:
        key = tuple(sorted({_stratum(docs[i]) for i in g}))
        by_stratum[key].append(g)
    out: dict[str, list[Document]] = {p: [] for p in PARTS}
    for key in sorted(by_stratum, key=repr):
        gs = sorted(by_stratum[key], key=lambda g: docs[g[0]].id)
        random.Random(f"{seed}\0{key!r}").shuffle(gs)
        n = len(gs)
        # test and valid take at least one group each when the stratum has enough groups, so
        # small levels still appear in every part
        n_test = max(1 if n >= len(needed) and test > 0 else 0, int(n * test + 0.5))
        n_valid = max(1 if n >= len(needed) and valid > 0 else 0, int(n * valid + 0.5))
        if train > 0:
            n_test = min(n_test, max(n - n_valid - 1, 0))
        cuts = {"test": gs[:n_test], "valid": gs[n_test:n_test + n_valid],
                "train": gs[n_test + n_valid:]}
        for part, gl in cuts.items():
            out[part].extend(docs[i] for g in gl for i in g)
    for part in PARTS:
        out[part].sort(key=lambda d: d.id)
    for lv in sorted(per_level):
        empty = [p for p in needed if not any(d.level == lv for d in out[p])]
        if empty:
            raise ValueError(f'level "{lv}" ends up with no documents in {"/".join(empty)} '
                             f"({per_level[lv]} documents in too few groups of duplicates or "
                             f"topics); add documents or merge levels")
    return out


# ----------------------------------------------------------------------------- unstratified cut,
# nested training subsets (the lvm recipe: training-size arms take a prefix of one fixed
# permutation of the training groups, so a smaller training set lies inside a larger one)

def split_groups(groups: Sequence[str], seed: int, val: float, test: float) -> dict[str, str]:
    """group label -> "train" | "val" | "test", unstratified (the lvm recipe's cut). Deterministic
    from the seed and the set of labels (the input order does not matter: labels are sorted
    before the seeded shuffle). Give it `group_labels` so duplicates never straddle splits."""
    uniq = sorted(set(groups))
    n = len(uniq)
    if n < 3 and val > 0 or n < 2:
        raise ValueError(f"only {n} document group(s); a train/val/test split needs at least "
                         f"{3 if val > 0 else 2}")
    order = np.random.default_rng(seed).permutation(n)
    # at least one group in every requested split, the rest to train
    n_test = max(1, round(test * n))
    n_val = max(1, round(val * n)) if val > 0 else 0
    if n_test + n_val >= n:
        raise ValueError(f"{n} groups cannot give {n_test} test + {n_val} val groups and still "
                         "leave training groups; lower the valid / test fractions or add documents")
    out = {}
    for rank, i in enumerate(order):
        g = uniq[i]
        out[g] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return out


def train_order(train_groups: Sequence[str], seed: int) -> list[str]:
    """The fixed permutation of the training groups that every train_fraction takes a prefix of.
    Seeded from the split seed (offset so it is not the split permutation itself)."""
    uniq = sorted(set(train_groups))
    order = np.random.default_rng([seed, 1]).permutation(len(uniq))
    return [uniq[i] for i in order]


def nested_subset(ordered_groups: Sequence[str], fraction: float) -> list[str]:
    """The first ceil(fraction * n) groups: nested in fraction by construction."""
    if not 0 < fraction <= 1:
        raise ValueError(f"train_fraction must be in (0, 1], got {fraction}")
    n = max(1, math.ceil(fraction * len(ordered_groups) - 1e-9))
    return list(ordered_groups[:n])


def split_joined(keys: Sequence[str], anchors: Sequence[str], seed: int, val: float,
                 test: float) -> tuple[list[str], list[int]]:
    """Each document's split and training-order rank (-1 outside train), from its own group key
    (`keys`: a topic, or the document id) and its anchor (`anchors`, from `group_labels`: the
    smallest key of the documents it must stay with).

    The keys are split and ordered exactly as `split_groups` and `train_order` do without
    duplicates; a document joined to another key by a duplicate text takes its anchor's split and
    rank. So a corpus without duplicates keeps its split document for document, and one with
    duplicates changes only where a duplicate would have straddled splits (or a joined key leaves
    the training order)."""
    if len(keys) != len(anchors):
        raise ValueError(f"{len(keys)} keys but {len(anchors)} anchors")
    split_of = split_groups(keys, seed, val, test)
    order = train_order([k for k in keys if split_of[k] == "train"], seed)
    rank = {k: i for i, k in enumerate(order)}
    return ([split_of[a] for a in anchors],
            [rank[a] if split_of[a] == "train" else -1 for a in anchors])
