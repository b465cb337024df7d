"""The training loop: AdamW, warmup + cosine schedule, early stopping on validation loss, and a
checkpoint after every epoch that resumes exactly (same batches, same dropout masks, same curve).

Why exact: the shuffling generator is re-seeded from (seed, epoch) at the start of each epoch, and
the checkpoint holds model, optimizer, scheduler, every RNG stream (dropout) and the early-stopping
state, so epoch e after a resume sees what epoch e would have seen without the interruption.
Checkpoints (atomic writes, RNG states that survive a GPU load, the resolved config inside) and the
schedule are the shared blocks of fairtrial.ml; the loop is lvm's own (vectors in, vectors out).
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from fairtrial.ml import checkpoint
from fairtrial.ml.schedule import lambda_lr
from fairtrial.recipes.lvm.losses import combined_loss
from fairtrial.recipes.lvm.params import TrainParams

CHECKPOINT = "last.pt"
LR_FLOOR = 0.1
"""The cosine schedule decays to this fraction of the peak learning rate."""


def _loss_fn(cfg: TrainParams):
    w = cfg.loss
    return lambda pred, tgt: combined_loss(pred, tgt, mse=w.mse, cosine=w.cosine,
                                           infonce_weight=w.infonce, temperature=cfg.temperature)


@torch.no_grad()
def evaluate_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                  loss_fn) -> float:
    model.eval()
    total, n = 0.0, 0
    for s in range(0, len(x), batch_size):  # fixed order: the same batches every epoch
        xb, yb = x[s:s + batch_size], y[s:s + batch_size]
        total += float(loss_fn(model(xb), yb)) * len(xb)
        n += len(xb)
    return total / max(1, n)


def fit(model: nn.Module, train: tuple[np.ndarray, np.ndarray],
        val: tuple[np.ndarray, np.ndarray] | None, cfg: TrainParams, seed: int,
        checkpoint_dir: Path, device: str = "cpu",
        on_epoch: Callable[[int, int, dict], None] | None = None,
        on_step: Callable[[], None] | None = None, log=None,
        config: dict | None = None) -> dict:
    """Train `model` in place; returns {"history": [...], "best_epoch", "best_valid_loss", ...}.
    The model ends with the weights of the best validation epoch (the last one without val).
    `config` (the stage's resolved config) is saved in every checkpoint."""
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = checkpoint_dir / CHECKPOINT
    model.to(device)
    x = torch.as_tensor(train[0], dtype=torch.float32, device=device)
    y = torch.as_tensor(train[1], dtype=torch.float32, device=device)
    has_val = val is not None and len(val[0]) > 0
    if has_val:
        vx = torch.as_tensor(val[0], dtype=torch.float32, device=device)
        vy = torch.as_tensor(val[1], dtype=torch.float32, device=device)
    loss_fn = _loss_fn(cfg)

    micro = cfg.batch_size
    steps_per_epoch = math.ceil(len(x) / (micro * cfg.grad_accum))
    total_steps = cfg.epochs * steps_per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # at least one warm-up step, then cosine down to LR_FLOOR of the peak
    sched = lambda_lr(opt, total_steps, max(1, int(cfg.warmup_frac * total_steps)), "cosine",
                      LR_FLOOR)

    state = {"epoch": 0, "history": [], "best_val": math.inf, "best_epoch": -1,
             "best_model": None, "bad_epochs": 0, "stopped_early": False}
    if ckpt_path.exists():
        # on a GPU every tensor of the file lands there; the RNG states are bytes (checkpoint.py)
        ck = checkpoint.load(ckpt_path, map_location=device)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        checkpoint.set_rng_state(ck["rng"] if "rng" in ck else {"torch": ck["torch_rng"]})
        state = ck["state"]
        if log:
            log.info("resumed from %s at epoch %d", ckpt_path, state["epoch"])
    else:
        torch.manual_seed(seed)  # dropout stream

    t0 = time.perf_counter()
    while state["epoch"] < cfg.epochs and not state["stopped_early"]:
        epoch = state["epoch"]
        model.train()
        gen = torch.Generator().manual_seed(int(seed) * 100_003 + epoch)
        order = torch.randperm(len(x), generator=gen).to(device)
        train_loss, seen = 0.0, 0
        micro_batches = [order[s:s + micro] for s in range(0, len(x), micro)]
        for i in range(0, len(micro_batches), cfg.grad_accum):
            group = micro_batches[i:i + cfg.grad_accum]
            opt.zero_grad(set_to_none=True)
            for idx in group:
                loss = loss_fn(model(x[idx]), y[idx])
                (loss * len(idx) / sum(len(g) for g in group)).backward()
                train_loss += loss.item() * len(idx)
                seen += len(idx)
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            if on_step:
                on_step()
        record = {"epoch": epoch, "train_loss": train_loss / max(1, seen),
                  "lr": opt.param_groups[0]["lr"]}
        if has_val:
            record["valid_loss"] = evaluate_loss(model, vx, vy, micro, loss_fn)
            if record["valid_loss"] < state["best_val"] - 1e-6:
                state.update(best_val=record["valid_loss"], best_epoch=epoch, bad_epochs=0,
                             best_model=copy.deepcopy(model.state_dict()))
            else:
                state["bad_epochs"] += 1
                state["stopped_early"] = state["bad_epochs"] >= cfg.patience
        state["history"].append(record)
        state["epoch"] = epoch + 1
        checkpoint.save(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                    "scheduler": sched.state_dict(),
                                    "rng": checkpoint.rng_state(), "state": state},
                        config=config)
        if log:
            log.info("epoch %d %s", epoch, {k: round(v, 5) for k, v in record.items()})
        if on_epoch:
            on_epoch(epoch + 1, cfg.epochs, record)

    if state["best_model"] is not None:
        model.load_state_dict(state["best_model"])
    model.eval()
    return {"history": state["history"], "epochs_run": state["epoch"],
            "best_epoch": state["best_epoch"] if has_val else state["epoch"] - 1,
            "best_valid_loss": state["best_val"] if has_val else None,
            "stopped_early": state["stopped_early"], "seconds": time.perf_counter() - t0}
