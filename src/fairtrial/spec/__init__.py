"""The study file's schema: validated once, at the boundary; nothing downstream re-validates.

Every error reads `study.toml:12: arms[2].data: what is wrong, what would be right`, and all errors
of a file are reported at once (one per line), before any compute.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fairtrial.errors import UserError
from fairtrial.recipes import registry
from fairtrial.recipes.api import Recipe, Resources
from fairtrial.tomlpos import format_loc, line_of


class SpecError(UserError):
    """One or more errors in a study file; `errors` holds (line, loc, message) triples."""

    def __init__(self, path: Path, errors: list[tuple[int | None, str, str]]):
        self.path = path
        self.errors = errors
        lines = []
        for line, loc, msg in errors:
            where = f"{path.name}:{line}" if line else f"{path.name}"
            lines.append(f"{where}: {loc}: {msg}" if loc else f"{where}: {msg}")
        # a bad shared param fails every arm the same way: say it once
        super().__init__("\n".join(dict.fromkeys(lines)))


MAX_SEED = 2**63
"""Seeds are 0 <= seed < 2**63: numpy's generators refuse negative seeds, and the record store
keeps a seed in a signed 64-bit integer."""
MAX_STUDY_NAME = 100
"""A study name names folders and lock files (`locks/study-<name>.lock`, at most 255 bytes)."""
MAX_ARM_NAME = 200


def _unprintable(text: str) -> str | None:
    """The first control or line-separator character in `text`, as repr, else None."""
    import unicodedata

    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return repr(ch)
    return None


def arm_name_problem(name: str) -> str | None:
    """Why `name` cannot be an arm's name, else None. Arm names are printed on one line (the
    report's first line), typed as `logs ARM/SEED/STAGE` and used in file names."""
    if not name.strip():
        return "an arm name must not be empty or blank"
    if len(name) > MAX_ARM_NAME:
        return f"arm name is {len(name):,} characters long; at most {MAX_ARM_NAME}"
    bad = _unprintable(name)
    if bad:
        return f"arm name {name!r} holds the control character {bad}; use printable characters"
    for part in ("/", "\\", ".."):
        if part in name:
            return (f"arm name {name!r} holds {part!r}, which reads as a path (`fairtrial logs "
                    "ARM/SEED/STAGE`, file names); use letters, digits, spaces, - _ . = , and the like")
    return None


# ---- the file's own schema (recipe params are validated by the recipe's model) ----

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class EndpointSpec(_Strict):
    metric: str
    direction: Literal["lower", "higher"] | None = None
    secondary: list[str] = Field(default_factory=list)


class MetricSpec(_Strict):
    """A metric declared by the study file (evaluation-only studies, or metrics only a study's
    external arms have): `[metrics.accuracy] direction = "higher", aggregation = "proportion"`."""
    direction: Literal["lower", "higher"]
    aggregation: Literal["mean", "geomean", "proportion"] = "mean"
    description: str = ""
    missing: float | None = Field(None, allow_inf_nan=False)
    """The value a missing item counts as in the missing-as-failures view (e.g. 0.0 for an F1);
    0/1 metrics need none."""


class DecisionSpec(_Strict):
    min_effect: float = Field(0.0, ge=0, allow_inf_nan=False)
    effect: Literal["absolute", "relative"] = "relative"
    alpha: float = Field(0.05, gt=0, lt=1)
    correction: Literal["holm", "bonferroni", "none"] = "holm"
    compare: Literal["control", "all-pairs"] = "control"
    test: Literal["superiority", "non_inferiority", "equivalence"] = "superiority"
    """superiority: better by more than min_effect; non_inferiority: not worse by more than
    margin; equivalence: within margin either way (docs/verdicts.md)."""
    margin: float | None = Field(None, allow_inf_nan=False)
    """non_inferiority / equivalence: the margin (>= 0) on the scale of `effect`."""

    @field_validator("margin")
    @classmethod
    def _margin(cls, v):
        if v is not None and v < 0:
            raise ValueError(f"margin must be >= 0 (got {v:g}): the largest difference that still "
                             "counts as no worse (or as the same), on the scale of effect; "
                             "e.g. margin = 0.05")
        return v


