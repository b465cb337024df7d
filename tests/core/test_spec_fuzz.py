"""A property-based fuzz of study files (issue 15): whatever a study file holds, `load_spec` raises
nothing but UserError, and `fairtrial check` never answers with an internal error (exit 70).

Bounded for CI (about 20 s on 2 cores, the same examples every run); FAIRTRIAL_FUZZ_EXAMPLES=N
multiplies the examples and draws new ones each run."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the dev extra")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fairtrial.errors import UserError
from fairtrial.spec import load_spec, validate

SCALE = int(os.environ.get("FAIRTRIAL_FUZZ_EXAMPLES", "0") or 0)


def fuzz(n: int):
    return settings(max_examples=n * SCALE if SCALE else n, deadline=None, derandomize=not SCALE,
                    database=None, suppress_health_check=list(HealthCheck))


# ---- values a TOML file can hold, with the awkward ones made likely
texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "..", "/", "a/b", "[/INST]", "[[arms]]", "[bold]x", "x\ny", "\x07",
                     "base", "better", "score", "_test", "ilm", "all", "A1", "D1", "control",
                     "all-pairs", "absolute", "relative", "higher", "lower", "holm", "n" * 300]),
)
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-2**70, max_value=2**70),
    st.sampled_from([0, 1, -1, 2**63 - 1, 2**63, 2**64, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e400, -1e400, 1e12, 1e-300, 0.5]),
    texts,
    st.dates(), st.datetimes(), st.times(),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(texts, inner, max_size=4)), max_leaves=12)

PARAM_KEYS = ["size", "level", "sleep", "steps", "fail", "fail_message", "transient_failures",
              "micro_batch", "grad_accum", "oom_above", "effect", "noise", "n_items"]
# never "data": an existing path is hashed whole (a fuzzed "/" would digest the file system)


def maybe(valid, other=values):
    """The valid value most of the time, anything else sometimes."""
    return st.one_of(st.just(valid), st.just(valid), other)


params = st.dictionaries(st.sampled_from(PARAM_KEYS), maybe(1, values), max_size=4)
arm = st.builds(lambda name, p: {"name": name, **p}, maybe("better", texts), params)
arms = st.one_of(st.just([{"name": "base"}, {"name": "better", "effect": 0.5}]),
                 st.lists(arm, max_size=4), values)

study = st.fixed_dictionaries(
    {"question": maybe("Does the effect help?", texts),
     "recipe": maybe("_test", st.one_of(texts, values)),
     "replicates": maybe([0, 1]),
     "endpoint": maybe({"metric": "score"}, st.one_of(
         st.fixed_dictionaries({"metric": texts}, optional={"direction": texts, "secondary": values}),
         values)),
     "arms": arms},
    optional={"name": st.one_of(texts, values),
              "control": maybe("base", texts),
              "external_arms": st.one_of(st.lists(texts, max_size=3), values),
              "decision": st.one_of(
                  st.fixed_dictionaries({}, optional={"min_effect": values, "effect": texts,
                                                      "alpha": values, "correction": texts,
                                                      "compare": texts}), values),
              "params": st.one_of(params, values),
              "grid": st.one_of(st.dictionaries(st.sampled_from(PARAM_KEYS + ["name"]),
                                                st.lists(scalars, max_size=3), max_size=2), values),
              "resources": st.one_of(st.dictionaries(
                  st.sampled_from(["source", "work", "score", "train"]),
                  st.fixed_dictionaries({}, optional={"cpus": values, "gpus": values,
                                                      "memory_gb": values}), max_size=2), values),
              "analysis": st.one_of(st.dictionaries(
                  st.sampled_from(["min_items", "own_eval_set", "size_param", "targets",
                                   "pairwise_metric", "pairwise_reference", "bogus"]),
                  values, max_size=3), values),
              "metrics": st.one_of(st.dictionaries(texts, values, max_size=2), values),
              "bogus": values})


# ---- a valid study with one to three values changed to awkward ones: most of these load, so the
# values that pass check are put to the test too
BASE = {"question": "Does the effect help?", "recipe": "_test", "replicates": [0, 1],
        "control": "base", "endpoint": {"metric": "score"},
        "decision": {"min_effect": 0.1, "effect": "absolute"},
        "params": {"n_items": 5}, "resources": {"work": {"cpus": 1, "memory_gb": 0.5}},
        "arms": [{"name": "base"}, {"name": "better", "effect": 0.5}]}
numbers = st.one_of(st.integers(min_value=0, max_value=100), st.floats(min_value=0.01, max_value=10),
                    st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, -1, 2**63 - 1, 2**63, 2**64, 1e400, -1e400, 1e12, 1e-300]))
names = st.one_of(texts, st.text(min_size=1, max_size=3).map(lambda t: "arm" + t),
                  st.integers(min_value=1, max_value=6000).map(lambda n: "x" * n))
CHANGES = [
    (("replicates",), st.lists(numbers, min_size=1, max_size=3)),
    (("replicates", 1), numbers),
    (("decision", "min_effect"), numbers), (("decision", "alpha"), numbers),
    (("resources", "work", "cpus"), numbers), (("resources", "work", "memory_gb"), numbers),
    (("resources", "work", "gpus"), numbers),
    (("arms", 1, "name"), names), (("arms", 0, "name"), names), (("arms", 2), st.builds(
        lambda n: {"name": n}, names)),
    (("name",), names), (("question",), names), (("control",), names),
    (("external_arms",), st.lists(names, max_size=2)),
    (("params", "effect"), numbers), (("params", "n_items"), numbers),
    (("params", "noise"), numbers), (("arms", 1, "size"), numbers),
    (("analysis", "min_items"), numbers),
    (("grid",), st.dictionaries(st.sampled_from(["effect", "noise", "name"]),
                                st.lists(st.one_of(numbers, names), min_size=1, max_size=2),
                                min_size=1, max_size=2)),
]


def _changed(changes) -> dict:
    import copy

    d = copy.deepcopy(BASE)
    for path, value in changes:
        cur = d
        for part in path[:-1]:
            cur = cur[part] if isinstance(part, int) else cur.setdefault(part, {})
        last = path[-1]
        if isinstance(last, int) and last >= len(cur):
            cur.append(value)
        else:
            cur[last] = value
    return d


nearly_valid = st.lists(st.sampled_from(CHANGES).flatmap(
    lambda c: st.tuples(st.just(c[0]), c[1])), min_size=1, max_size=2).map(_changed)
any_study = st.one_of(nearly_valid, nearly_valid, nearly_valid, study)


# ---- a tiny TOML writer (inline tables and arrays; no third-party writer needed)
def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == float("inf") else "-inf" if v == -float("inf")
                                     else repr(v))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_text(d: dict) -> str:
    return "".join(f"{_key(k)} = {toml_value(v)}\n" for k, v in d.items())


def only_user_errors(fn):
    try:
        spec = fn()
    except UserError:
        return  # the expected way to refuse; anything else propagates and fails the test
    usable(spec)


def usable(spec) -> None:
    """What passes check must not fail later: values the engine, numpy, the record store, the
    file system and a one-line report can take."""
    import math
    import unicodedata

    assert all(0 <= s < 2**63 for s in spec.replicates), spec.replicates
    assert 0 < len(spec.name) <= 100 and "/" not in spec.name, spec.name
    assert math.isfinite(spec.decision.min_effect)
    for r in spec.resources.values():
        assert math.isfinite(r.cpus) and math.isfinite(r.memory_gb), r
    names = [a.name for a in spec.arms] + list(spec.external_arms)
    for name in names + [spec.question]:
        assert not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name), name
    for name in names:
        assert name.strip() and "/" not in name and ".." not in name and len(name) <= 200, name


@fuzz(500)
@given(raw=any_study)
def test_validate_raises_only_user_errors(raw, tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "fuzz.toml"
    only_user_errors(lambda: validate(raw, path))


@fuzz(150)
@given(raw=any_study, cut=st.integers(min_value=0, max_value=400),
       junk=st.text(max_size=6) | st.sampled_from(["[", "]]", '"', "=", "\n", "\\", "\x00", "\x7f"]),
       data=st.binary(max_size=120))
def test_load_spec_raises_only_user_errors(raw, cut, junk, data, tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "fuzz.toml"
    text = toml_text(raw)
    path.write_text(text)
    only_user_errors(lambda: load_spec(path))
    path.write_text(text[:cut] + junk + text[cut:])  # damaged TOML
    only_user_errors(lambda: load_spec(path))
    path.write_bytes(data)  # not text at all
    only_user_errors(lambda: load_spec(path))


@fuzz(60)
@given(raw=any_study)
def test_check_never_exits_70(raw, tmp_path_factory, monkeypatch_session):
    from fairtrial import cli

    base = tmp_path_factory.getbasetemp()
    path = base / "check.toml"
    path.write_text(toml_text(raw))
    rc = cli.main(["check", str(path), "--json", "-w", str(base / "ws")])
    if rc == 70:
        logs = sorted(Path(os.environ["FAIRTRIAL_CRASH_DIR"]).glob("fairtrial-crash-*.log"))
        pytest.fail(f"exit 70 on\n{path.read_text()}\n{logs[-1].read_text() if logs else ''}")
    assert rc in (0, 2), rc


@pytest.fixture(scope="module")
def monkeypatch_session(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("FAIRTRIAL_CRASH_DIR", str(tmp_path_factory.mktemp("crashes")))
    mp.delenv("FAIRTRIAL_DB_URL", raising=False)
    mp.delenv("FAIRTRIAL_TEST_RAISE", raising=False)
    yield mp
    mp.undo()
