"""The training loop of a causal LM with per-token loss weights, AMP and exact resume.

A recipe gives the model, two datasets of token-id arrays, its `LoopParams` and an `Objective`
(tokens.py: the kinds of each example's targets and a loss weight per kind); `train` does the rest.

Choices worth knowing:
- Loss normalisation. The loss of an optimizer step is sum(weight * nll) / sum(weight) over all
  micro-batches of the step, with the denominator computed before the forward passes. So the
  gradient does not depend on how the step is split into micro-batches: halving `micro_batch` and
  doubling `grad_accum` after an out-of-memory error trains the same model.
- Data order: batching.py (a pure function of seed, epoch and step).
- Precision. On a GPU, `precision` bf16 or fp16 runs the forward pass under autocast (fp16 with a
  GradScaler: its range underflows small gradients; bf16 has fp32's range). The CPU stays fp32
  unless `amp_on_cpu` (CPU autocast is slow; the tests use it to run the GPU's path on a CPU).
- Resume. `checkpoint_dir/last.pt` holds the trained tensors (checkpoint.trained_state: the whole
  model in a full-model run, only the adapter under LoRA; frozen weights come from the base the
  caller loads), optimizer, scheduler, grad-scaler and RNG states,
  the step, the loss history and the best validation result, and the resolved config; it is
  written atomically every `checkpoint_every` steps (checkpoint.py). Training from it gives the
  same loss curve as an uninterrupted run.
- Epochs count examples: one epoch is one pass over the training examples.
- Speed. The output layer and the NLL are computed only at targets with a loss weight (validation:
  also at the reported kinds), `token_nll(..., keep=...)`; a micro-batch whose targets all weigh 0
  is skipped, and a step without any weighted target leaves the weights (not the schedule) alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fairtrial.ml import checkpoint
from fairtrial.ml.causal_lm.batching import lengths_of, micro_batches, step_plan
from fairtrial.ml.causal_lm.params import LoopParams
from fairtrial.ml.causal_lm.tokens import (
    Objective,
    collate,
    loss_weights,
    of_kinds,
    token_nll,
)
from fairtrial.ml.schedule import lambda_lr


def width(params: LoopParams, max_len: int) -> int | None:
    """The fixed width of every batch (padded batching), or None (each batch its longest)."""
    return min(params.pad_to, max_len) if params.batching == "padded" else None


def autocast_for(device: str, precision: str, amp_on_cpu: bool = False):
    """(autocast context factory, whether AMP is on): `precision` on a GPU, fp32 on the CPU
    unless `amp_on_cpu`."""
    device_type = torch.device(device).type  # "cuda:1" -> "cuda", as autocast wants
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    use = dtype is not None and (device_type == "cuda" or amp_on_cpu)

    def autocast():
        return torch.autocast(device_type, dtype=dtype, enabled=use)

    return autocast, use


def validate(model, data, objective: Objective, params: LoopParams, device: str, autocast,
             max_len: int, heartbeat: Callable[[], None] | None = None) -> dict[str, float]:
    """Mean training objective (`valid_loss`) and the mean NLL over each of `objective.report`'s
    kind groups (`valid_<name>_loss`) on the first `params.eval_examples` valid examples."""
    n = len(data) if params.eval_examples is None else min(len(data), params.eval_examples)
    lengths = np.asarray([len(data[i]) for i in range(n)])
    order = np.argsort(lengths, kind="stable")
    sum_w = sum_wl = 0.0
    sums = {name: [0.0, 0.0] for name in objective.report}  # name -> [nll sum, count]
    reported = sorted({int(kind) for kinds in objective.report.values() for kind in kinds})
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, n, params.micro_batch):
            idx = order[start:start + params.micro_batch]
            x, m, k = collate([data[i] for i in idx], objective, width(params, max_len))
            x, m = x.to(device), m.to(device)
            w = loss_weights(k, objective.weights)
            keep = (w > 0) | of_kinds(k, reported)  # the targets anything below reads
            with autocast():
                nll = token_nll(model, x, m, keep=keep).cpu()
            sum_wl += float((w * nll).sum())
            sum_w += float(w.sum())
            for name, kinds in objective.report.items():
                sel = of_kinds(k, kinds)
                sums[name][0] += float(nll[sel].sum())
                sums[name][1] += float(sel.sum())
            if heartbeat is not None:
                heartbeat()
    model.train(was_training)
    return {"valid_loss": sum_wl / max(sum_w, 1e-12),
            **{f"valid_{name}_loss": s / max(c, 1.0) for name, (s, c) in sums.items()}}


def train(model, train_data, valid_data, params: LoopParams, objective: Objective, *,
          seed: int, max_len: int, select_on: str = "valid_loss", device: str = "cpu",
          checkpoint_dir: Path | None = None, config: Mapping[str, Any] | None = None,
          progress: Callable[..., None] | None = None, log=None,
          heartbeat: Callable[[], None] | None = None,
          amp_on_cpu: bool = False) -> dict[str, Any]:
    """Train `model` in place on `train_data` (a sequence of token-id arrays, with `.lengths()`
    or plain len()), resuming from `checkpoint_dir/last.pt` when it exists. Examples are cut to
    `max_len` tokens (the model's positions). Leaves the selected weights (the lowest `select_on`
    of validation, or the last) in the model. Returns the history and a summary."""
    # --- setup ------------------------------------------------------------------------------
    if params.lr is None:
        raise ValueError("params.lr is not set: the recipe fills in its default learning rate")
    lengths = np.minimum(lengths_of(train_data), max_len)
    batch = params.micro_batch * params.grad_accum
    if len(lengths) < batch:
        raise ValueError(f"train.micro_batch * train.grad_accum = {batch} is more than the "
                         f"{len(lengths)} training examples; lower them")
    steps_per_epoch = len(lengths) // batch
    total = params.steps or math.ceil(params.epochs * len(lengths) / batch)
    n_cut = int((lengths_of(train_data) > max_len).sum())
    if n_cut and log:
        log.warning("%d training examples are longer than the model's %d positions and are cut",
                    n_cut, max_len)

    on_gpu = device.startswith("cuda")
    autocast, use_amp = autocast_for(device, params.precision, amp_on_cpu)
    model.to(device).train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": params.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=params.lr, betas=(params.beta1, params.beta2), fused=on_gpu)
    scheduler = lambda_lr(optimizer, total, int(params.warmup_frac * total), params.schedule,
                          params.min_lr_frac)
    scaler = torch.amp.GradScaler(torch.device(device).type,
                                  enabled=use_amp and params.precision == "fp16")

    step = 0
    history: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    torch.manual_seed(seed)  # dropout masks; restored from the checkpoint on resume

    # --- resume -----------------------------------------------------------------------------
    last = checkpoint_dir / "last.pt" if checkpoint_dir else None
    if last is not None and last.exists():
        ck = checkpoint.load(last, map_location="cpu")  # load_state_dict moves it to the device
        if ck["batch"] != batch or ck["total"] != total:
            raise ValueError(f"checkpoint {last} was made with an effective batch of "
                             f"{ck['batch']} and {ck['total']} steps, this run has {batch} and "
                             f"{total}: it belongs to different params; remove it to start over")
        checkpoint.load_trained_state(model, ck["model"], last)
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        checkpoint.set_rng_state(ck["rng"])
        step, history, evals, best = ck["step"], ck["history"], ck["evals"], ck["best"]
        if log:
            log.info("resumed from %s at step %d of %d", last, step, total)

    def save_last() -> None:
        if checkpoint_dir is None:
            return
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.save(last, {"model": checkpoint.trained_state(model), "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(),
                               "scaler": scaler.state_dict(), "rng": checkpoint.rng_state(),
                               "step": step, "batch": batch, "total": total,
                               "history": history, "evals": evals, "best": best}, config=config)

    def evaluate_now() -> None:
        nonlocal best
        result = {"step": step, **validate(model, valid_data, objective, params, device,
                                           autocast, max_len, heartbeat)}
        evals.append(result)
        if log:
            log.info("step %d: %s", step, ", ".join(f"{k} {v:.4f}" for k, v in result.items()
                                                     if k != "step"))
        if best is None or result[select_on] < best[select_on]:
            best = dict(result)
            if checkpoint_dir is not None:
                checkpoint_dir.mkdir(parents=True, exist_ok=True)
                checkpoint.save(checkpoint_dir / "best.pt",
                                {"model": checkpoint.trained_state(model), **result},
                                config=config)
            else:
                best["state"] = {k: v.clone() for k, v in checkpoint.trained_state(model).items()}

    # --- loop -------------------------------------------------------------------------------
    fixed_width = width(params, max_len)
    plan_epoch, plan = -1, []
    t0, useful, computed = time.perf_counter(), 0, 0
    while step < total:
        epoch, k = divmod(step, steps_per_epoch)
        if epoch != plan_epoch:
            plan = step_plan(lengths, batch, seed, epoch, params.batching, params.bucket_pool)
            plan_epoch = epoch
        micro = micro_batches(plan[k], lengths, params.micro_batch, params.batching)
        batches = [collate([train_data[i][:max_len] for i in mb], objective, fixed_width)
                   for mb in micro]
        weights = [loss_weights(kinds, objective.weights) for _, _, kinds in batches]
        denom = float(sum(w.sum() for w in weights))  # whole-step normaliser, see module doc

        step_loss = 0.0
        for (x, m, _), w in zip(batches, weights):
            keep = w > 0  # targets without loss weight need no output layer (token_nll)
            if not keep.any():  # nothing to learn from: no forward, no backward
                continue
            x, m, w = x.to(device), m.to(device), w.to(device)
            with autocast():
                nll = token_nll(model, x, m, keep=keep)
            loss = (nll * w).sum() / max(denom, 1e-12)
            scaler.scale(loss).backward()
            step_loss += float(loss.detach())
            useful += int(m.sum())
            computed += m.numel()
        lr = optimizer.param_groups[0]["lr"]
        if denom > 0:  # a step whose targets all weigh 0 has no gradient: the weights stay
            if params.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        step += 1
        history.append({"step": step, "loss": step_loss, "lr": lr})

        if params.eval_every and step % params.eval_every == 0 and step < total:
            evaluate_now()
        if step % params.checkpoint_every == 0 and step < total:
            save_last()
        if progress is not None:
            rate = useful / max(time.perf_counter() - t0, 1e-9)
            progress(step, total, unit="step",
                     message=f"loss {step_loss:.3f}, {rate:,.0f} tok/s")

    # --- finish -----------------------------------------------------------------------------
    elapsed = time.perf_counter() - t0
    if not evals or evals[-1]["step"] != step:  # a rerun after the end does not repeat it
        evaluate_now()
    save_last()  # the last weights, before the best ones replace them in the model
    if params.select == "best" and best is not None and best["step"] != step:
        if "state" in best:
            checkpoint.load_trained_state(model, best.pop("state"))
        else:
            checkpoint.load_trained_state(model, checkpoint.load(checkpoint_dir / "best.pt")["model"],
                                          checkpoint_dir / "best.pt")
    best = {k: v for k, v in (best or {}).items() if k != "state"}
    return {"history": history, "evals": evals, "best": best, "steps": step, "total": total,
            "selected_step": best.get("step", step) if params.select == "best" else step,
            "precision": params.precision if use_amp else "fp32",
            "useful_tokens": useful, "computed_tokens": computed, "seconds": elapsed,
            "useful_tokens_per_s": useful / max(elapsed, 1e-9)}
