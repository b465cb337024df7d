"""`_test`: an internal recipe with stages that sleep, fail, run out of memory on demand and
checkpoint, so the engine is tested (and demonstrated) without ML.

Stages: source (unseeded, shared by every arm with the same `size`/`data`) -> work (seeded,
checkpoints every step, resumes) -> score (writes item scores: value = 1 + item difficulty +
effect + seed shift + noise).

By default every arm and every seed draws the same noise, so paired differences are exactly the
effect (zero-width intervals). `arm_noise = true` makes the noise of each arm and seed its own
(the generator is keyed by the seed and the arm's params, NOISE_KEY), and `seed_sd` adds a
per-seed shift of every item (the seed-to-seed variation of a training run; per arm too with
`arm_noise`): a study then has something to settle.

If $FAIRTRIAL_TEST_CALLS names a file, every stage call appends one line `stage key-prefix event`
to it (start / end), which lets tests count how often each stage function really ran.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from fairtrial.recipes.api import (Metric, OutOfMemory, Recipe, Resources, Stage, StageError,
                                   TransientError, oom_halve)
from fairtrial.scores import eval_set_digest, write_item_scores

LEVELS = ("A1", "A2", "B1", "B2", "C1")


class TestParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = 10
    data: str | None = None
    """Optional input file or folder: its digest enters the source stage's key."""
    level: str = "all"
    sleep: float = 0.0
    """Seconds the work stage takes in total (spread over `steps`)."""
    steps: int = 1
    fail: bool = False
    fail_message: str = "asked to fail"
    transient_failures: int = 0
    micro_batch: int = 8
    grad_accum: int = 1
    oom_above: int | None = None
    """The work stage raises OutOfMemory while micro_batch is above this."""
    effect: float = 0.0
    noise: float = 0.1
    n_items: int = 50
    arm_noise: bool = False
    """Each arm's noise its own: the generator is keyed by the seed and the arm's params
    (NOISE_KEY). Default: one noise draw shared by every arm and seed."""
    seed_sd: float = Field(0.0, ge=0, allow_inf_nan=False)
    """Sd of a per-seed shift added to every item of a seed (shared by the arms of a seed, or each
    arm's own with `arm_noise`). Default 0: no shift."""

    @field_validator("level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v != "all" and v not in LEVELS:
            raise ValueError(f'unknown level "{v}"; known: {", ".join(LEVELS)}, all')
        return v

    @field_validator("data")
    @classmethod
    def _data(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        base = (info.context or {}).get("base_dir") or Path.cwd()
        p = Path(v) if Path(v).is_absolute() else Path(base) / v
        if not p.exists():
            raise ValueError(f"data path {v} does not exist (looked for {p})")
        return str(p.resolve())


def _trace(ctx, stage: str, event: str) -> None:
    path = os.environ.get("FAIRTRIAL_TEST_CALLS")
    if path:
        with open(path, "a") as f:
            f.write(f"{stage} {getattr(ctx, 'key', '?')[:12]} {event}\n")


def source(ctx) -> dict[str, Any]:
    _trace(ctx, "source", "start")
    rng = np.random.default_rng(0)
    values = rng.normal(size=ctx.params["size"]).tolist()
    (ctx.out / "data.json").write_text(json.dumps({"values": values}))
    _trace(ctx, "source", "end")
    return {"n": len(values)}


def work(ctx) -> dict[str, Any]:
    _trace(ctx, "work", "start")
    p = ctx.params
    # transient failures: counted across attempts in the checkpoint folder
    tf = ctx.checkpoint_dir / "transient_count"
    seen = int(tf.read_text()) if tf.exists() else 0
    if seen < p["transient_failures"]:
        tf.write_text(str(seen + 1))
        raise TransientError(f"transient failure {seen + 1} of {p['transient_failures']}")
    if p["fail"]:
        raise StageError(p["fail_message"])
    if p["oom_above"] is not None and p["micro_batch"] > p["oom_above"]:
        raise OutOfMemory(f"micro_batch {p['micro_batch']} does not fit (limit {p['oom_above']})")
    data = json.loads((ctx.inputs["source"] / "data.json").read_text())
    state_file = ctx.checkpoint_dir / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {"step": 0, "acc": 0.0,
                                                                          "resumed": 0}
    if state["step"]:
        state["resumed"] += 1
        ctx.log.info("resuming from step %d", state["step"])
    steps = max(1, p["steps"])
    for step in range(state["step"], steps):
        time.sleep(p["sleep"] / steps)
        # one generator per step: a run resumed at any step gives what an uninterrupted one does
        rng = np.random.default_rng([ctx.seed or 0, step])
        state["acc"] += float(rng.normal()) + sum(data["values"]) / len(data["values"])
        state["step"] = step + 1
        tmp = state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, state_file)
        ctx.progress(step + 1, steps, unit="step")
    (ctx.out / "model.json").write_text(json.dumps(state))
    _trace(ctx, "work", "end")
    return {"steps": steps, "resumed": state["resumed"], "micro_batch": p["micro_batch"],
            "device": ctx.device, "visible_gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}


NOISE_KEY = ("size", "level", "steps", "effect", "noise", "n_items", "seed_sd")
"""The params that make an arm a different system, and so (with `arm_noise`) its noise its own.
Not `data` (an absolute path: the values would depend on the machine) nor the params that only
change how a run behaves (sleep, failures, micro-batch)."""


def _arm_word(params) -> int:
    """A 64-bit integer from the arm's NOISE_KEY params, for the noise generator's key."""
    text = json.dumps({k: params[k] for k in NOISE_KEY}, sort_keys=True)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def score(ctx) -> dict[str, Any]:
    _trace(ctx, "score", "start")
    model = json.loads((ctx.inputs["work"] / "model.json").read_text())
    p = ctx.params
    n = p["n_items"]
    ids = [f"item{i:05d}" for i in range(n)]
    digest = eval_set_digest(ids)
    item_rng = np.random.default_rng(12345)  # item difficulty: the same for every arm
    base = 1.0 + item_rng.normal(scale=0.5, size=n)
    if p["arm_noise"]:
        key = [ctx.seed or 0, _arm_word(p)]
    else:
        key = [0]                # one draw for every arm and seed, as before the stage was seeded
    rng = np.random.default_rng(key + [7])
    values = base + p["effect"] + rng.normal(scale=p["noise"], size=n)
    if p["seed_sd"] > 0:
        # one shift of every item per seed (per arm too with arm_noise); its own generator, so
        # the item noise above is the same with or without it
        shift = np.random.default_rng([ctx.seed or 0] + key[1:] + [11]).normal(scale=p["seed_sd"])
        values = values + shift
    rows = [{"item_id": i, "eval_set": "test", "eval_set_digest": digest, "metric": "score",
             "value": float(v)} for i, v in zip(ids, values)]
    rows += [{"item_id": i, "eval_set": "test", "eval_set_digest": digest, "metric": "score",
              "value": float(b), "system": "constant"} for i, b in zip(ids, base - 0.5)]
    write_item_scores(ctx.out, rows)
    _trace(ctx, "score", "end")
    return {"items": n, "steps": model["step"]}


RECIPE = Recipe(
    name="_test",
    description="Engine test recipe: sleeps, fails, runs out of memory and checkpoints on demand.",
    params=TestParams,
    internal=True,
    stages=(
        Stage("source", source, params=("size", "data"),
              input_files=lambda p: [p["data"]] if p.get("data") else [],
              resources=Resources(cpus=1, memory_gb=0.1)),
        Stage("work", work, needs=("source",), seeded=True, checkpoints=True,
              params=("sleep", "steps", "fail", "fail_message", "transient_failures",
                      "micro_batch", "grad_accum", "oom_above", "level"),
              oom=oom_halve("micro_batch", "grad_accum"), max_retries=3,
              resources=Resources(cpus=1, memory_gb=0.1)),
        # seeded: arm_noise and seed_sd draw per replicate seed
        Stage("score", score, needs=("work",), seeded=True,
              params=tuple(dict.fromkeys(NOISE_KEY + ("arm_noise",))),
              emits_scores=True, resources=Resources(cpus=1, memory_gb=0.1)),
    ),
    metrics=(Metric("score", "higher", description="synthetic per-item score"),),
)
