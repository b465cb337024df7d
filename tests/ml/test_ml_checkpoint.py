"""fairtrial.ml.checkpoint: atomic saves with the config inside, and RNG states that survive a load
onto another device (a GPU resume) and include the CUDA streams."""

import random

import numpy as np
import pytest
import torch

from fairtrial.ml import checkpoint


def draws():
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)])


def test_save_is_atomic_and_holds_the_config(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save(path, {"step": 1}, config={"lr": 0.1})
    assert checkpoint.load(path) == {"step": 1, "config": {"lr": 0.1}}

    real_save = torch.save

    def dies_halfway(obj, f):  # a kill during the write: a partial temp file, no rename
        real_save({"partial": True}, f)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, {"step": 2}, config={"lr": 0.1})
    monkeypatch.undo()
    assert checkpoint.load(path)["step"] == 1  # the previous checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "last.pt.tmp"]
    checkpoint.save(path, {"step": 3}, config=None)  # the next save replaces the leftover
    assert checkpoint.load(path) == {"step": 3, "config": {}}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_rng_state_round_trips_torch_numpy_and_python(tmp_path):
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    checkpoint.save(tmp_path / "c.pt", {"rng": checkpoint.rng_state()}, config={})
    expected = draws()
    torch.manual_seed(2), np.random.seed(2), random.seed(2)
    assert draws() != expected
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "c.pt")["rng"])
    assert draws() == expected


def test_a_load_onto_another_device_keeps_the_rng_state(tmp_path):
    """How a GPU run resumes: torch.load(map_location=device) moves every tensor of the file.
    "meta" is the other device a CPU-only machine has. The old layout (a tensor) breaks there;
    ours (bytes) does not."""
    torch.manual_seed(5)
    torch.save({"torch_rng": torch.get_rng_state()}, tmp_path / "old.pt")  # the old lvm layout
    checkpoint.save(tmp_path / "new.pt", {"rng": checkpoint.rng_state()}, config={})
    expected = draws()

    old = torch.load(tmp_path / "old.pt", map_location="meta", weights_only=False)
    assert old["torch_rng"].device.type == "meta"
    with pytest.raises((TypeError, RuntimeError)):
        torch.set_rng_state(old["torch_rng"])  # what lvm/training.py did before fairtrial.ml
    with pytest.raises(ValueError, match="meta device"):
        checkpoint.set_rng_state({"torch": old["torch_rng"]})  # a clear error, not a crash

    torch.manual_seed(6)
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "new.pt", map_location="meta")["rng"])
    assert draws() == expected


def test_older_checkpoints_with_tensor_states_still_restore():
    torch.manual_seed(3)
    state = {"torch": torch.get_rng_state()}  # ilm's layout before fairtrial.ml
    expected = torch.rand(4)
    checkpoint.set_rng_state(state)
    assert torch.equal(torch.rand(4), expected)


class FakeCuda:
    """torch.cuda on a machine with `n` GPUs, for the key handling on a machine without one."""

    def __init__(self, n):
        self.states = [torch.randint(0, 256, (16,), dtype=torch.uint8) for _ in range(n)]
        self.n = n
        self.set_calls = []

    def install(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: self.n)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in self.states])
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", self.set_calls.append)


def test_cuda_rng_is_saved_and_restored(tmp_path, monkeypatch):
    gpus = FakeCuda(2)
    gpus.install(monkeypatch)
    state = checkpoint.rng_state()
    assert state["cuda"] == [s.numpy().tobytes() for s in gpus.states]
    checkpoint.save(tmp_path / "c.pt", {"rng": state}, config={})
    loaded = checkpoint.load(tmp_path / "c.pt", map_location="meta")["rng"]  # a GPU-style load
    checkpoint.set_rng_state(loaded)
    (restored,) = gpus.set_calls
    assert len(restored) == 2
    for got, want in zip(restored, gpus.states):
        assert got.device.type == "cpu" and got.dtype == torch.uint8 and torch.equal(got, want)

    # resumed on one GPU: the states of the devices it has
    one = FakeCuda(1)
    one.install(monkeypatch)
    checkpoint.set_rng_state(loaded)
    assert [len(c) for c in one.set_calls] == [1]


def test_a_gpu_checkpoint_resumes_on_a_machine_without_cuda(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", calls.append)
    assert "cuda" not in checkpoint.rng_state()
    state = checkpoint.rng_state() | {"cuda": [bytes(16)]}
    checkpoint.set_rng_state(state)  # no CUDA stream to restore: ignored, not an error
    assert calls == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_real_cuda_rng_round_trip(tmp_path):
    torch.cuda.manual_seed_all(1)
    checkpoint.save(tmp_path / "c.pt", {"rng": checkpoint.rng_state()}, config={})
    expected = torch.rand(4, device="cuda").cpu()
    torch.cuda.manual_seed_all(2)
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "c.pt", map_location="cuda")["rng"])
    assert torch.equal(torch.rand(4, device="cuda").cpu(), expected)
