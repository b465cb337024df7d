"""The application layer (fairtrial.app) called directly, as the dashboard will: plain data
back, progress through callbacks; plus what `check` now refuses before any compute (item 5 of
issue 9), the analysis design built straight from the spec, recipe commands and the crash log."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fairtrial.app import check as app_check
from fairtrial.app import report as app_report
from fairtrial.app import resolve
from fairtrial.app import run as app_run
from fairtrial.app import status as app_status
from fairtrial.errors import Refused, UserError
from tests.conftest import study_text

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRTRIAL_TEST_CALLS", str(tmp_path / "calls.txt"))
    monkeypatch.delenv("FAIRTRIAL_DB_URL", raising=False)
    return tmp_path


def test_check_run_report_status_stop_through_the_use_cases(env, make_study):
    study = make_study(better="steps = 20\nsleep = 2")  # long enough to report progress
    ws_path = env / "ws"
    checked = app_check.check(study, ws_path)
    d = checked.to_dict()
    assert d["study"] == "study" and d["valid"] and d["arms"] == ["base", "better"]
    assert [r["stage"] for r in d["stages"]] == ["source", "work", "score"]
    assert all(r["cached"] == 0 and r["to_run"] == r["runs"] for r in d["stages"])
    json.dumps(d)  # plain data
    n = sum(r["runs"] for r in d["stages"])
    assert n > len(d["stages"])  # shared and per-cell runs

    ws = resolve.open_workspace(ws_path)
    spec = resolve.load(study)
    events: list[tuple[str, dict]] = []
    out = app_run.run(spec, ws, cpus=2, on_event=lambda k, i: events.append((k, i)))
    assert out.ok and out.failed == [] and out.run == out.stage_runs == n
    kinds = [k for k, _ in events]
    assert kinds[0] == "planned" and events[0][1] == {"study": "study", "stage_runs": n}
    assert kinds.count("started") == n and kinds.count("done") == n
    done = [i for k, i in events if k == "done"]
    assert {i["stage"] for i in done} == {"source", "work", "score"}
    assert all(isinstance(i["arms"], list) and "key" in i for i in done)
    progress = [i for k, i in events if k == "progress"]
    assert progress and all(i["stage"] == "work" and i["arms"] == ["better"] and i["total"] == 20
                            and 0 < i["done"] <= 20 and i["unit"] == "step" for i in progress)
    assert out.to_dict() == {"study": "study", "ok": True, "stage_runs": n, "run": n, "cached": 0,
                             "failed": [], "skipped": [], "interrupted": False}

    again = app_run.run(spec, ws)  # no callback: fine, and nothing runs twice
    assert again.ok and again.run == 0 and again.cached == n

    rep = app_report.report(spec, ws, seed=1, resamples=200)
    assert rep.result.headline.startswith("Does the effect help?")
    assert {p.name for p in rep.folder.iterdir()} >= {"report.md", "report.html", "report.json"}

    q = app_status.status(ws_path, "study")
    assert q.names == ["study"]
    st = q.read()
    assert st[0].totals.get("done") == n
    with pytest.raises(Refused, match="nothing to stop"):
        app_run.stop(ws_path, "study")
    with pytest.raises(UserError, match='unknown study "nope"'):
        app_status.status(ws_path, "nope")


def test_an_evaluation_only_study_has_nothing_to_run(env, make_study):
    study = make_study(textwrap_eval_only())
    spec = resolve.load(study)
    out = app_run.run(spec, resolve.open_workspace(env / "ws"))
    assert out.ok and out.evaluation_only and out.to_dict()["evaluation_only"] is True


def textwrap_eval_only() -> str:
    return ('question = "Which system is better?"\nexternal_arms = ["a", "b"]\ncontrol = "a"\n'
            '[endpoint]\nmetric = "acc"\n[metrics.acc]\ndirection = "higher"\n'
            'aggregation = "proportion"\n')


# ---------------------------------------------------------------- the design from the spec
@pytest.mark.parametrize("extra", [
    "",
    'external_arms = ["api"]\n',
    '[analysis]\nmin_items = 5\nown_eval_set = {better = "test"}\ntargets = {score = 0.3}\n',
])
def test_the_design_is_read_from_the_validated_spec(make_study, extra):
    """StudyDesign.from_spec reads the validated study by its attributes (nothing parsed again):
    arms with their resolved params and external arms as fixed systems, the endpoint with its
    direction, the decision, every metric's direction and aggregation, the [analysis] shapes."""
    from fairtrial.analysis import Decision, Endpoint, StudyDesign

    text = study_text()
    if extra.startswith("external"):
        text = extra + text
    else:
        text += extra
    spec = resolve.load(make_study(text))
    d = StudyDesign.from_spec(spec)
    assert d.arms == {**{a.name: a.params for a in spec.arms},
                      **{e: {"external": True} for e in spec.external_arms}}
    assert d.fixed_arms == tuple(spec.external_arms) and d.control == spec.control
    assert d.endpoint == Endpoint(spec.endpoint.metric, spec.direction,
                                  tuple(spec.endpoint.secondary))
    assert d.decision == Decision(**spec.decision.model_dump())
    assert d.metric_directions == {m.name: m.direction for m in spec.recipe.metrics}
    assert d.metric_aggregations == {m.name: m.aggregation for m in spec.recipe.metrics}
    if "analysis" in extra:
        assert d.min_items == 5 and dict(d.cross_eval.own) == {"better": "test"}
        assert dict(d.decision_tree.targets) == {"score": 0.3}
    else:
        assert d.min_items == 30 and d.cross_eval is None and d.decision_tree is None
    d.check()


