"""The ILM training loop: one function, read top to bottom.

An example is `masked context <|start_infill|> answer1 <|end_infill|> answer2 <|end_infill|> ...
<|endoftext|>` (token ids, from the examples stage). The model is trained as a plain causal LM on the
whole sequence; the loss weights context targets and infill targets separately (the paper trains on
both; `infill_only` keeps only the infill part).

Choices worth knowing:
- Batching. `bucketed` (default) sorts examples by length inside pools of `bucket_pool` optimizer
  steps and pads each micro-batch only to its own longest example, so almost every token computed is
  a real one; `padded` pads every example to `pad_to` (the reference layout bench/bench_ilm_train.py
  compares against). Bucketing rather than packing: examples never share an attention window, so no
  block-diagonal mask is needed and the loss is the same as unpacked training.
- Loss normalisation. The loss of an optimizer step is sum(weight * nll) / sum(weight) over all
  micro-batches of the step, with the denominator computed before the forward passes. So the
  gradient does not depend on how the step is split into micro-batches: halving `micro_batch` and
  doubling `grad_accum` after an out-of-memory error trains the same model.
- Data order. Which examples form step k is a pure function of (seed, epoch, k), independent of
  `micro_batch`; a resumed run recomputes its position from the step counter.
- Resume. `checkpoint_dir/last.pt` holds model, optimizer, scheduler, grad-scaler and RNG states,
  the step, the loss history and the best validation result; it is written atomically (temp file +
  rename) every `checkpoint_every` steps. Training from it gives the same loss curve as an
  uninterrupted run (tested to 1e-6).
- Epochs count examples, not documents: one epoch is one pass over the training examples.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

# ---------------------------------------------------------------------------------------------
# parameters (defaults visible here)

LR_FROM_SCRATCH = 2e-3
"""Peak learning rate of a fresh model when `train.lr` is not given. Measured on CEFR-SP (2-layer,
n_embd 64, 150 steps of 32): 5e-4 ends level with the unigram baseline, 2e-3 well below it."""
LR_PRETRAINED = 1e-4
"""Peak learning rate when fine-tuning a pretrained model and `train.lr` is not given."""


class TrainParams(BaseModel):
    """`[params.train]` of an ilm study."""

    model_config = ConfigDict(extra="forbid")

    steps: int | None = Field(None, ge=1)
    """Optimizer steps; None: as many as `epochs` passes over the training examples take."""
    epochs: float = Field(1.0, gt=0)
    micro_batch: int = Field(16, ge=1)
    """Examples per forward pass (the out-of-memory back-off halves it)."""
    grad_accum: int = Field(1, ge=1)
    """Micro-batches per optimizer step: the effective batch is micro_batch * grad_accum."""
    lr: float | None = Field(None, gt=0)
    """Peak learning rate; None: LR_FROM_SCRATCH, or LR_PRETRAINED for a pretrained model."""
    weight_decay: float = Field(0.01, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0)
    """Clip the gradient norm to this; 0 turns clipping off."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_frac: float = Field(0.05, ge=0, lt=1)
    """Linear warm-up over this fraction of the steps."""
    min_lr_frac: float = Field(0.1, ge=0, le=1)
    """Cosine and linear decay end at lr * min_lr_frac."""
    context_weight: float = Field(1.0, ge=0)
    infill_weight: float = Field(1.0, ge=0)
    infill_only: bool = False
    """Loss on infill targets only (sets context_weight to 0)."""
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"
    """Autocast dtype on a GPU; on the CPU training always runs in fp32."""
    batching: Literal["bucketed", "padded"] = "bucketed"
    bucket_pool: int = Field(50, ge=1)
    """Bucketed batching sorts by length within pools of this many optimizer steps."""
    pad_to: int = Field(256, ge=8)
    """Padded batching: every example is padded (or cut) to this length."""
    eval_every: int = Field(100, ge=0)
    """Evaluate on the valid split every this many steps (0: only at the end)."""
    eval_examples: int | None = Field(1000, ge=1)
    """Validate on the first this many valid examples (None: all)."""
    checkpoint_every: int = Field(100, ge=1)
    select: Literal["best", "last"] = "best"
    """Which weights the final model gets: the best validation infill loss, or the last step."""

    @model_validator(mode="after")
    def _some_loss(self) -> "TrainParams":
        if self.infill_weight == 0 and (self.infill_only or self.context_weight == 0):
            raise ValueError("train.infill_weight and train.context_weight are both 0: "
                             "nothing to learn from")
        return self

    def resolved(self, pretrained: bool) -> "TrainParams":
        """These params with the learning rate filled in."""
        if self.lr is not None:
            return self
        return self.model_copy(update={"lr": LR_PRETRAINED if pretrained else LR_FROM_SCRATCH})

    @property
    def effective_context_weight(self) -> float:
        return 0.0 if self.infill_only else self.context_weight