class ResourceSpec(_Strict):
    # finite and bounded: the scheduler compares them with the machine's; Ray refuses inf
    cpus: float = Field(1, gt=0, le=4096, allow_inf_nan=False)
    gpus: int = Field(0, ge=0, le=256)
    memory_gb: float = Field(0.5, gt=0, le=100_000, allow_inf_nan=False)


class AnalysisSpec(_Strict):
    """Study shapes the report knows (docs/verdicts.md)."""
    min_items: int = Field(30, ge=1)
    own_eval_set: str | dict[str, str] | None = None
    """cross-evaluation: each arm's own eval set, as a table arm -> set or a template
    over the arm's params such as "{train_level}"."""
    size_param: str | None = None
    """data scaling: the param that holds the training-set size."""
    group_param: str | None = None
    targets: dict[str, float] | None = None
    """decision tree: metric -> target the arm's mean must meet."""
    pairwise_metric: str | None = None
    pairwise_reference: str | None = None


class StudyFile(_Strict):
    name: str | None = None
    question: str = Field(min_length=1)
    recipe: str | None = None
    """None: an evaluation-only study (the built-in recipe "scores": external arms only)."""
    replicates: list[int] | None = Field(None, min_length=1)
    """Required when the study trains arms; an evaluation-only study defaults to [0]."""
    control: str | None = None
    external_arms: list[str] = Field(default_factory=list)
    """Arms whose item scores come from elsewhere (`fairtrial import`), e.g. a hosted API model."""
    endpoint: EndpointSpec
    metrics: dict[str, MetricSpec] = Field(default_factory=dict)
    """Metrics the study declares itself (name -> direction, aggregation), beside the recipe's."""
    decision: DecisionSpec = Field(default_factory=DecisionSpec)
    params: dict[str, Any] = Field(default_factory=dict)
    arms: list[dict[str, Any]] = Field(default_factory=list)
    grid: dict[str, Any] | None = None
    resources: dict[str, ResourceSpec] = Field(default_factory=dict)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)

    @field_validator("replicates", mode="before")
    @classmethod
    def _ints(cls, v):
        if isinstance(v, list):
            for i, s in enumerate(v):
                if not isinstance(s, int) or isinstance(s, bool):
                    raise ValueError(f"seeds must be integers; item {i} is {s!r}")
                if not 0 <= s < MAX_SEED:
                    raise ValueError(f"seeds must be 0 <= seed < 2**63; item {i} is {s}")
        return v

    @field_validator("replicates")
    @classmethod
    def _unique(cls, v):
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct; got {v}")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if v is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError(f"{v!r} is not a usable study name; use letters, digits, _ . -")
        if v is not None and len(v) > MAX_STUDY_NAME:
            raise ValueError(f"the study name is {len(v)} characters long; at most {MAX_STUDY_NAME}")
        return v

    @field_validator("question")
    @classmethod
    def _one_line(cls, v):
        bad = _unprintable(v)
        if bad:
            raise ValueError(f"the question holds the control character {bad}; it is the report's "
                             "first line: write it on one line")
        return v


# ---- the validated study ----

@dataclass
class Arm:
    name: str
    params: dict[str, Any]
    """Resolved recipe params (defaults filled in, JSON-able): what the cache keys see."""
    overrides: dict[str, Any]
    origin: str
    """Where the arm was declared: "arms[2]" or "grid"."""