def test_spec_and_analysis_agree_on_the_aggregations_they_compute():
    from fairtrial.analysis.design import SUPPORTED_AGGREGATIONS
    from fairtrial.spec import ANALYSED_AGGREGATIONS

    assert tuple(ANALYSED_AGGREGATIONS) == tuple(SUPPORTED_AGGREGATIONS)


# ---------------------------------------------------------------- check refuses median
def _lvm_study(tmp_path: Path, endpoint: str, secondary: str = '"cosine"') -> Path:
    text = (REPO / "examples" / "lvm_data_scaling.toml").read_text()
    text = re.sub(r'(?m)^metric = "mrr".*$', f'metric = "{endpoint}"', text)
    text = re.sub(r'(?m)^direction = "higher"\s*$', "", text)
    text = re.sub(r'(?m)^secondary = .*$', f"secondary = [{secondary}]", text)
    p = tmp_path / "lvm.toml"
    p.write_text(text)
    return p


def test_check_rejects_an_endpoint_the_analysis_cannot_aggregate(cli, tmp_path):
    p = cli("check", _lvm_study(tmp_path, "rank"))
    assert p.returncode == 2, p.stdout + p.stderr
    lines = [ln for ln in p.stderr.splitlines() if "rank" in ln]
    assert len(lines) == 1 and re.match(r"error: lvm\.toml:\d+: endpoint\.metric: ", lines[0]), p.stderr
    assert 'aggregated as "median"' in lines[0] and "mrr" in lines[0]  # names the usable ones
    assert "Traceback" not in p.stderr


def test_check_rejects_a_secondary_metric_the_analysis_cannot_aggregate(cli, tmp_path):
    p = cli("check", _lvm_study(tmp_path, "mrr", '"cosine", "rank"'))
    assert p.returncode == 2, p.stdout + p.stderr
    assert re.search(r"lvm\.toml:\d+: endpoint\.secondary\[1\]: metric \"rank\"", p.stderr), p.stderr


def test_check_passes_the_lvm_example(cli, tmp_path):
    p = cli("check", _lvm_study(tmp_path, "mrr"), "--json")
    assert p.returncode in (0, 2), p.stderr
    assert "aggregated as" not in p.stderr  # whatever else (a missing data set), not this


# ---------------------------------------------------------------- recipe commands
def test_recipe_commands_are_collected_and_mounted(monkeypatch, capsys):
    import sys
    import types

    import typer

    from fairtrial import cli as cli_mod
    from fairtrial.recipes import registry
    from fairtrial.recipes.api import Recipe

    names = [c.name or c.callback.__name__ for a in registry.command_apps()
             for c in a.registered_commands]
    assert "infill" in names  # ilm's commands.py

    sub = typer.Typer()

    @sub.command()
    def hello(who: str = typer.Argument("world")) -> None:
        print(f"hello {who}")

    @sub.command("status")  # a core name: the core command keeps it
    def not_status() -> None:
        print("recipe status")

    from pydantic import BaseModel

    mod = types.ModuleType("fake_recipe_mod")
    mod.RECIPE = Recipe(name="fake", params=BaseModel, stages=(), commands=lambda: sub)
    monkeypatch.setitem(sys.modules, "fake_recipe_mod", mod)
    monkeypatch.setattr(registry, "_modules", lambda: {"fake": "fake_recipe_mod"})
    monkeypatch.setattr(cli_mod.app, "registered_commands", list(cli_mod.app.registered_commands))
    monkeypatch.setattr(cli_mod, "_CORE_COMMANDS", None)
    assert cli_mod._needs_recipe_commands(["-w", "x", "hello"])
    assert not cli_mod._needs_recipe_commands(["-w", "x", "status", "--json"])
    assert cli_mod.main(["hello", "you"]) == 0
    assert capsys.readouterr().out == "hello you\n"
    statuses = [c for c in cli_mod.app.registered_commands if (c.name or "") == "status"
                or (c.callback and c.callback.__name__ == "status")]
    assert len(statuses) == 1 and statuses[0].callback is cli_mod.status


# ---------------------------------------------------------------- crash log
def test_a_crash_after_the_workspace_is_known_logs_there_with_versions(tmp_path, monkeypatch, capsys):
    from fairtrial import cli as cli_mod

    ws = tmp_path / "ws"

    block_logs = []

    def buggy(study, workspace):
        w = resolve.open_workspace(workspace)
        if block_logs:  # logs/ turned into a file: the crash log cannot go there
            import shutil

            shutil.rmtree(w.root / "logs")
            (w.root / "logs").write_text("a file, not a folder")
        raise RuntimeError("a bug after the workspace opened")

    monkeypatch.setattr(app_check, "check", buggy)
    monkeypatch.setenv("FAIRTRIAL_CRASH_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.delenv("FAIRTRIAL_TEST_RAISE", raising=False)
    assert cli_mod.main(["check", "x.toml", "-w", str(ws)]) == 70
    err = capsys.readouterr().err
    log = Path(re.search(r"are in (\S+\.log)", err).group(1))
    assert log.parent == (ws / "logs").resolve() or log.parent == ws / "logs", log
    text = log.read_text()
    assert "RuntimeError: a bug after the workspace opened" in text
    versions = json.loads(re.search(r"^versions: (.*)$", text, re.M).group(1))
    assert versions["python"] and "numpy" in versions["libraries"] and versions["code_version"]

    # a workspace whose logs/ cannot take it: the old fallbacks ($FAIRTRIAL_CRASH_DIR)
    block_logs.append(True)
    (tmp_path / "elsewhere").mkdir()
    assert cli_mod.main(["check", "x.toml", "-w", str(ws)]) == 70
    log = Path(re.search(r"are in (\S+\.log)", capsys.readouterr().err).group(1))
    assert log.parent == tmp_path / "elsewhere"
