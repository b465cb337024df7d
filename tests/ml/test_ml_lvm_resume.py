"""lvm resumes exactly from a checkpoint loaded the way a GPU resume loads it.

A GPU resume calls torch.load(map_location="cuda"): every tensor of the file lands on the GPU.
Before fairtrial.ml, lvm then handed the (GPU) RNG tensor to torch.set_rng_state, which takes only
a CPU tensor, so the resume failed. On a machine without a GPU the other device is "meta"; it
keeps no data, so the resume below takes the model and optimizer from a CPU load (on a GPU they
would be real tensors there) and the RNG states from a meta load, which is what matters: a state
that is a tensor arrives unusable, one that is not survives.
"""

import _curves as C
import pytest
import torch

from fairtrial.ml import checkpoint
from fairtrial.recipes.testing import kill_at

NAME = "transformer_dropout"  # dropout 0.2: the resume needs the RNG state, not only the weights


def gpu_style_load(real_load):
    def load(path, map_location="cpu"):
        ck = real_load(path, map_location="cpu")
        ck["rng"] = real_load(path, map_location="meta")["rng"]  # as a load onto a GPU gives it
        return ck
    return load


def test_lvm_resumes_from_a_gpu_style_load_to_the_same_curve(tmp_path, monkeypatch):
    straight = C.run_lvm(NAME, tmp_path / "straight")

    ck_dir = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        C.run_lvm(NAME, tmp_path / "killed", checkpoint_dir=ck_dir, on_progress=kill_at(3, "epochs"))
    last = ck_dir / "last.pt"
    saved = checkpoint.load(last)
    assert saved["state"]["epoch"] == 3
    assert saved["config"]["arch"] == "transformer" and saved["config"]["seed"] == 5

    # the old code path on this file, loaded as a GPU resume loads it: fails
    old_layout = tmp_path / "old_layout.pt"
    torch.save({**saved, "torch_rng": torch.get_rng_state()}, old_layout)
    old = torch.load(old_layout, map_location="meta", weights_only=False)
    with pytest.raises((TypeError, RuntimeError)):
        torch.set_rng_state(old["torch_rng"])

    # the new one: resumes, and the curve is the uninterrupted run's
    monkeypatch.setattr(checkpoint, "load", gpu_style_load(checkpoint.load))
    torch.manual_seed(999)  # another process: another global RNG state before the resume
    resumed = C.run_lvm(NAME, tmp_path / "resumed", checkpoint_dir=ck_dir)
    assert resumed["history"] == straight["history"]  # float for float
    assert len(resumed["history"]) == 6


def test_a_resume_without_the_rng_state_would_differ(tmp_path, monkeypatch):
    """The comparison above can fail: restoring the weights but not the RNG state (dropout
    masks) gives another curve."""
    straight = C.run_lvm(NAME, tmp_path / "straight")
    ck_dir = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        C.run_lvm(NAME, tmp_path / "killed", checkpoint_dir=ck_dir, on_progress=kill_at(3, "epochs"))
    monkeypatch.setattr(checkpoint, "set_rng_state", lambda state: torch.manual_seed(999))
    resumed = C.run_lvm(NAME, tmp_path / "resumed", checkpoint_dir=ck_dir)
    assert resumed["history"][:3] == straight["history"][:3]
    assert resumed["history"][3:] != straight["history"][3:]


def test_a_checkpoint_of_the_old_layout_still_resumes(tmp_path):
    """A run interrupted before fairtrial.ml left `torch_rng` (a tensor) and no config: it
    resumes to the same curve."""
    straight = C.run_lvm(NAME, tmp_path / "straight")
    ck_dir = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        C.run_lvm(NAME, tmp_path / "killed", checkpoint_dir=ck_dir, on_progress=kill_at(3, "epochs"))
    ck = checkpoint.load(ck_dir / "last.pt")
    rng = ck.pop("rng")
    ck.pop("config")
    ck["torch_rng"] = checkpoint.cpu_byte_tensor(rng["torch"]).clone()
    torch.save(ck, ck_dir / "last.pt")
    resumed = C.run_lvm(NAME, tmp_path / "resumed", checkpoint_dir=ck_dir)
    assert resumed["history"] == straight["history"]
