"""A harness for recipe tests: a fake stage context and a runner that chains a recipe's stages.

Every recipe's tests use these instead of a fake of their own, so what a stage may expect from
the engine is written down once (the `StageContext` protocol of fairtrial.recipes.api):

    from fairtrial.recipes.testing import StageRunner
    from fairtrial.recipes.lvm import RECIPE

    run = StageRunner(RECIPE, tmp_path, params, seed=0)
    run.upto("evaluate")              # prepare, embed, windows, train, baseline, evaluate
    run.summaries["train"]            # what each stage function returned
    run.dirs["evaluate"]              # each stage's output folder

Like the engine, the runner calls the stages of one arm and one replicate in the recipe's order,
gives each stage its upstream artifacts as `ctx.inputs`, the replicate seed only when the stage
is seeded, an output folder of its own and a checkpoint folder that survives a rerun of the same
stage (so a test can interrupt a stage and call it again to resume). Unlike the engine it keeps no
cache and runs in this process. Like the engine, it resolves `params` with the recipe's params
model (defaults filled in) and gives each stage a read-only view of the params it declared only, so
a stage that reads a param outside its cache key fails in its own tests.

Test code only: no stage imports this module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Callable

from fairtrial.recipes.api import Recipe, StageContext, StageParams, declared_params


@dataclass
class FakeContext:
    """What a stage function gets from the engine, and nothing more (records what it reports).

    `on_progress(done, total, unit, message)`, when given, is called on every progress report: a
    test raises from it to simulate a kill at a chosen point (e.g. KeyboardInterrupt at epoch 2)."""

    params: Mapping[str, Any]
    """What the stage reads as `ctx.params`: for a recipe's stage, `stage_params(recipe, stage,
    arm_params)` (the engine's typed view); a plain dict only for stages that read it as one."""
    out: Path
    inputs: dict[str, Path] = field(default_factory=dict)
    seed: int | None = None
    checkpoint_dir: Path | None = None
    """Default: a folder next to `out` named `<out>.ckpt`."""
    device: str = "cpu"
    key: str = "0" * 64
    """A stand-in for the stage run's cache key (the `_test` recipe traces it)."""
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("fairtrial.test"))
    on_progress: Callable[[float, float | None, str, str], None] | None = None
    progress_calls: list[tuple[float, float | None, str, str]] = field(default_factory=list)
    heartbeats: int = 0

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.inputs = {k: Path(v) for k, v in self.inputs.items()}
        self.checkpoint_dir = Path(self.checkpoint_dir if self.checkpoint_dir is not None
                                   else self.out.parent / f"{self.out.name}.ckpt")
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)

    def progress(self, done: float, total: float | None = None, unit: str = "it",
                 message: str = "") -> None:
        self.progress_calls.append((done, total, unit, message))
        if self.on_progress is not None:
            self.on_progress(done, total, unit, message)

    def heartbeat(self) -> None:
        self.heartbeats += 1


def kill_at(done: float, unit: str | None = None,
            exc: type[BaseException] = KeyboardInterrupt) -> Callable[..., None]:
    """An `on_progress` hook that raises `exc` when the stage reports `done` (in `unit`, when
    given): a kill at a chosen point, for resume tests."""

    def hook(d: float, total: float | None = None, u: str = "it", message: str = "") -> None:
        if d == done and (unit is None or u == unit):
            raise exc(f"simulated kill at {done} {unit or ''}".rstrip())

    return hook


def stage_params(recipe: Recipe, stage: str, params: Mapping[str, Any]) -> StageParams:
    """An arm's params (as a study file gives them, or resolved) as the engine hands them to
    `recipe`'s stage `stage`: only its declared groups, validated into the recipe's model,
    read-only (`ctx.params.train.lr`). A test that calls a stage function with a FakeContext
    gives it these, so the undeclared-param guard holds in the test as in a run."""
    st = recipe.stage(stage)
    return StageParams(declared_params(params, st.params), stage, st.params, recipe.params)


class StageRunner:
    """Runs one arm's stages of `recipe`, one replicate (`seed`), in folders under `root`.

    `run(name)` runs one stage whose upstream stages already ran (or were given in `dirs`);
    `upto(name)` runs, in the recipe's order, every stage `name` depends on that has not run
    yet, then `name`; `all()` runs every stage. Each call returns the stage's summary."""

    def __init__(self, recipe: Recipe, root: Path, params: dict[str, Any], seed: int = 0,
                 device: str = "cpu", dirs: dict[str, Path] | None = None):
        # resolved as a study file's arm is (defaults filled in), so that each stage gets what
        # the engine gives it
        self.recipe, self.root = recipe, Path(root)
        self.params = recipe.params.model_validate(
            params, context={"base_dir": Path.cwd()}).model_dump(mode="json")
        self.seed, self.device = seed, device
        self.dirs: dict[str, Path] = {k: Path(v) for k, v in (dirs or {}).items()}
        """Stage name -> its output folder (what later stages get as inputs)."""
        self.summaries: dict[str, Any] = {}
        self.contexts: dict[str, FakeContext] = {}
        """The context of each stage's last call (its progress calls, heartbeats)."""

    def context(self, name: str, **kwargs: Any) -> FakeContext:
        """The context `run(name)` would pass; kwargs override its fields (e.g. params, out)."""
        stage = self.recipe.stage(name)
        missing = [n for n in stage.needs if n not in self.dirs]
        if missing:
            raise RuntimeError(f"stage {name!r} needs {', '.join(missing)}, which did not run; "
                               f"use upto({name!r}) to run them first")
        fields: dict[str, Any] = dict(
            # as the engine gives them: only the declared params, validated into the recipe's
            # model, read-only, so a test catches a stage that reads a param outside its cache key
            params=stage_params(self.recipe, name, self.params),
            out=self.root / name,
            inputs={n: self.dirs[n] for n in stage.needs},
            seed=self.seed if stage.seeded else None, device=self.device,
            checkpoint_dir=self.root / f"{name}.ckpt")
        fields.update(kwargs)
        return FakeContext(**fields)

    def run(self, name: str, **kwargs: Any) -> Any:
        """Run stage `name` (its upstream stages must have run); kwargs: see `context`."""
        ctx = self.context(name, **kwargs)
        assert isinstance(ctx, StageContext)
        self.contexts[name] = ctx
        summary = self.recipe.stage(name).fn(ctx)
        self.dirs[name] = ctx.out
        self.summaries[name] = summary
        return summary

    def order(self, name: str) -> list[str]:
        """`name` and every stage it depends on, in the recipe's declaration order."""
        wanted, todo = set(), [name]
        while todo:
            n = todo.pop()
            if n not in wanted:
                wanted.add(n)
                todo += self.recipe.stage(n).needs
        return [s.name for s in self.recipe.stages if s.name in wanted]

    def upto(self, name: str) -> Any:
        """Run what `name` needs (skipping stages already run), then `name`; its summary."""
        for n in self.order(name):
            if n != name and n not in self.dirs:
                self.run(n)
        return self.run(name)

    def all(self) -> dict[str, Any]:
        """Run every stage not run yet, in the recipe's order; every stage's summary."""
        for s in self.recipe.stages:
            if s.name not in self.dirs:
                self.run(s.name)
        return self.summaries
