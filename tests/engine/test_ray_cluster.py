"""A study on a real two-node local Ray cluster, run the way a user runs it (the CLI), against the
same study run by the local executor; `kill -9` of a stage task and of the supervisor."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import calls, study_text

pytestmark = pytest.mark.usefixtures("ray_cluster")

# four work runs (two arms with different steps x two replicates) that overlap in time: with four
# task slots over two nodes of two CPUs, they must be spread over both nodes
STUDY = study_text(params="sleep = 1.0", base="steps = 4", better="steps = 5")


def wait_for(pred, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def rows(ws: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(ws / "fairtrial.db")
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError:  # the tables are not there yet
        return []
    finally:
        con.close()


def file_digests(ws: Path) -> dict[str, dict[str, str]]:
    out = {}
    for m in (ws / "artifacts").glob("*/*/manifest.json"):
        man = json.loads(m.read_text())
        out[man["key"]] = {f: info["sha256"] for f, info in man["files"].items()}
    return out


def commits(ws: Path) -> Counter:
    return Counter({log.stem: log.read_text(errors="replace").count("committed artifact")
                    for log in (ws / "logs").glob("*.log")})


def ray_nodes(ws: Path) -> set[str]:
    nodes = set()
    for log in (ws / "logs").glob("*.log"):
        nodes |= set(re.findall(r"ray task attempt \d+ on node (\w+)", log.read_text()))
    return nodes


def summary_of(ws: Path, key: str) -> dict:
    m = ws / "artifacts" / key[:2] / key / "manifest.json"
    return json.loads(m.read_text())["summary"]


@pytest.fixture
def ray_cli(cli, ray_cluster):
    cli.env.update(ray_cluster["env"])

    def run(*args, **kw):
        return cli(*args, "--executor", "ray", "--address", ray_cluster["address"], **kw)
    run.tmp = cli.tmp
    run.plain = cli
    return run


def test_study_on_ray_matches_the_local_executor(ray_cli, make_study, tmp_path):
    study = make_study(STUDY)
    out = json.loads(ray_cli("run", study, "--json", check=0, timeout=90).stdout)
    assert out["ok"] and out["run"] == 9 and out["cached"] == 0, out
    ws = tmp_path / "ws"
    ray_digests = file_digests(ws)
    assert len(ray_digests) == 9
    assert set(commits(ws).values()) == {1}  # every stage run committed exactly once
    assert len(ray_nodes(ws)) == 2, "the tasks did not cross the node boundary"
    assert rows(ws, "select count(*) from attempts where ended_at is null") == [(0,)]
    assert rows(ws, "select count(*) from leases") == [(0,)]
    # the same study file by the local executor, in another workspace: the same artifacts
    local = ray_cli.plain
    local.env["FAIRTRIAL_WORKSPACE"] = str(tmp_path / "ws-local")
    local.env["FAIRTRIAL_TEST_CALLS"] = str(tmp_path / "calls-local.txt")
    assert json.loads(local("run", study, "--json", check=0).stdout)["ok"]
    assert file_digests(tmp_path / "ws-local") == ray_digests
    # and again on Ray: everything cached, nothing called
    n = len(calls(tmp_path))
    assert "0 run, 9 cached" in ray_cli("run", study, check=0, timeout=60).stdout
    assert len(calls(tmp_path)) == n


def _running_work(ws: Path, min_step: float):
    r = rows(ws, "select key, pid from stage_runs where stage='work' and state='running' "
                 f"and pid is not null and progress_done >= {min_step} order by key limit 1")
    return r[0] if r else None


def test_kill9_of_a_stage_task_then_stop_then_run_resumes_from_the_checkpoint(
        ray_cli, make_study, tmp_path):
    import psutil

    # 0.5 s a step: `stop` comes about 10 s before the resumed run could end (a loaded machine
    # took more than 4 s from "running again past step 4" to the stop's cancel)
    study = make_study(study_text(params="sleep = 12.0\nsteps = 24"))
    ws = tmp_path / "ws"
    ray_cli("run", study, "--detach", check=0, timeout=60)
    key, pid = wait_for(lambda: _running_work(ws, 2), 60, "a work run at step 2")
    os.kill(pid, signal.SIGKILL)  # the Ray worker process running the stage (from its record)
    # the supervisor sees the task lost and runs it again, from its checkpoint, in a new process
    _, pid2 = wait_for(lambda: (r := _running_work(ws, 4)) and r[0] == key and r[1] != pid and r,
                       60, "the lost run running again past its checkpoint")
    ray_cli.plain("stop", "study", check=0, timeout=60)  # cancels the Ray task
    wait_for(lambda: not psutil.pid_exists(pid2) or
             psutil.Process(pid2).status() == psutil.STATUS_ZOMBIE, 30, "the Ray task to end")
    out = json.loads(ray_cli("run", study, "--json", check=0, timeout=60).stdout)
    assert out["ok"] and out["run"] >= 1, out
    outcomes = [o for (o,) in rows(ws, f"select outcome from attempts where key='{key}' order by id")]
    assert outcomes == ["lost", "interrupted", "done"], outcomes
    assert summary_of(ws, key)["resumed"] == 2  # twice from its checkpoint, never from step 0
    assert set(commits(ws).values()) == {1}
    assert rows(ws, "select count(*) from leases") == [(0,)]


def test_kill9_of_the_supervisor_then_run_completes(ray_cli, make_study, tmp_path):
    study = make_study(study_text(params="sleep = 2.0\nsteps = 8"))
    ws = tmp_path / "ws"
    ray_cli("run", study, "--detach", check=0, timeout=60)
    key, _ = wait_for(lambda: _running_work(ws, 2), 60, "a work run at step 2")
    sup = json.loads((ws / "studies" / "study" / "supervisor.json").read_text())["pid"]
    os.kill(sup, signal.SIGKILL)
    ends_before = Counter(s for s, _, ev in calls(tmp_path) if ev == "end")
    out = json.loads(ray_cli("run", study, "--json", check=0, timeout=90).stdout)
    assert out["ok"], out
    assert summary_of(ws, key)["resumed"] >= 1
    # nothing that had committed ran again: each stage function ended once per stage run
    ends = Counter(s for s, _, ev in calls(tmp_path) if ev == "end")
    assert ends == {"source": 1, "work": 2, "score": 4}, (ends, ends_before)
    assert set(commits(ws).values()) == {1}
    assert rows(ws, "select count(*) from attempts where ended_at is null") == [(0,)]
    assert rows(ws, "select count(*) from leases") == [(0,)]


def test_a_stage_asking_for_what_no_node_has_is_refused_before_anything_runs(ray_cli, make_study,
                                                                             tmp_path):
    study = make_study(extra="\n[resources.work]\ngpus = 2\n")
    p = ray_cli("run", study, check=3, timeout=60)
    line = (p.stderr + p.stdout).strip().splitlines()[-1]
    assert "stage work asks for 1 CPUs, 2 GPUs" in line and "no node of the Ray cluster" in line
    assert calls(tmp_path) == []


def test_study_on_ray_with_the_postgresql_store(ray_cli, make_study, tmp_path, pg_url):
    """The store a multi-host cluster needs: Ray tasks on both nodes write to PostgreSQL (a fresh
    database of its own; skipped without a server)."""
    from sqlalchemy import create_engine, text

    PG = pg_url
    ray_cli.plain.env["FAIRTRIAL_DB_URL"] = PG
    out = json.loads(ray_cli("run", make_study(), "--json", check=0, timeout=90).stdout)
    assert out["ok"] and out["run"] == 7, out
    with create_engine(PG).connect() as c:
        assert c.execute(text("select count(*) from attempts where outcome='done' "
                              "and pid is not null")).scalar() == 7
        assert c.execute(text("select count(*) from leases")).scalar() == 0
    assert set(commits(tmp_path / "ws").values()) == {1}


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("FAIRTRIAL_RAY_ILM"),
                    reason="set FAIRTRIAL_RAY_ILM=1: trains the tiny ilm study twice (minutes)")
def test_tiny_ilm_study_on_ray_gives_the_local_verdict(ray_cli, tmp_path):
    from tests.recipes.ilm.test_ilm_cli import CEFR_DEV, STUDY as ILM_STUDY

    if not CEFR_DEV.exists():
        pytest.skip("../shared/data/cefr-sp is not beside the project")
    study = tmp_path / "ilm.toml"
    study.write_text(ILM_STUDY.format(data=CEFR_DEV))
    out = json.loads(ray_cli("run", study, "--json", check=0, timeout=900).stdout)
    assert out["ok"], out
    ray_report = json.loads(ray_cli.plain("report", study, "--json", check=0, timeout=300).stdout)
    local = ray_cli.plain
    local.env["FAIRTRIAL_WORKSPACE"] = str(tmp_path / "ws-local")
    assert json.loads(local("run", study, "--json", check=0, timeout=900).stdout)["ok"]
    local_report = json.loads(local("report", study, "--json", check=0, timeout=300).stdout)
    assert ray_report["verdict"] == local_report["verdict"]
    assert file_digests(tmp_path / "ws") == file_digests(tmp_path / "ws-local")