# ---------------------------------------------------------------------------------------------
# target kinds: what each next-token target is, shared with evaluate.py

PAD, CONTEXT, START, INFILL, END, EOS_T = 0, 1, 2, 3, 4, 5
"""Kind of target position t (the token at t+1): padding; a context token; the <|start_infill|>
token; an infill text token; an <|end_infill|>; the closing <|endoftext|>."""


def target_kinds(ex: np.ndarray, ids: dict[str, int]) -> np.ndarray:
    """Kinds of the len(ex)-1 next-token targets of one example."""
    tgt = ex[1:]
    kinds = np.full(len(tgt), CONTEXT, np.int8)
    where = np.flatnonzero(ex == ids["start_infill"])
    if len(where):
        s = int(where[0])  # index of <|start_infill|> in ex; target j-1 predicts ex[j]
        kinds[s - 1] = START if s >= 1 else CONTEXT
        after = np.arange(len(tgt)) >= s
        kinds[after] = INFILL
        kinds[after & (tgt == ids["end_infill"])] = END
        kinds[after & (tgt == ids["eos"])] = EOS_T
    return kinds


def collate(examples: Sequence[np.ndarray], ids: dict[str, int], length: int | None = None):
    """Right-padded (input_ids, attention_mask, kinds) tensors; `length` pads (or cuts) to a fixed
    width, else to the longest example."""
    import torch

    width = length or max(len(e) for e in examples)
    n = len(examples)
    input_ids = np.full((n, width), ids["eos"], np.int64)
    mask = np.zeros((n, width), np.int64)
    kinds = np.zeros((n, width - 1), np.int8)
    for i, e in enumerate(examples):
        e = np.asarray(e[:width], dtype=np.int64)
        input_ids[i, :len(e)] = e
        mask[i, :len(e)] = 1
        kinds[i, :len(e) - 1] = target_kinds(e, ids)
    return (torch.from_numpy(input_ids), torch.from_numpy(mask), torch.from_numpy(kinds))


def token_nll(model, input_ids, attention_mask):
    """Per-target negative log-likelihood, shape (batch, length-1), in fp32."""
    import torch.nn.functional as F

    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    logits = logits[:, :-1].float()
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), input_ids[:, 1:].reshape(-1),
                          reduction="none")
    return nll.view(input_ids.size(0), -1)


def loss_weights(kinds, params: TrainParams):
    import torch

    table = torch.tensor([0.0, params.effective_context_weight, params.effective_context_weight,
                          params.infill_weight, params.infill_weight, params.infill_weight])
    return table[kinds.long()]


# ---------------------------------------------------------------------------------------------
# data order


def step_plan(lengths: np.ndarray, batch: int, seed: int, epoch: int, batching: str,
              pool: int) -> list[np.ndarray]:
    """The example indices of every optimizer step of one epoch (the last partial batch is left
    out). Bucketed: shuffled, sorted by length within pools of `pool` steps, steps shuffled."""
    rng = np.random.default_rng([seed, epoch])
    n_steps = len(lengths) // batch
    perm = rng.permutation(len(lengths))[:n_steps * batch]
    if batching == "padded":
        return [perm[i * batch:(i + 1) * batch] for i in range(n_steps)]
    steps = []
    for start in range(0, len(perm), pool * batch):
        chunk = perm[start:start + pool * batch]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        steps += [chunk[i:i + batch] for i in range(0, len(chunk), batch)]
    order = rng.permutation(len(steps))
    return [steps[i] for i in order]


def micro_batches(step: np.ndarray, lengths: np.ndarray, micro: int, batching: str):
    if batching == "bucketed":
        step = step[np.argsort(lengths[step], kind="stable")]
    return [step[i:i + micro] for i in range(0, len(step), micro)]


# ---------------------------------------------------------------------------------------------
# schedule


def lr_factor(step: int, total: int, params: TrainParams) -> float:
    """Multiplier of params.lr at optimizer step `step` (0-based)."""
    warm = int(params.warmup_frac * total)
    if step < warm:
        return (step + 1) / warm
    if params.schedule == "constant":
        return 1.0
    frac = (step - warm) / max(1, total - warm)
    floor = params.min_lr_frac
    if params.schedule == "linear":
        return floor + (1 - floor) * (1 - frac)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac))