@dataclass
class Spec:
    path: Path
    name: str
    question: str
    recipe: Recipe
    replicates: list[int]
    control: str | None
    external_arms: list[str]
    endpoint: EndpointSpec
    decision: DecisionSpec
    params: dict[str, Any]
    arms: list[Arm]
    resources: dict[str, Resources]
    analysis: dict[str, Any]
    digest: str
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    external_params: dict[str, Any] | None = None
    """The resolved recipe params the external arms' planned stages run with (the study's own
    [params], no arm overrides), when the recipe plans stages for external arms
    (`Recipe.external_stages`, e.g. toolcall's prepare and trivial baselines); else None."""

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(name)

    def resources_for(self, stage: str) -> Resources:
        return self.resources.get(stage) or self.recipe.stage(stage).resources

    @property
    def planned_external_arms(self) -> list[str]:
        """The external arms the plan runs the recipe's `external_stages` for (all of them when
        the recipe declares such stages, else none)."""
        return list(self.external_arms) if self.external_params is not None else []

    @property
    def evaluation_only(self) -> bool:
        """Nothing to run: every arm is external (its scores come from `fairtrial import`) and
        the recipe plans no stage for external arms (a toolcall study of external arms only
        still runs prepare and the trivial baselines, so it is not evaluation-only)."""
        return not self.arms and not self.planned_external_arms

    @property
    def direction(self) -> str:
        return self.endpoint.direction or self.recipe.metric(self.endpoint.metric).direction


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _pydantic_errors(err: ValidationError, model: type[BaseModel] | None = None):
    """(loc, message) pairs with messages a user can act on."""
    out = []
    for e in err.errors():
        loc = tuple(e["loc"])
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if e["type"] == "extra_forbidden":
            known = _known_keys(model, loc[:-1]) if model else []
            msg = "unknown key" + (f"; known: {', '.join(known)}" if known else "")
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and e["type"] not in ("value_error", "assertion_error"):
            msg = f"{msg} (got {e['input']!r})"
        out.append((loc, msg))
    return out


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the (nested) pydantic model at `loc`."""
    cur: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(cur, "model_fields", None)
        if not fields or part not in fields:
            return []
        ann = fields[part].annotation
        cur = _model_in(ann)
        if cur is None:
            return []
    return sorted(getattr(cur, "model_fields", {}).keys())


def _model_in(ann) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for a in getattr(ann, "__args__", ()) or ():
        m = _model_in(a)
        if m is not None:
            return m
    return None


def _toml_error_line(e: tomllib.TOMLDecodeError) -> int | None:
    m = re.search(r"line (\d+)", str(e))
    return int(m.group(1)) if m else None


def _arm_name_from_template(template: str | None, combo: dict[str, Any]) -> str:
    if template:
        try:
            return template.format(**combo)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as e:
            raise ValueError(f"name template {template!r} cannot be filled: {e}") from e
    return ",".join(f"{k}={v}" for k, v in combo.items())


def _expand_grid(grid: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    grid = dict(grid)
    template = grid.pop("name", None)
    if template is not None and not isinstance(template, str):
        raise ValueError(f'grid.name must be a name template such as "{{size}}-{{level}}", '
                         f"got {template!r}")
    if not grid:
        raise ValueError("empty grid: give at least one param with a list of values")
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise ValueError(f"grid.{k} must be a non-empty list of values, got {v!r}")
    keys = list(grid)
    combos = [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]
    return template, combos


def _dotted_to_nested(d: dict[str, Any]) -> dict[str, Any]:
    """grid keys may be dotted ("model.n_layer"): turn them into nested dicts."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        parts = k.split(".")
        cur = out
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = v
    return out


ANALYSED_AGGREGATIONS = ("mean", "geomean", "proportion")
"""The aggregations the analysis computes (fairtrial.analysis.design.SUPPORTED_AGGREGATIONS; a
test keeps the two equal, and this module does not import the analysis, which loads scipy).
A metric declared "median" may be produced and shown, but not decide or be compared."""

