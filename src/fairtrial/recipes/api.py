"""The contract between recipes and the engine.

A recipe package imports only this module (and `fairtrial.scores`, `fairtrial.data`), never
`fairtrial.engine`: the engine finds recipes through `fairtrial.recipes.registry` and calls their
stage functions with an object that satisfies `StageContext`.

A stage function is a plain function `fn(ctx) -> dict | None`. It reads its params from
`ctx.params`, its upstream artifacts from `ctx.inputs[stage_name]`, writes every output file under
`ctx.out`, and may return a small JSON-able dict of summary values (stored in the manifest and the
records). It never decides where artifacts live, never writes outside `ctx.out` and
`ctx.checkpoint_dir`, and reports progress through `ctx.progress`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Protocol, runtime_checkable

from pydantic import BaseModel


class StageError(Exception):
    """An expected failure: bad data, a bad parameter. The message is shown to the user as is,
    so it says what was wrong and how to fix it. The engine does not retry it."""


class UndeclaredParam(StageError, KeyError):
    """A stage read a param it does not declare in `Stage.params`: such a param would not enter
    the stage's cache key, so a changed value could silently reuse a stale artifact. A
    StageError (the run fails with this message, no retry) and a KeyError (what a missing
    mapping key raises)."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


def declared_params(params: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The params a stage declared, picked from an arm's params (dotted names reach into nested
    tables; an absent one is None): what enters the stage's cache key and what it may read."""
    out = {}
    for n in names:
        cur: Any = params
        for part in n.split("."):
            cur = cur.get(part) if isinstance(cur, Mapping) else None
        out[n] = cur
    return out


