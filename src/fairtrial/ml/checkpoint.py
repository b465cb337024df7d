"""Training checkpoints: written atomically, with every RNG stream and the resolved config inside.

    save(path, state, config=...)   temp file + os.replace: a kill mid-save leaves the old file
    load(path, map_location)        torch.load of our own files (they hold Python objects)
    rng_state() / set_rng_state()   torch CPU, CUDA (every device), numpy and Python `random`
    trained_state(model)            the tensors training changes: trainable parameters + buffers
    load_trained_state(model, s)    put them back onto a freshly built model (checks the names)

Only what trains is saved. A frozen parameter (the base weights under a LoRA adapter, the lower
layers under `train_upper_layers`) is the same in every checkpoint and is rebuilt exactly by
loading the base model, which the stage does anyway; saving it would make each LoRA checkpoint of
SmolLM2-135M about 540 MB instead of a few MB. When every parameter trains (a full-model run) the
saved state is the whole `state_dict`, as before.

Why the RNG states are stored as bytes, not tensors: `torch.set_rng_state` takes only a CPU
ByteTensor, and `torch.load(..., map_location="cuda")` (how a GPU run resumes) moves every tensor
of the file onto the GPU, the RNG state included; the resume then fails. Bytes are not tensors,
so no `map_location` moves them. `set_rng_state` also accepts the tensors of older checkpoints on
any device and maps them to a CPU ByteTensor first.

The resolved config goes inside every checkpoint (nanoGPT's habit): a checkpoint says what made
it without the study file at hand.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch


def save(path: Path | str, state: Mapping[str, Any], *, config: Mapping[str, Any] | None) -> None:
    """Write `state` plus `config` (the resolved run config; None only where there is none) to
    `path` atomically: to `path.tmp` first, then renamed over `path`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({**state, "config": dict(config or {})}, tmp)
    os.replace(tmp, path)  # a kill during the save leaves the previous checkpoint intact


def load(path: Path | str, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint written by `save`. `weights_only=False`: it holds Python objects (history,
    config, RNG states) and is our own file, never a downloaded one."""
    return torch.load(Path(path), map_location=map_location, weights_only=False)


def trained_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`model.state_dict()` less the frozen parameters (requires_grad False): the trainable
    parameters and every persistent buffer. Tied weights keep all their names."""
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    return {k: v.detach() for k, v in model.state_dict(keep_vars=True).items()
            if id(v) in trainable or not isinstance(v, torch.nn.Parameter)}


def load_trained_state(model: torch.nn.Module, state: Mapping[str, torch.Tensor],
                       source: Path | str = "checkpoint") -> None:
    """Load what `trained_state` saved (or a whole `state_dict`) onto `model`, whose frozen
    parameters must already hold the base weights. ValueError naming `source` when a trainable
    parameter of `model` is not in `state`, or `state` holds tensors `model` does not train (and
    is not a whole state_dict): the checkpoint was made with different trainable parameters
    (another adapter, `upper_layers` changed) or for another model."""
    expected = trained_state(model).keys()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ValueError(f"{source} does not hold {len(missing)} of this model's trainable "
                         f"tensors (e.g. {missing[0]}): it was made with different trainable "
                         "parameters; remove it to start over")
    extra = sorted(set(state) - set(expected))
    if extra and set(state) != set(model.state_dict()):  # a whole state_dict loads as before
        raise ValueError(f"{source} holds {len(extra)} tensors this model does not train (e.g. "
                         f"{extra[0]}): it was made with different trainable parameters or "
                         "another model; remove it to start over")
    model.load_state_dict(dict(state), strict=False)


def rng_state() -> dict[str, Any]:
    """Every RNG stream a training step may draw from, as plain bytes and Python objects."""
    state: dict[str, Any] = {"torch": _to_bytes(torch.get_rng_state()),
                             "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = [_to_bytes(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what `rng_state` captured (or an older checkpoint's {"torch", "cuda"} tensors).
    A CUDA state is restored when CUDA is available; a GPU run resumed on a CPU-only machine has
    no CUDA stream to restore, and one resumed on fewer GPUs restores the devices it has."""
    torch.set_rng_state(cpu_byte_tensor(state["torch"]))
    if "numpy" in state:
        np.random.set_state(state["numpy"])
    if "python" in state:
        random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda = list(state["cuda"])[:torch.cuda.device_count()]
        torch.cuda.set_rng_state_all([cpu_byte_tensor(s) for s in cuda])


def cpu_byte_tensor(s: Any) -> torch.Tensor:
    """An RNG state as the CPU ByteTensor torch's setters want: from bytes, or from a tensor on
    any device (a checkpoint loaded with map_location="cuda" puts a saved tensor there)."""
    if isinstance(s, torch.Tensor):
        if s.device.type == "meta":
            raise ValueError("an RNG state was loaded onto the meta device, which keeps no data; "
                             "load the checkpoint with map_location='cpu' or a real device")
        return s.detach().to(device="cpu", dtype=torch.uint8).contiguous()
    return torch.frombuffer(bytearray(s), dtype=torch.uint8)


def _to_bytes(t: torch.Tensor) -> bytes:
    return t.detach().to(device="cpu", dtype=torch.uint8).numpy().tobytes()
