import pytest

from fairtrial.data.split import nested_subset, split_groups, train_order


GROUPS = [f"topic{i}" for i in range(40)]


def test_split_is_deterministic_from_its_seed_and_ignores_input_order():
    a = split_groups(GROUPS, seed=3, val=0.1, test=0.2)
    b = split_groups(list(reversed(GROUPS)), seed=3, val=0.1, test=0.2)
    assert a == b
    c = split_groups(GROUPS, seed=4, val=0.1, test=0.2)
    assert a != c  # another seed draws another split
    counts = {s: sum(v == s for v in a.values()) for s in ("train", "val", "test")}
    assert counts == {"train": 28, "val": 4, "test": 8}


def test_duplicated_groups_get_one_split():
    groups = [g for g in GROUPS for _ in range(3)]  # a topic's three level versions
    split = split_groups(groups, seed=0, val=0.1, test=0.2)
    assert set(split) == set(GROUPS)


def test_too_few_groups_is_a_clear_error():
    with pytest.raises(ValueError, match="only 2 document group"):
        split_groups(["a", "b"], seed=0, val=0.1, test=0.2)
    with pytest.raises(ValueError, match="leave training groups"):
        split_groups(["a", "b", "c", "d"], seed=0, val=0.4, test=0.4)


def test_nested_subsets_are_nested_and_sized():
    order = train_order(GROUPS, seed=0)
    assert sorted(order) == sorted(GROUPS)
    assert order == train_order(list(reversed(GROUPS)), seed=0)
    assert order != sorted(GROUPS)  # really a permutation
    prev = set()
    for f in (0.1, 1 / 3, 0.5, 0.9, 1.0):
        sub = set(nested_subset(order, f))
        assert prev <= sub
        assert len(sub) == max(1, -(-int(round(f * 40 * 1000)) // 1000))
        prev = sub
    assert len(nested_subset(order, 1 / 3)) == 14  # ceil(40/3)
    with pytest.raises(ValueError, match="train_fraction"):
        nested_subset(order, 0)


# -- the shared grouping rule (fairtrial.data.split): duplicates never straddle splits ---------

def _doc(i, text, topic=None):
    from fairtrial.data.readers import Document

    return Document(id=f"d{i:02d}", text=text, level="",
                    meta={"group": topic} if topic else {})


def test_without_duplicates_every_document_keeps_its_own_label():
    from fairtrial.data.split import group_labels

    docs = [_doc(i, f"text {i}.", topic=f"t{i // 3}") for i in range(12)]
    assert group_labels(docs) == [f"t{i // 3}" for i in range(12)]
    assert group_labels(docs, lambda d: None) == [d.id for d in docs]


def test_exact_and_normalised_duplicates_share_one_split():
    from fairtrial.data.split import group_labels

    docs = [_doc(i, f"Sentence number {i}. It is unique.") for i in range(30)]
    docs.append(_doc(30, "Sentence number 4. It is unique."))           # exact copy of d04
    docs.append(_doc(31, "  sentence   NUMBER 7.\nit is unique. "))       # normalised copy of d07
    labels = group_labels(docs, lambda d: None)
    assert labels[30] == labels[4] == "d04" and labels[31] == labels[7] == "d07"
    assert len(set(labels)) == 30
    for seed in range(20):
        split = split_groups(labels, seed=seed, val=0.1, test=0.2)
        assert split[labels[30]] == split[labels[4]] and split[labels[31]] == split[labels[7]]


def test_duplicates_across_topics_merge_the_topics():
    from fairtrial.data.split import group_labels

    docs = [_doc(0, "a.", "t1"), _doc(1, "b.", "t1"), _doc(2, "c.", "t2"), _doc(3, "A.", "t3")]
    assert group_labels(docs) == ["t1", "t1", "t2", "t1"]