class StageParams(Mapping):
    """`ctx.params`: the params a stage declared (`Stage.params`; the plan gives a stage only
    those, after any OOM back-off), validated once by the engine into the recipe's pydantic model
    and seen as a typed, read-only view: `ctx.params.generate.batch_size`, or `ctx.params["generate"]`
    (the same validated value). Reading any other group, as an attribute, with `[]` or with
    `.get`, raises UndeclaredParam naming the stage and the group: a param the stage does not
    declare is not in its cache key, so it must not steer its output.

    Only the declared top-level groups are validated here, by the model's own fields (types,
    defaults, the group's validators and the model's field validators of those groups); the
    model's validators across groups (e.g. "train_level names a level of the data") run on the
    whole study at `fairtrial check`, where every group is known. A dotted name in `Stage.params`
    ("train.lr") is handed over as it is, unvalidated. Without a model (`model=None`) the values
    are the raw ones. The engine hands stages one; a test harness should too
    (`fairtrial.recipes.testing.StageRunner` does)."""

    def __init__(self, params: Mapping[str, Any], stage: str, declared: tuple[str, ...],
                 model: type[BaseModel] | None = None):
        raw = dict(params)
        object.__setattr__(self, "_stage", stage)
        object.__setattr__(self, "_declared", tuple(declared))
        object.__setattr__(self, "_params", _validated(model, raw, stage, self._declared)
                           if model is not None else raw)

    def _missing(self, key: object) -> UndeclaredParam:
        declared = ", ".join(self._declared) or "none"
        return UndeclaredParam(f"stage {self._stage} reads param {key!r}, which it does not "
                               f"declare (declared: {declared}); add it to the stage's params "
                               "so that it enters the cache key")

    def __getitem__(self, key: str) -> Any:
        try:
            return self._params[key]
        except KeyError:
            raise self._missing(key) from None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # copy, pickle, pretty-printers probe _names: never params
            raise AttributeError(name)
        return self[name]

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"ctx.params is read-only (stage {self._stage} set {name!r})")

    def get(self, key: str, default: Any = None) -> Any:
        # every declared param is present (the plan fills absent ones with None): a missing key
        # is an undeclared one, which a default must not hide
        return self[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __repr__(self) -> str:
        return f"StageParams({self._params!r})"

    def __reduce__(self):  # picklable (a stage may hand its params to a subprocess)
        return (_rebuilt, (self._params, self._stage, self._declared))


def _rebuilt(values: dict[str, Any], stage: str, declared: tuple[str, ...]) -> StageParams:
    return StageParams(values, stage, declared)


_STAGE_MODELS: dict[tuple[type[BaseModel], tuple[str, ...]], type[BaseModel]] = {}


def _stage_model(model: type[BaseModel], names: tuple[str, ...]) -> type[BaseModel]:
    """The recipe's params model cut down to the groups `names`: each field as the model declares
    it (type, default, constraints, aliases), the model's field validators of those fields, its
    config (extra="forbid"). Built with pydantic's `create_model`, once per (model, groups)."""
    import copy

    from pydantic import create_model, field_validator

    cached = _STAGE_MODELS.get((model, names))
    if cached is not None:
        return cached
    validators = {}
    for attr, dec in model.__pydantic_decorators__.field_validators.items():
        fields = [f for f in dec.info.fields if f in names]
        if fields:
            fn = getattr(dec.func, "__func__", dec.func)  # the classmethod's own function
            validators[attr] = field_validator(*fields, mode=dec.info.mode)(classmethod(fn))
    sub = create_model(f"{model.__name__}[{','.join(names)}]", __config__=model.model_config,
                       __validators__=validators,
                       **{n: (model.model_fields[n].annotation, copy.copy(model.model_fields[n]))
                          for n in names})
    _STAGE_MODELS[(model, names)] = sub
    return sub


def _validated(model: type[BaseModel], raw: dict[str, Any], stage: str,
               declared: tuple[str, ...]) -> dict[str, Any]:
    """The declared groups of `raw` validated by `model`'s own fields (absent ones, given as None
    by the plan, take the model's defaults); dotted and unknown names stay raw."""
    from pydantic import ValidationError

    groups = tuple(n for n in declared if n in model.model_fields)
    sub = _stage_model(model, groups)
    try:
        valid = sub.model_validate({n: raw[n] for n in groups if raw.get(n) is not None})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise StageError(f"stage {stage}: params.{where}: {first['msg']}"
                         + (f" ({e.error_count() - 1} more)" if e.error_count() > 1 else "")) from None
    out = {n: raw.get(n) for n in declared}
    out.update({n: getattr(valid, n) for n in groups})
    return out


@contextmanager
def stage_errors(what: str = "", *, catch: tuple[type[BaseException], ...] = (ValueError, OSError),
                 hint: str = "") -> Iterator[None]:
    """Turn a library's expected failures (bad data or params: ValueError; a missing or unreadable
    file: OSError) raised inside the block into a StageError, shown to the user as
    "<what>: <error><hint>" (or "<error><hint>" without `what`). Other exceptions pass unchanged.

        with stage_errors("data"):
            docs = read_documents(path)
    """
    try:
        yield
    except StageError:
        raise
    except catch as e:
        raise StageError(f"{what}: {e}{hint}" if what else f"{e}{hint}") from e


class TransientError(Exception):
    """A failure worth retrying (a flaky file system, a busy device). The engine retries the stage
    with exponential back-off up to `Stage.max_retries` times."""


class OutOfMemory(Exception):
    """The stage ran out of memory. The engine applies the stage's OOM policy (`Stage.oom`) to the
    effective params, records the change, and retries. `MemoryError` and
    `torch.cuda.OutOfMemoryError` are treated the same way."""


@runtime_checkable
class StageContext(Protocol):
    params: Mapping[str, Any]
    """Effective params of this stage run (the declared ones, after any OOM back-off), as a
    read-only mapping: reading a param the stage does not declare raises UndeclaredParam."""
    seed: int | None
    """The replicate seed when the stage is seeded, else None."""
    out: Path
    """Folder to write outputs into. It is temporary until the run completes."""
    inputs: dict[str, Path]
    """Upstream stage name -> its verified artifact folder (read-only)."""
    checkpoint_dir: Path
    """Persists across attempts and engine restarts; removed when the run completes."""
    log: logging.Logger
    device: str
    """"cpu" or "cuda" (the engine sets CUDA_VISIBLE_DEVICES for the worker)."""

    def progress(self, done: float, total: float | None = None, unit: str = "it",
                 message: str = "") -> None:
        """Report progress; also a heartbeat. Cheap to call often (rate-limited inside)."""

    def heartbeat(self) -> None:
        """Say 'still alive' during long steps that have no progress to report. Cheap to call
        often (rate-limited inside, as progress is: a training loop may call it every micro-batch)."""


@dataclass(frozen=True)
class Resources:
    cpus: float = 1
    gpus: int = 0
    memory_gb: float = 0.5


@dataclass(frozen=True)
class Metric:
    """An endpoint a recipe produces. Declared once, with its direction and aggregation."""
    name: str
    direction: Literal["lower", "higher"]
    aggregation: Literal["mean", "geomean", "median", "proportion"] = "mean"
    """How item values become an arm's value: "mean"; "geomean" (on the log scale, for positive,
    heavy-tailed values such as perplexities); "proportion" (the mean of 0/1 values: accuracy,
    exact match, pass@1; values other than 0 and 1 are refused, and a missing item can be counted
    as a failure); "median" (declared, not analysed yet)."""
    description: str = ""
    missing: float | None = None
    """The value an item without an answer counts as in the report's "missing items counted as
    failures" view, for a metric whose values are not 0/1: e.g. 0.0 for an F1 score in [0, 1]
    (no answer, no credit). None: only 0/1 metrics get that view (failure = 0 when higher is
    better, 1 when lower is); a metric with no natural failure value (a perplexity) stays None."""


@dataclass(frozen=True)
class Stage:
    name: str
    fn: Callable[[StageContext], dict | None]
    version: str = "1"
    """Bump when the stage's code changes its outputs: it is part of the cache key."""
    params: tuple[str, ...] = ()
    """Top-level param names this stage consumes; only these enter its cache key."""
    needs: tuple[str, ...] = ()
    """Upstream stages of the same arm/replicate whose artifacts this stage reads."""
    seeded: bool = False
    """Whether the replicate seed enters the cache key (training: yes; a fixed split: no)."""
    resources: Resources = field(default_factory=Resources)
    oom: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None
    """OOM policy: effective params -> new params to retry with, or None when nothing is left."""
    max_retries: int = 2
    """Retries for TransientError."""
    input_files: Callable[[dict[str, Any]], list[Path]] | None = None
    """Files or folders (from the params) whose content digests enter the cache key."""
    emits_scores: bool = False
    """Whether the stage writes `item_scores.parquet` (see fairtrial.scores)."""
    checkpoints: bool = False
    """Whether the stage resumes from `ctx.checkpoint_dir` (shown by `fairtrial check`)."""


@dataclass(frozen=True)
class Recipe:
    name: str
    params: type[BaseModel]
    """pydantic model of the recipe params (model_config extra='forbid'); arms override fields."""
    stages: tuple[Stage, ...]
    metrics: tuple[Metric, ...] = ()
    description: str = ""
    internal: bool = False
    """Internal recipes (the engine test recipe) are hidden from `fairtrial recipes`."""
    integrity: Callable[[dict[str, Path], dict[str, Any]], dict[str, Any]] | None = None
    """Optional hook for the report's integrity checks: given one arm's finished artifacts
    (stage name -> folder) and its params, return any of
      {"train_texts": [str, ...],                      # what the arm trained on
       "eval_texts": {eval_set: {item_id: str}},       # what each eval item is
       "splits": [{"name", "seed", "reproducible": bool, "details"}]}
    The analysis then checks train/eval overlap (exact and normalised) and split reproducibility.
    Pure function over files: no engine, no database."""
    score_outputs: Callable[..., tuple[list[dict[str, Any]], dict[str, Any]]] | None = None
    """Optional: score raw outputs of an external system with the recipe's own scorer
    (`fairtrial import STUDY OUTPUTS.jsonl --arm NAME --outputs`). Called as
    `score_outputs(params, rows, source, base_dir)` with the study's [params] (paths relative to
    `base_dir`, the study file's folder) and `rows` = [(line number, object)] of the file; returns
    (item-score rows as `fairtrial.scores.write_item_scores` takes them, info) where info may hold
    {"items", "scored", "missing", "missing_ids"}. Raises ValueError naming the file and line for a
    row that matches no item, a repeated item or an empty output. Pure: no engine, no store."""
    report_sections: Callable[[dict[str, Path], dict[str, Any]], list[dict[str, Any]]] | None = None
    """Optional: what the recipe's stages found, as report sections (curate: the funnel of
    kept and removed samples, contamination, the arms' training sets). Given one arm's finished
    artifacts (stage name -> folder) and its params, return a list of
      {"title": str, "text": str (optional), "table": {"header": [...], "rows": [[...]]} (optional),
       "bars": {"title": str, "labels": [...], "series": {name: [number per label]},
                "stacked": bool, "ylabel": str} (optional)}
    The report shows them after the integrity checks (once when every arm gives the same), also
    for a study with no item scores yet. Pure function over files: no engine, no database."""
    commands: Any = None
    """Optional CLI commands of the recipe: a typer app (or a callable returning one) whose
    commands the core CLI mounts as `fairtrial <command>` (a core command keeps its name). A
    `commands.py` module in the recipe package exposing `app` does the same without this field."""
    external_stages: tuple[str, ...] = ()
    """The stages planned for each external arm (`external_arms`: a system whose outputs come
    from `fairtrial import`), e.g. the data preparation and the trivial baselines, so that an
    external system is checked against the same baselines as a trained arm, and a study of
    external arms only still runs them. Planned with the study's own [params] (no arm
    overrides) and run once per external arm (one fixed system; the run stands for every seed).
    Must be closed under `needs`. Empty (the default): nothing is planned for external arms."""

    def __post_init__(self) -> None:
        names = [s.name for s in self.stages]
        for st in self.external_stages:
            if st not in names:
                raise ValueError(f"recipe {self.name}: external_stages names {st!r}, which is no "
                                 f"stage; stages: {', '.join(names) or 'none'}")
            for n in self.stage(st).needs:
                if n not in self.external_stages:
                    raise ValueError(f"recipe {self.name}: external stage {st} needs {n}, which "
                                     "is not in external_stages; add it (an external arm runs "
                                     "only these stages)")

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def metric(self, name: str) -> Metric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)


