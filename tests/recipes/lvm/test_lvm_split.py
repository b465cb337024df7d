import pytest

from fairtrial.recipes.lvm.split import assign_splits, nested_subset, train_order


GROUPS = [f"topic{i}" for i in range(40)]


def test_split_is_deterministic_from_its_seed_and_ignores_input_order():
    a = assign_splits(GROUPS, seed=3, val=0.1, test=0.2)
    b = assign_splits(list(reversed(GROUPS)), seed=3, val=0.1, test=0.2)
    assert a == b
    c = assign_splits(GROUPS, seed=4, val=0.1, test=0.2)
    assert a != c  # another seed draws another split
    counts = {s: sum(v == s for v in a.values()) for s in ("train", "val", "test")}
    assert counts == {"train": 28, "val": 4, "test": 8}


def test_duplicated_groups_get_one_split():
    groups = [g for g in GROUPS for _ in range(3)]  # a topic's three level versions
    split = assign_splits(groups, seed=0, val=0.1, test=0.2)
    assert set(split) == set(GROUPS)


def test_too_few_groups_is_a_clear_error():
    with pytest.raises(ValueError, match="only 2 document group"):
        assign_splits(["a", "b"], seed=0, val=0.1, test=0.2)
    with pytest.raises(ValueError, match="leave training groups"):
        assign_splits(["a", "b", "c", "d"], seed=0, val=0.4, test=0.4)


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