EVALUATION_ONLY = "scores"
"""The built-in recipe of a study file without `recipe` (fairtrial.recipes.evaluation_only)."""


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _with_declared_metrics(recipe: Recipe, declared: dict[str, "MetricSpec"], err) -> Recipe:
    """The recipe with the study file's [metrics] added. A metric the recipe declares may be
    repeated only as the recipe declares it."""
    from dataclasses import replace

    from fairtrial.recipes.api import Metric

    extra = []
    for name, m in declared.items():
        if not name.strip():
            err(("metrics",), "a metric needs a non-empty name")
            continue
        try:
            known = recipe.metric(name)
        except KeyError:
            extra.append(Metric(name, m.direction, m.aggregation, m.description, m.missing))
            continue
        if (known.direction, known.aggregation) != (m.direction, m.aggregation):
            err(("metrics", name),
                f'recipe {recipe.name} declares {name} as direction "{known.direction}", '
                f'aggregation "{known.aggregation}"; remove it here or declare it the same way')
    return replace(recipe, metrics=tuple(recipe.metrics) + tuple(extra)) if extra else recipe


def _check_decision(sf: "StudyFile", raw: dict[str, Any], err) -> None:
    """[decision]: the keys each test needs and refuses (one line each)."""
    d = sf.decision
    given = raw.get("decision") or {}
    if d.test == "superiority":
        if d.margin is not None:
            err(("decision", "margin"),
                'margin is for test = "non_inferiority" or "equivalence"; a superiority test '
                "uses min_effect (remove margin, or set the test)")
        return
    if d.margin is None:
        err(("decision", "test"), f'test = "{d.test}" needs a margin (>= 0, on the scale of '
                                  f'effect = "{d.effect}"), e.g. margin = 0.05')
    if "min_effect" in given and d.min_effect > 0:
        err(("decision", "min_effect"), f'min_effect is for superiority; test = "{d.test}" uses '
                                        "margin instead (remove min_effect)")
    if d.test == "equivalence" and d.alpha >= 0.5:
        err(("decision", "alpha"), f"alpha {d.alpha:g}: an equivalence test reads the 1 - 2 alpha "
                                   "interval (TOST), so alpha must be below 0.5")
    if d.test == "non_inferiority":
        if sf.control is None:
            err(("decision", "test"), 'test = "non_inferiority" asks whether each arm is not worse '
                                      'than a reference: name it with control = "<arm>"')
        elif d.compare != "control":
            err(("decision", "compare"), 'test = "non_inferiority" compares each arm with the '
                                         'control: use compare = "control"')