def oom_halve(batch_key: str = "micro_batch", accum_key: str | None = "grad_accum",
              minimum: int = 1) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """The usual OOM policy: halve the micro-batch and double gradient accumulation so the
    effective batch is unchanged. Returns None when the micro-batch is already at `minimum`."""

    def policy(params: dict[str, Any]) -> dict[str, Any] | None:
        mb = int(params[batch_key])
        if mb <= minimum:
            return None
        new = dict(params)
        new[batch_key] = max(minimum, mb // 2)
        if accum_key is not None:
            new[accum_key] = int(params.get(accum_key, 1)) * 2
        return new

    return policy


def oom_halve_in(group: str, defaults: dict[str, Any], batch_key: str = "micro_batch",
                 accum_key: str | None = "grad_accum",
                 minimum: int = 1) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """`oom_halve` on the params group `group` (e.g. "train") of a recipe's whole params, the
    group's own defaults (`defaults`, e.g. TrainParams().model_dump()) filled in first: the one
    shape of every recipe's OOM policy."""
    halve = oom_halve(batch_key, accum_key, minimum)

    def policy(params: dict[str, Any]) -> dict[str, Any] | None:
        keys = (batch_key,) + ((accum_key,) if accum_key else ())
        new = halve({**{k: defaults[k] for k in keys}, **(params.get(group) or {})})
        return None if new is None else {**params, group: new}

    return policy
