"""Building, sizing, saving and loading the ILM model; clear errors for bad paths and sizes."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # _model_fixtures

from _model_fixtures import world  # noqa: E402,F401

from fairtrial.recipes.ilm.model import (ModelParams, build_model, check_memory,  # noqa: E402
                                         count_parameters, load_model, load_tokenizer,
                                         save_model)


def test_model_is_sized_to_the_tokenizer_and_gives_logits(world):
    p = ModelParams(n_layer=2, n_embd=32, n_head=2, n_positions=64)
    model = build_model(p, world.tok, seed=0)
    assert model.get_input_embeddings().weight.shape[0] == len(world.tok)
    x = torch.tensor(world.train[0].astype("int64"))[None]
    assert model(x).logits.shape == (1, x.shape[1], len(world.tok))
    assert count_parameters(p, len(world.tok)) == sum(p.numel() for p in model.parameters())
    assert model.config.eos_token_id == world.tok.convert_tokens_to_ids("<|endoftext|>")
    # seeded init
    again = build_model(p, world.tok, seed=0)
    assert torch.equal(model.transformer.h[0].mlp.c_fc.weight, again.transformer.h[0].mlp.c_fc.weight)


def test_params_forbid_unknown_keys_and_check_heads():
    with pytest.raises(ValueError, match="n_layers"):
        ModelParams(n_layers=2)
    with pytest.raises(ValueError, match="multiple of model.n_head"):
        ModelParams(n_embd=30, n_head=4)


def test_a_model_too_large_for_the_declared_memory_fails_up_front():
    p = ModelParams(n_layer=48, n_embd=1600, n_head=25, memory_gb=1.0)
    n = count_parameters(p, 50300)  # the meta device: no weights allocated
    assert n > 1.4e9
    with pytest.raises(ValueError, match=r"model.n_layer=48.*model.memory_gb is 1.00 GB"):
        check_memory(p, n, "cpu")
    small = ModelParams(n_layer=2, n_embd=32, n_head=2, memory_gb=1.0)
    assert check_memory(small, count_parameters(small, 300), "cpu") < 0.01


def test_missing_paths_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="tokenizer folder .*does not exist"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(ValueError, match="model folder .*does not exist"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        load_model(tmp_path / "empty")
    with pytest.raises(ValueError, match="model.pretrained '.*gpt2-local': no such folder"):
        count_parameters(ModelParams(pretrained=str(tmp_path / "gpt2-local")), 300)


def test_unreachable_hub_name_is_a_clear_error(world, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once, at import: an earlier import would still go online
    # and wait for the network's timeouts
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="model.pretrained 'no-such-org/no-such-model' is neither a local folder nor in the local Hugging Face cache.*HF_HUB_OFFLINE is set"):
        build_model(ModelParams(pretrained="no-such-org/no-such-model"), world.tok)


def test_a_tokenizer_without_ilm_tokens_is_refused(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel()
    t.train_from_iterator(["a b c"], trainers.BpeTrainer(vocab_size=50,
                                                         special_tokens=["<|endoftext|>"]))
    PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<|endoftext|>").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="lacks the ILM token"):
        load_tokenizer(tmp_path)


def test_saved_model_loads_back_with_its_config(world, tmp_path):
    p = ModelParams(n_layer=1, n_embd=16, n_head=2, n_positions=32)
    model = build_model(p, world.tok, seed=1)
    save_model(model, world.tok, tmp_path / "m", {"model": p.model_dump(), "seed": 1})
    import json

    assert json.loads((tmp_path / "m" / "fairtrial_config.json").read_text())["seed"] == 1
    loaded, tok = load_model(tmp_path / "m")
    x = torch.tensor([[1, 2, 3]])
    model.eval()
    assert torch.allclose(loaded(x).logits, model(x).logits, atol=1e-6)
    assert len(tok) == len(world.tok)


def test_pretrained_local_folder_is_loaded_and_resized(world, tmp_path):
    """The real loading path (AutoModelForCausalLM.from_pretrained) on a local folder holding a
    GPT-2 whose vocabulary lacks the ILM tokens: it is loaded, then resized to the tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    base_vocab = len(world.tok) - 7  # as if the 7 ILM tokens were not in the pretrained vocab
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=base_vocab, n_layer=1, n_embd=16, n_head=2,
                               n_positions=32)).save_pretrained(tmp_path / "gpt2-tiny")
    p = ModelParams(pretrained=str(tmp_path / "gpt2-tiny"))
    model = build_model(p, world.tok)
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == len(world.tok)
    assert count_parameters(p, len(world.tok)) == sum(q.numel() for q in model.parameters())
    # the pretrained rows are kept
    orig = GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2-tiny").get_input_embeddings().weight
    assert torch.equal(emb[:base_vocab], orig)