def load_spec(path: str | Path) -> Spec:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such study file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give the study file (TOML) itself")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path.name}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:  # unreadable (permissions), a special file, an I/O error
        raise UserError(f"{path}: cannot read the study file: {e.strerror or e}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        line = _toml_error_line(e)
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        raise SpecError(path, [(line, "", f"malformed TOML: {msg}")]) from None
    return validate(raw, path, text)


def validate(raw: dict[str, Any], path: Path, text: str = "") -> Spec:
    errors: list[tuple[int | None, str, str]] = []

    def err(loc: tuple, msg: str) -> None:
        errors.append((line_of(text, loc) if text else None, format_loc(loc), msg))

    try:
        sf = StudyFile.model_validate(raw)
    except ValidationError as e:
        for loc, msg in _pydantic_errors(e, StudyFile):
            err(loc, msg)
        raise SpecError(path, errors) from None

    try:
        recipe = registry.get(sf.recipe or EVALUATION_ONLY)
    except UserError as e:
        err(("recipe",), str(e))
        raise SpecError(path, errors) from None
    recipe = _with_declared_metrics(recipe, sf.metrics, err)
    evaluation_only = recipe.name == EVALUATION_ONLY

    # endpoint
    metric_names = [m.name for m in recipe.metrics]
    for i, m in enumerate([sf.endpoint.metric] + sf.endpoint.secondary):
        loc = ("endpoint", "metric") if i == 0 else ("endpoint", "secondary", i - 1)
        if m not in metric_names:
            if evaluation_only:
                err(loc, f'unknown metric "{m}": a study without a recipe declares its metrics, '
                         f'e.g. [metrics.{_toml_key(m)}] direction = "higher", aggregation = '
                         '"proportion" (or "mean", "geomean")'
                         + (f'; declared: {", ".join(metric_names)}' if metric_names else ""))
            else:
                err(loc, f'unknown metric "{m}" for recipe {recipe.name}; known: '
                         f'{", ".join(metric_names)} (or declare it under [metrics])')
    # a metric the analysis cannot aggregate would fail at `report`, after all the compute
    analysed = [(("endpoint", "metric"), sf.endpoint.metric)]
    analysed += [(("endpoint", "secondary", i), m) for i, m in enumerate(sf.endpoint.secondary)]
    analysed += [(("analysis", "targets", m), m) for m in (sf.analysis.targets or {})]
    usable = [n for n in metric_names if recipe.metric(n).aggregation in ANALYSED_AGGREGATIONS]
    for loc, m in analysed:
        agg = recipe.metric(m).aggregation if m in metric_names else None
        if agg is not None and agg not in ANALYSED_AGGREGATIONS:
            err(loc, f'metric "{m}" is aggregated as "{agg}", which the analysis cannot compute '
                     "yet (its paired bootstrap is built on means); use a metric aggregated as "
                     + ", ".join(ANALYSED_AGGREGATIONS)
                     + (f' (recipe {recipe.name}: {", ".join(usable)})' if usable else ""))
    if sf.endpoint.metric in metric_names and sf.endpoint.direction:
        declared = recipe.metric(sf.endpoint.metric).direction
        if declared != sf.endpoint.direction:
            err(("endpoint", "direction"),
                f'{sf.endpoint.metric} is "{declared}" is better, not "{sf.endpoint.direction}"')

    # resources
    stage_names = [s.name for s in recipe.stages]
    resources: dict[str, Resources] = {}
    for st, r in sf.resources.items():
        if st not in stage_names:
            err(("resources", st), f'unknown stage "{st}"; known: {", ".join(stage_names)}')
        else:
            resources[st] = Resources(cpus=r.cpus, gpus=r.gpus, memory_gb=r.memory_gb)

    # arms: explicit, then the grid
    declared: list[tuple[str, dict, str, tuple]] = []  # name, overrides, origin, loc prefix
    for i, a in enumerate(sf.arms):
        a = dict(a)
        name = a.pop("name", None)
        if not isinstance(name, str) or not name:
            err(("arms", i), "each arm needs a name (a non-empty string)")
            continue
        declared.append((name, a, f"arms[{i}]", ("arms", i)))
    if sf.grid is not None:
        try:
            template, combos = _expand_grid(sf.grid)
            for combo in combos:
                name = _arm_name_from_template(template, combo)
                declared.append((name, _dotted_to_nested(combo), "grid", ("grid",)))
        except ValueError as e:
            err(("grid",), str(e))
    if evaluation_only:
        # nothing to train: every arm is external, and there are no params or stages to set
        for key in ("arms", "grid", "params", "resources"):
            if raw.get(key):
                err((key,), f"an evaluation-only study (no recipe) trains nothing, so it has no "
                            f"{key}; declare its systems in external_arms, or name a recipe")
        declared = []
    if not declared and not sf.external_arms and not errors:
        err(("arms",), "no arms: declare external_arms, [[arms]] or a [grid]"
            if not evaluation_only else
            'no arms: list the systems to compare, e.g. external_arms = ["system-a", "system-b"]')
    replicates = list(sf.replicates) if sf.replicates is not None else None
    if replicates is None:
        if declared:
            err(("replicates",), "required key is missing: the seeds every trained arm runs, "
                                 "e.g. replicates = [0, 1, 2]")
        replicates = [0]   # external systems: one fixed run each (see docs/study-file.md)

    seen: dict[str, str] = {}
    arms: list[Arm] = []
    for name, overrides, origin, loc in declared:
        problem = arm_name_problem(name)
        if problem:
            err(loc + (("name",) if origin != "grid" else ()), problem)
            continue
        if name in seen:
            err(loc + (("name",) if origin != "grid" else ()),
                f'duplicate arm name "{name}" (also {seen[name]})')
            continue
        seen[name] = origin
        merged = deep_merge(sf.params, overrides)
        try:
            model = recipe.params.model_validate(merged, context={"base_dir": path.parent.resolve()})
        except ValidationError as e:
            for ploc, msg in _pydantic_errors(e, recipe.params):
                top = ploc[0] if ploc else None
                if top is not None and top in overrides:
                    where = loc + tuple(ploc) if origin != "grid" else ("grid",) + tuple(ploc)
                else:
                    where = ("params",) + tuple(ploc)
                prefix = f"arm {name}: " if origin == "grid" else ""
                err(where, prefix + msg)
            continue
        arms.append(Arm(name=name, params=model.model_dump(mode="json"), overrides=overrides,
                        origin=origin))

    for i, ext in enumerate(sf.external_arms):
        problem = arm_name_problem(ext)
        if problem:
            err(("external_arms", i), problem)
        elif ext in seen:
            err(("external_arms", i), f'"{ext}" is also a trained arm; use another name')
        else:
            seen[ext] = f"external_arms[{i}]"
    # external arms of a recipe that plans stages for them (toolcall: prepare and the trivial
    # baselines) run those with the study's own [params]: validate them here, as an arm's
    external_params = None
    if sf.external_arms and recipe.external_stages and not evaluation_only:
        try:
            model = recipe.params.model_validate(sf.params,
                                                 context={"base_dir": path.parent.resolve()})
            external_params = model.model_dump(mode="json")
        except ValidationError as e:
            # the same text as a trained arm's error on a shared param, so it is said once;
            # a param every arm sets for itself needs saying why the study's own is read
            overridden = {k for _, o, _, _ in declared for k in o}
            for ploc, msg in _pydantic_errors(e, recipe.params):
                if ploc and ploc[0] in overridden:
                    msg += (f" (the external arms run {', '.join(recipe.external_stages)} with "
                            "the study's own [params], without arm overrides)")
                err(("params",) + tuple(ploc), msg)
    if sf.control is not None and sf.control not in seen:
        err(("control",), f'control "{sf.control}" is not an arm; arms: {", ".join(seen) or "none"}')
    if sf.decision.compare == "control" and sf.control is None and len(seen) > 1 \
            and sf.decision.test != "non_inferiority" \
            and sf.analysis.size_param is None:  # a data-scaling study compares sizes, not a control
        err(("decision", "compare"),
            'compare = "control" needs a control arm; set control = "<arm>" or compare = "all-pairs"')

    _check_decision(sf, raw, err)

    an = sf.analysis
    if isinstance(an.own_eval_set, dict):
        for a in an.own_eval_set:
            if a not in seen:
                err(("analysis", "own_eval_set", a), f'"{a}" is not an arm; arms: {", ".join(seen)}')
    for m in list(an.targets or {}) + ([an.pairwise_metric] if an.pairwise_metric else []):
        if m not in metric_names:
            err(("analysis",), f'unknown metric "{m}"; known: {", ".join(metric_names)}')
    if an.pairwise_reference and an.pairwise_reference not in seen:
        err(("analysis", "pairwise_reference"), f'"{an.pairwise_reference}" is not an arm')

    if sf.name is None:  # the file's name names the study: it must make a usable folder name too
        if len(path.stem) > MAX_STUDY_NAME:
            err(("name",), f"the study is named after its file, {len(path.stem)} characters long; "
                           f"at most {MAX_STUDY_NAME}: set name = \"...\" in the file")
        elif _unprintable(path.stem) or path.stem.startswith("."):
            err(("name",), f"the study is named after its file, {path.stem!r}, which is no usable "
                           "study name: set name = \"...\" in the file")

    if errors:
        raise SpecError(path, errors)

    canonical = json.dumps(raw, sort_keys=True, default=str)
    return Spec(
        path=path.resolve(), name=sf.name or path.stem, question=sf.question, recipe=recipe,
        replicates=replicates, control=sf.control,
        external_arms=list(sf.external_arms), endpoint=sf.endpoint,
        decision=sf.decision, params=sf.params, arms=arms, resources=resources,
        analysis=sf.analysis.model_dump(exclude_none=True), digest=hashlib.sha256(canonical.encode()).hexdigest(), raw=raw,
        external_params=external_params,
    )
