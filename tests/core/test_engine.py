"""The engine as a user meets it: the CLI on real study files, with faults injected."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import calls, db_rows


def status_json(cli) -> dict:
    p = cli("status", "--json", check=0)
    return json.loads(p.stdout)["studies"][0]


def ends(cli) -> Counter:
    return Counter((s, k) for s, k, ev in calls(cli.tmp) if ev == "end")


def wait_for(pred, timeout=60, every=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError("condition not met in time")


def test_run_then_fully_cached_rerun_calls_nothing(cli, make_study):
    study = make_study()
    cli("run", study, check=0)
    n = len(calls(cli.tmp))
    assert sorted(Counter(s for s, _ in ends(cli)).items()) == [("score", 4), ("source", 1), ("work", 2)]
    p = cli("run", study, check=0)
    assert len(calls(cli.tmp)) == n  # zero stage functions called
    assert "0 run, 7 cached" in p.stdout
    out = json.loads(cli("run", study, "--json", check=0).stdout)
    assert out == {"study": "study", "ok": True, "stage_runs": 7, "run": 0, "cached": 7,
                   "failed": [], "skipped": [], "interrupted": False}
    st = status_json(cli)
    assert st["totals"] == {"done": 7, "total": 7}
    # (how fast a cached re-run is belongs to bench/bench_engine.py, not to a test)


def test_failure_is_recorded_and_other_arms_continue(cli, make_study):
    study = make_study(better='fail = true\nfail_message = "bad batch in shard 3"')
    p = cli("run", study, "--json", check=1)
    out = json.loads(p.stdout)
    assert not out["ok"] and {f["stage"] for f in out["failed"]} == {"work"}
    assert {f["error"] for f in out["failed"]} == {"bad batch in shard 3"}
    assert {r["stage"] for r in out["skipped"]} == {"score"}
    st = status_json(cli)
    cells = {(c["arm"], c["replicate"], c["stage"]): c["state"] for c in st["cells"]}
    assert cells[("base", 0, "score")] == "done" and cells[("base", 1, "score")] == "done"
    assert cells[("better", 0, "work")] == "failed"
    assert cells[("better", 0, "score")] == "pending"  # skipped downstream, never started
    failed = [r for r in st["runs"].values() if r["state"] == "failed"]
    assert failed and all(r["error"] == "bad batch in shard 3" for r in failed)
    # the log holds it too, and `fairtrial logs` finds it by key prefix
    log = cli("logs", failed[0]["key"][:10], check=0)
    assert "bad batch in shard 3" in log.stdout


def test_transient_failures_retry_with_backoff(cli, make_study):
    study = make_study(params="transient_failures = 2")
    cli("run", study, check=0)
    rows = db_rows(cli, "select stage, attempts, state from stage_runs where stage='work'")
    assert rows and all(a == 3 and s == "done" for _, a, s in rows)
    outcomes = [o for (o,) in db_rows(cli, "select outcome from attempts where key in "
                                           "(select key from stage_runs where stage='work')")]
    assert Counter(outcomes) == {"transient": 4, "done": 2}


def test_oom_policy_halves_micro_batch_and_is_recorded(cli, make_study):
    study = make_study(params="oom_above = 2")
    cli("run", study, check=0)
    rows = db_rows(cli, "select key, effective_params, adjustments from stage_runs where stage='work'")
    for key, eff, adj in rows:
        eff, adj = json.loads(eff), json.loads(adj)
        assert eff["micro_batch"] == 2 and eff["grad_accum"] == 4
        assert [a["changed"] for a in adj] == [{"micro_batch": [8, 4], "grad_accum": [1, 2]},
                                               {"micro_batch": [4, 2], "grad_accum": [2, 4]}]
        manifest = json.loads((cli.tmp / "ws" / "artifacts" / key[:2] / key / "manifest.json").read_text())
        assert manifest["effective_params"]["micro_batch"] == 2
        assert manifest["params"]["micro_batch"] == 8
    st = status_json(cli)
    assert any(r["adjustments"] for r in st["runs"].values())


def test_oom_policy_exhausted_fails_clearly(cli, make_study):
    study = make_study(params="oom_above = 0")
    p = cli("run", study, check=1)
    assert "OOM policy has nothing left" in p.stdout


def test_corrupted_artifact_is_detected_and_rerun(cli, make_study):
    study = make_study()
    cli("run", study, check=0)
    st = status_json(cli)
    key = next(k for k, r in st["runs"].items() if r["stage"] == "score")
    f = cli.tmp / "ws" / "artifacts" / key[:2] / key / "item_scores.parquet"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    before = ends(cli)
    cli("run", study, check=0)
    after = ends(cli)
    assert after - before == Counter({("score", key[:12]): 1})
    assert (cli.tmp / "ws" / "corrupt").exists()


def test_gpu_request_without_gpus_fails_with_advice(cli, make_study):
    study = make_study(extra="\n[resources.work]\ngpus = 1\n")
    env_has_gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
    cli.env["CUDA_VISIBLE_DEVICES"] = ""
    p = cli("run", study, check=1)
    assert "asks for 1 GPU(s); this machine has 0" in p.stdout
    del env_has_gpu


def test_gpu_stages_get_one_gpu_each_and_never_share_it(cli, make_study):
    """Two (pretend) GPUs, four runs of a one-GPU stage: each run sees only its GPU through
    CUDA_VISIBLE_DEVICES and gets device "cuda"; runs that overlap in time hold different GPUs."""
    study = make_study(params="sleep = 1.0\nsteps = 2", better="steps = 3",
                       extra="\n[resources.work]\ngpus = 1\ncpus = 0.5\n")
    cli.env["CUDA_VISIBLE_DEVICES"] = "3,5"
    cli("run", study, check=0)
    st = status_json(cli)
    runs = []
    for key, r in st["runs"].items():
        if r["stage"] == "work":
            m = json.loads((cli.tmp / "ws" / "artifacts" / key[:2] / key / "manifest.json")
                           .read_text())
            runs.append((m["started_at"], m["ended_at"], m["summary"]))
    assert len(runs) == 4
    assert {s["device"] for _, _, s in runs} == {"cuda"}
    assert {s["visible_gpus"] for _, _, s in runs} == {"3", "5"}
    overlaps = 0
    for i, (a0, a1, sa) in enumerate(runs):
        for b0, b1, sb in runs[i + 1:]:
            if a0 < b1 and b0 < a1:  # overlapping in time
                overlaps += 1
                assert sa["visible_gpus"] != sb["visible_gpus"]
    assert overlaps >= 1  # two GPUs, two CPU slots: the runs did go two at a time


def _running_work(cli):
    p = cli("status", "--json", check=0)
    studies = json.loads(p.stdout)["studies"]
    if not studies:
        return None
    st = studies[0]
    for r in st["runs"].values():
        if r["stage"] == "work" and r["state"] == "running" and (r["progress"] or 0) >= 3:
            return r
    return None


def test_detach_lock_stop_and_resume(cli, make_study):
    study = make_study(params="sleep = 24\nsteps = 240")
    p = cli("run", study, "--detach", "--json", check=0)
    started = json.loads(p.stdout)
    assert started["detached"] and started["study"] == "study" and started["pid"] > 0
    wait_for(lambda: _running_work(cli))
    # a second run on the same study refuses: it does not touch the store
    p = cli("run", study, check=3)
    assert "already running" in p.stderr
    p = cli("stop", "study", "--json", check=0)
    assert [s["study"] for s in json.loads(p.stdout)["stopped"]] == ["study"]
    st = status_json(cli)
    assert st["supervisor"] is None
    bad = [r for r in st["runs"].values() if r["state"] in ("running", "lost")]
    assert not bad, bad
    p = cli("stop", check=3)
    assert "nothing to stop" in p.stderr
    cli("run", study, check=0)
    st = status_json(cli)
    assert st["totals"] == {"done": 7, "total": 7}
    assert all(v == 1 for v in ends(cli).values())


def test_kill_supervisor_then_resume_from_checkpoint(cli, make_study):
    study = make_study(params="sleep = 12\nsteps = 120")
    cli("run", study, "--detach", check=0)
    running = wait_for(lambda: _running_work(cli))
    sup = json.loads((cli.tmp / "ws" / "studies" / "study" / "supervisor.json").read_text())
    os.kill(sup["pid"], signal.SIGKILL)
    # the orphaned worker notices its parent is gone and ends; status then says `lost`
    st = wait_for(lambda: (lambda s: s if s["runs"][running["key"]]["state"] == "lost" else None)(
        status_json(cli)), timeout=60)
    assert st["supervisor"] is None
    # the report's progress counts by status's rule: that record still says running, it is lost
    from fairtrial.app.resolve import open_store, open_workspace
    from fairtrial.collect import gather
    from fairtrial.spec import load_spec

    # (once every orphaned worker has ended: then the states hold still)
    settled = wait_for(lambda: (lambda s: s if not any(r["state"] == "running"
                                                       for r in s["runs"].values()) else None)(
        status_json(cli)), timeout=60)
    ws = open_workspace(cli.tmp / "ws")
    store = open_store(ws)
    try:
        progress = gather(ws, store, load_spec(study))["progress"]
    finally:
        store.dispose()
    lost = sum(r["state"] == "lost" for r in settled["runs"].values())
    assert lost >= 1 and progress.get("lost") == lost and "running" not in progress, progress
    cli("run", study, check=0)
    st = status_json(cli)
    assert st["totals"] == {"done": 7, "total": 7}
    # every stage run finished exactly once, and there is exactly one record per key
    assert all(v == 1 for v in ends(cli).values()) and len(ends(cli)) == 7
    assert db_rows(cli, "select count(*), count(distinct key) from stage_runs")[0] == (7, 7)
    key = running["key"]
    m = json.loads((cli.tmp / "ws" / "artifacts" / key[:2] / key / "manifest.json").read_text())
    assert m["summary"]["resumed"] >= 1  # resumed from its checkpoint, not restarted
    outcomes = [o for (o,) in db_rows(cli, f"select outcome from attempts where key='{key}'")]
    assert outcomes == ["lost", "done"]


def test_kill_worker_mid_stage_resumes(cli, make_study):
    study = make_study(params="sleep = 12\nsteps = 120")
    exe = Path(sys.executable).parent / "fairtrial"
    proc = subprocess.Popen([str(exe), "run", str(study), "--quiet"], cwd=cli.tmp, env=cli.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    running = wait_for(lambda: _running_work(cli))
    (pid,) = db_rows(cli, f"select pid from stage_runs where key='{running['key']}'")[0]
    os.kill(pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert all(v == 1 for v in ends(cli).values()) and len(ends(cli)) == 7
    outcomes = [o for (o,) in db_rows(cli, f"select outcome from attempts where key='{running['key']}'")]
    assert outcomes == ["lost", "done"]


def test_recipes_and_version_as_json(cli):
    rows = json.loads(cli("recipes", "--json", check=0).stdout)["recipes"]
    ilm = next(r for r in rows if r["name"] == "ilm")
    assert [s["name"] for s in ilm["stages"]][:2] == ["prepare", "tokenizer"]
    assert {"name": "infill_ppl", "direction": "lower", "aggregation": "geomean"} in ilm["metrics"]
    v = json.loads(cli("version", "--json", check=0).stdout)
    assert v["fairtrial"] and v["code_version"].startswith(v["fairtrial"])
    assert v["libraries"]["torch"]