# ---------------------------------------------------------------------------------------------
# validation


def validate(model, data, ids: dict[str, int], params: TrainParams, device: str,
             autocast, heartbeat: Callable[[], None] | None = None) -> dict[str, float]:
    """Mean training objective and mean infill NLL (text + end tokens) on the valid examples."""
    import torch

    n = len(data) if params.eval_examples is None else min(len(data), params.eval_examples)
    lengths = np.asarray([len(data[i]) for i in range(n)])
    order = np.argsort(lengths, kind="stable")
    sum_w = sum_wl = sum_inf = n_inf = 0.0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, n, params.micro_batch):
            idx = order[start:start + params.micro_batch]
            x, m, k = collate([data[i] for i in idx], ids, _width(params, model))
            x, m = x.to(device), m.to(device)
            with autocast():
                nll = token_nll(model, x, m).cpu()
            w = loss_weights(k, params)
            infill = (k == INFILL) | (k == END) | (k == EOS_T)
            sum_wl += float((w * nll).sum())
            sum_w += float(w.sum())
            sum_inf += float(nll[infill].sum())
            n_inf += float(infill.sum())
            if heartbeat is not None:
                heartbeat()
    model.train(was_training)
    return {"valid_loss": sum_wl / max(sum_w, 1e-12),
            "valid_infill_loss": sum_inf / max(n_inf, 1.0)}


def _width(params: TrainParams, model) -> int | None:
    if params.batching == "padded":
        from fairtrial.recipes.ilm.model import max_positions

        return min(params.pad_to, max_positions(model))
    return None


# ---------------------------------------------------------------------------------------------
# checkpoints


def _save_atomic(obj: Any, path: Path) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _rng_state() -> dict[str, Any]:
    import torch

    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------
# the loop


