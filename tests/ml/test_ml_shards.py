"""fairtrial.ml.causal_lm.shards: token-id examples on disk, read back memory-mapped (the format
ilm's examples and test sets use; more cases in tests/recipes/ilm/test_data_masking.py)."""

import numpy as np
import pytest

from fairtrial.ml.causal_lm.batching import lengths_of
from fairtrial.ml.causal_lm.shards import ExampleShards, ShardWriter


def test_examples_round_trip_across_shards_with_their_records(tmp_path):
    rng = np.random.default_rng(0)
    examples = [rng.integers(0, 50_000, int(n)) for n in rng.integers(1, 40, 30)]
    with ShardWriter(tmp_path / "s", shard_tokens=100) as w:
        for i, e in enumerate(examples):
            w.add(e, item_id=f"item-{i}", record={"doc": f"doc-{i // 2}"})
        meta = w.close(source="test")
    sh = ExampleShards(tmp_path / "s")
    assert len(meta["shards"]) > 1 and meta["source"] == "test" and len(sh) == len(examples)
    assert all(np.array_equal(sh[i], e) for i, e in enumerate(examples))
    assert all(np.array_equal(a, b) for a, b in zip(sh, examples))
    assert lengths_of(sh).tolist() == [len(e) for e in examples]  # what the training loop reads
    assert sh.item_ids()[3] == "item-3" and sh.doc_ids()[3] == "doc-1"
    with pytest.raises(IndexError):
        sh[len(examples)]


def test_an_unfinished_folder_is_refused(tmp_path):
    w = ShardWriter(tmp_path / "s")
    w.add([1, 2, 3])
    with pytest.raises(ValueError, match="no meta.json"):
        ExampleShards(tmp_path / "s")
    w.abort()
    assert not any((tmp_path / "s").iterdir())