def train(model, train_data, valid_data, params: TrainParams, *, ids: dict[str, int], seed: int,
          device: str = "cpu", checkpoint_dir: Path | None = None,
          resolved: dict[str, Any] | None = None,
          progress: Callable[..., None] | None = None, log=None,
          heartbeat: Callable[[], None] | None = None,
          max_len: int | None = None, amp_on_cpu: bool = False) -> dict[str, Any]:
    """Train `model` in place on `train_data` (a sequence of token-id arrays with `.lengths()` or
    plain len()), resuming from `checkpoint_dir/last.pt` when it exists. Leaves the selected
    weights (best or last) in the model. Returns the history and a summary.

    `params.precision` applies on a GPU; `amp_on_cpu=True` applies it on the CPU too (CPU autocast
    is slow, so studies never ask for it; the tests use it to run the mixed-precision path, loss
    scaling and its checkpointed state included, on a machine without a GPU)."""
    import torch

    # --- setup ------------------------------------------------------------------------------
    params = params.resolved(pretrained=False)  # a library caller may leave lr unset
    from fairtrial.recipes.ilm.model import max_positions

    max_len = max_len or max_positions(model)
    lengths = np.minimum(_lengths(train_data), max_len)
    batch = params.micro_batch * params.grad_accum
    if len(lengths) < batch:
        raise ValueError(f"train.micro_batch * train.grad_accum = {batch} is more than the "
                         f"{len(lengths)} training examples; lower them")
    steps_per_epoch = len(lengths) // batch
    total = params.steps or math.ceil(params.epochs * len(lengths) / batch)
    n_cut = int((_lengths(train_data) > max_len).sum())
    if n_cut and log:
        log.warning("%d training examples are longer than the model's %d positions and are cut",
                    n_cut, max_len)

    on_gpu = device.startswith("cuda")
    device_type = torch.device(device).type  # "cuda:1" -> "cuda", as autocast and GradScaler want
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(params.precision)
    use_amp = amp_dtype is not None and (on_gpu or amp_on_cpu)  # the CPU stays fp32 by default

    def autocast():
        return torch.autocast(device_type, dtype=amp_dtype, enabled=use_amp)

    model.to(device).train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": params.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=params.lr, betas=(params.beta1, params.beta2), fused=on_gpu)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, params))
    # fp16 needs loss scaling (its range underflows small gradients); bf16 has fp32's range
    scaler = torch.amp.GradScaler(device_type, enabled=use_amp and params.precision == "fp16")

    step = 0
    history: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    torch.manual_seed(seed)  # dropout masks; restored from the checkpoint on resume

    # --- resume -----------------------------------------------------------------------------
    last = checkpoint_dir / "last.pt" if checkpoint_dir else None
    if last is not None and last.exists():
        # to the CPU: RNG states must stay CPU tensors; load_state_dict moves the rest
        ck = torch.load(last, map_location="cpu", weights_only=False)
        if ck["batch"] != batch or ck["total"] != total:
            raise ValueError(f"checkpoint {last} was made with an effective batch of "
                             f"{ck['batch']} and {ck['total']} steps, this run has {batch} and "
                             f"{total}: it belongs to different params; remove it to start over")
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        _set_rng_state(ck["rng"])
        step, history, evals, best = ck["step"], ck["history"], ck["evals"], ck["best"]
        if log:
            log.info("resumed from %s at step %d of %d", last, step, total)

    def checkpoint() -> None:
        if checkpoint_dir is None:
            return
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        _save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                      "rng": _rng_state(), "step": step, "batch": batch, "total": total,
                      "history": history, "evals": evals, "best": best,
                      "config": resolved or {}}, last)

    def evaluate_now() -> None:
        nonlocal best
        result = {"step": step, **validate(model, valid_data, ids, params, device, autocast,
                                           heartbeat)}
        evals.append(result)
        if log:
            log.info("step %d: valid loss %.4f, valid infill loss %.4f", step,
                     result["valid_loss"], result["valid_infill_loss"])
        if best is None or result["valid_infill_loss"] < best["valid_infill_loss"]:
            best = dict(result)
            if checkpoint_dir is not None:
                checkpoint_dir.mkdir(parents=True, exist_ok=True)
                _save_atomic({"model": model.state_dict(), "config": resolved or {},
                              **result}, checkpoint_dir / "best.pt")
            else:
                best["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    # --- loop -------------------------------------------------------------------------------
    width = _width(params, model)
    plan_epoch, plan = -1, []
    t0, useful, computed = time.perf_counter(), 0, 0
    while step < total:
        epoch, k = divmod(step, steps_per_epoch)
        if epoch != plan_epoch:
            plan = step_plan(lengths, batch, seed, epoch, params.batching, params.bucket_pool)
            plan_epoch = epoch
        micro = micro_batches(plan[k], lengths, params.micro_batch, params.batching)
        batches = [collate([train_data[i][:max_len] for i in mb], ids, width) for mb in micro]
        weights = [loss_weights(kinds, params) for _, _, kinds in batches]
        denom = float(sum(w.sum() for w in weights))  # whole-step normaliser, see module doc

        step_loss = 0.0
        for (x, m, _), w in zip(batches, weights):
            x, m, w = x.to(device), m.to(device), w.to(device)
            with autocast():
                nll = token_nll(model, x, m)
            loss = (nll * w).sum() / max(denom, 1e-12)
            scaler.scale(loss).backward()
            step_loss += float(loss.detach())
            useful += int(m.sum())
            computed += m.numel()
        if params.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
        lr = optimizer.param_groups[0]["lr"]
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        step += 1
        history.append({"step": step, "loss": step_loss, "lr": lr})

        if params.eval_every and step % params.eval_every == 0 and step < total:
            evaluate_now()
        if step % params.checkpoint_every == 0 and step < total:
            checkpoint()
        if progress is not None:
            rate = useful / max(time.perf_counter() - t0, 1e-9)
            progress(step, total, unit="step",
                     message=f"loss {step_loss:.3f}, {rate:,.0f} tok/s")

    # --- finish -----------------------------------------------------------------------------
    elapsed = time.perf_counter() - t0
    if not evals or evals[-1]["step"] != step:  # a rerun after the end does not repeat it
        evaluate_now()
    checkpoint()  # the last weights, before the best ones replace them in the model
    if params.select == "best" and best is not None and best["step"] != step:
        if "state" in best:
            model.load_state_dict(best.pop("state"))
        else:
            model.load_state_dict(torch.load(checkpoint_dir / "best.pt", map_location="cpu",
                                             weights_only=False)["model"])
    best = {k: v for k, v in (best or {}).items() if k != "state"}
    return {"history": history, "evals": evals, "best": best, "steps": step, "total": total,
            "selected_step": best.get("step", step) if params.select == "best" else step,
            "precision": params.precision if use_amp else "fp32",
            "useful_tokens": useful, "computed_tokens": computed, "seconds": elapsed,
            "useful_tokens_per_s": useful / max(elapsed, 1e-9)}


def _lengths(data) -> np.ndarray:
    if hasattr(data, "lengths"):
        return np.asarray(data.lengths(), dtype=np.int64)
    return np.asarray([len(data[i]) for i in range(len(data))], dtype=np.int64)
