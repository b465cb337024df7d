"""The fault-injection suite: concurrent studies on one workspace, corruption of every kind, and a
seeded chaos run of `kill -9`s. Each case is run the way a user meets it: the installed CLI on real
study files. `FAIRTRIAL_SOAK=1` makes the chaos run long (many more kills)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from tests.conftest import calls, db_rows

EXE = Path(sys.executable).parent / "fairtrial"


def _status(cli) -> dict:
    out = json.loads(cli("status", "--json", check=0).stdout)
    return {s["study"]: s for s in out["studies"]}


def _commits(cli) -> Counter:
    """key -> how many times an artifact was committed for it (the worker logs each commit)."""
    n = Counter()
    for log in (cli.tmp / "ws" / "logs").glob("*.log"):
        n[log.stem] = log.read_text(errors="replace").count("committed artifact")
    return n


def _artifact(cli, key: str) -> Path:
    return cli.tmp / "ws" / "artifacts" / key[:2] / key


def _assert_all_verified_once(cli, study: str, expect_runs: int) -> None:
    st = _status(cli)[study]
    assert st["totals"]["total"] == expect_runs
    assert st["totals"].get("done", 0) + st["totals"].get("cached", 0) == expect_runs, st["totals"]
    v = json.loads(cli("status", study, "--verify", "--json", check=0).stdout)["studies"][0]
    assert v["totals"].get("done", 0) + v["totals"].get("cached", 0) == expect_runs
    commits = _commits(cli)
    for key in st["runs"]:
        assert commits[key] == 1, (key, commits[key])
    # no attempt is left open and no lease is left held once every supervisor has ended
    assert db_rows(cli, "select count(*) from attempts where ended_at is null") == [(0,)]
    assert db_rows(cli, "select count(*) from leases") == [(0,)]


# ------------------------------------------------------------- two studies at once
@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_two_studies_sharing_stage_runs_started_at_once(cli, make_study, db, request):
    """Two copies of one study (4 arms x 2 seeds) under different names, started at the same time
    in one workspace: every shared stage run runs once, in one of them; the other waits for it and
    takes it as cached. Before stage-run leases the second study failed 8 of 8 work runs. The
    lease is a database row, so the same holds on a shared PostgreSQL store."""
    if db == "postgres":  # a fresh database of its own (skipped without a server)
        pg = request.getfixturevalue("pg_url")
        cli.env["FAIRTRIAL_DB_URL"] = pg
    arms = "\n".join(f'[[arms]]\nname = "a{i}"\neffect = {i / 10}\nsteps = {15 + i}\n'
                     for i in range(4))
    body = ('question = "q"\nrecipe = "_test"\nreplicates = [0, 1]\ncontrol = "a0"\n'
            '[endpoint]\nmetric = "score"\n[params]\nsleep = 1.5\n' + arms)
    s1 = make_study('name = "one"\n' + body, name="one.toml")
    s2 = make_study('name = "two"\n' + body, name="two.toml")
    procs = [subprocess.Popen([str(EXE), "run", str(s), "--json"], cwd=cli.tmp, env=cli.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for s in (s1, s2)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, (out, err)
        assert json.loads(out)["ok"], out
    res = [json.loads(o) for o, _ in outs]
    # 1 source + 8 work + 8 score = 17 stage runs, each run by exactly one of the two studies
    assert [r["stage_runs"] for r in res] == [17, 17]
    assert res[0]["run"] + res[1]["run"] == 17, res
    ran = Counter((s, k) for s, k, ev in calls(cli.tmp) if ev == "end")
    assert len(ran) == 17 and set(ran.values()) == {1}, ran
    assert not (cli.tmp / "ws" / "corrupt").exists()
    if db == "postgres":
        assert not (cli.tmp / "ws" / "fairtrial.db").exists()
        from sqlalchemy import create_engine, text

        with create_engine(pg).connect() as c:
            assert c.execute(text("select count(*) from attempts where outcome != 'done' "
                                  "or ended_at is null")).scalar() == 0
            assert c.execute(text("select count(*) from leases")).scalar() == 0
        return
    assert db_rows(cli, "select count(*) from attempts where outcome != 'done'") == [(0,)]
    _assert_all_verified_once(cli, "one", 17)
    _assert_all_verified_once(cli, "two", 17)


# ------------------------------------------------------------- corruption, then run / report
def _keys(cli, stage: str) -> list[str]:
    return sorted(k for k, r in _status(cli)["study"]["runs"].items() if r["stage"] == stage)


def _flip_byte_keep_mtime(path: Path) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the modification time put back


def _report_json(cli, study) -> dict:
    return json.loads(cli("report", study, "--json", "--resamples", "500", check=0).stdout)


def test_changed_byte_with_mtime_restored_is_found_repaired_and_never_reported(cli, make_study):
    study = make_study()
    cli("run", study, check=0)
    good = _report_json(cli, study)
    key = _keys(cli, "score")[0]
    _flip_byte_keep_mtime(_artifact(cli, key) / "item_scores.parquet")
    # plain status already sees it (the file's ctime moved), and says why
    st = _status(cli)["study"]["runs"][key]
    assert st["state"] == "lost" and "digest mismatch" in st["error"], st
    # the report does not use it: partial, never a silently different interval
    partial = _report_json(cli, study)
    assert partial["headline"].startswith("PARTIAL REPORT"), partial["headline"]
    # `run` quarantines and reruns exactly that stage run
    before = Counter((s, k) for s, k, ev in calls(cli.tmp) if ev == "end")
    p = cli("run", study, check=0)
    assert "1 run, 6 cached" in p.stdout, p.stdout
    after = Counter((s, k) for s, k, ev in calls(cli.tmp) if ev == "end")
    assert after - before == Counter({("score", key[:12]): 1})
    assert any(d.name.startswith(key) for d in (cli.tmp / "ws" / "corrupt").iterdir())
    again = _report_json(cli, study)
    assert again["headline"] == good["headline"]


@pytest.mark.parametrize("damage", ["truncate", "manifest"])
def test_truncated_file_or_bad_manifest_is_not_done(cli, make_study, damage):
    study = make_study()
    cli("run", study, check=0)
    key = _keys(cli, "score")[1]
    folder = _artifact(cli, key)
    if damage == "truncate":
        f = folder / "item_scores.parquet"
        f.write_bytes(f.read_bytes()[:100])
    else:
        (folder / "manifest.json").write_text('{"key": "' + key[:20])
    st = _status(cli)["study"]
    assert st["runs"][key]["state"] == "lost"
    assert st["runs"][key]["error"], "a lost run says why"
    p = cli("run", study, check=0)
    assert "1 run, 6 cached" in p.stdout
    assert _status(cli)["study"]["totals"] == {"done": 7, "total": 7}


def test_report_before_any_run_does_not_claim_running(cli, make_study):
    study = make_study()
    cli("run", study, check=0)
    for key in _keys(cli, "score")[:2]:
        import shutil

        shutil.rmtree(_artifact(cli, key))
    head = _report_json(cli, study)["headline"]
    assert head.startswith("PARTIAL REPORT, study incomplete (5 of 7 stage runs done)"), head
    assert "running" not in head.split(":")[0]


def _rewrite_artifact(cli, key: str, fname: str, text: str) -> None:
    """Replace a file of a committed artifact and re-commit it with a consistent manifest: what a
    non-deterministic upstream stage gives when it is run again."""
    from fairtrial.store import artifacts
    from fairtrial.workspace import Workspace

    ws = Workspace(cli.tmp / "ws")
    folder = _artifact(cli, key)
    m = artifacts.read_manifest(folder)
    tmp = cli.tmp / "redo"
    import shutil

    shutil.copytree(folder, tmp)
    (tmp / "manifest.json").unlink()
    (tmp / fname).write_text(text)
    shutil.rmtree(folder)
    artifacts.commit(ws, key, tmp, {k: v for k, v in m.items() if k not in ("files", "key")})


def test_upstream_redone_differently_reruns_downstream(cli, make_study):
    study = make_study()
    cli("run", study, check=0)
    (src,) = _keys(cli, "source")
    _rewrite_artifact(cli, src, "data.json", json.dumps({"values": [5.0, 6.0, 7.0]}))
    before = Counter((s, k) for s, k, ev in calls(cli.tmp) if ev == "end")
    p = cli("run", study, check=0)
    after = Counter((s, k) for s, k, ev in calls(cli.tmp) if ev == "end")
    # both work runs and the four score runs below them are made again from the new source
    assert Counter(s for s, _ in after - before) == Counter({"work": 2, "score": 4}), p.stdout
    assert "made from other inputs" in p.stdout


def test_upstream_redone_the_same_keeps_downstream(cli, make_study):
    """A deterministic upstream deleted and run again gives the same content: what was made from
    it stays valid (input digests are content digests, not file times)."""
    study = make_study()
    cli("run", study, check=0)
    import shutil

    (src,) = _keys(cli, "source")
    shutil.rmtree(_artifact(cli, src))
    before = Counter((s, k) for s, k, ev in calls(cli.tmp) if ev == "end")
    p = cli("run", study, check=0)
    after = Counter((s, k) for s, k, ev in calls(cli.tmp) if ev == "end")
    assert after - before == Counter({("source", src[:12]): 1}), p.stdout
    assert "1 run, 6 cached" in p.stdout


# ------------------------------------------------------------- the chaos run
CHAOS_STUDY = """\
question = "chaos"
recipe = "_test"
replicates = [0, 1]
control = "a0"
[endpoint]
metric = "score"
[params]
sleep = {sleep}
[[arms]]
name = "a0"
steps = 20
[[arms]]
name = "a1"
steps = 21
effect = 0.2
[[arms]]
name = "a2"
steps = 22
effect = 0.4
"""


def _work_results(ws: Path) -> dict:
    out = {}
    for m in ws.glob("artifacts/*/*/manifest.json"):
        man = json.loads(m.read_text())
        if man.get("stage") == "work":
            model = json.loads((m.parent / "model.json").read_text())
            out[(man["effective_params"]["steps"], man["seed"])] = (model["step"], model["acc"])
    return out


def test_chaos_kill9_supervisors_and_workers_then_resume(cli, make_study):
    """Seeded random `kill -9` of the supervisor or one of its workers while the study runs,
    then resumed until done: every stage run is committed exactly once, every artifact verifies,
    no attempt stays open, and the trained results equal an undisturbed run's. FAIRTRIAL_SOAK=1
    runs 48 kills instead of 6."""
    soak = os.environ.get("FAIRTRIAL_SOAK") == "1"
    rng = random.Random(int(os.environ.get("FAIRTRIAL_CHAOS_SEED", "20261129")))
    n_kills = 48 if soak else 6
    study = make_study(CHAOS_STUDY.format(sleep=3.0 if not soak else 12.0), name="chaos.toml")
    kills = Counter()
    sup = None
    deadline = time.time() + (3600 if soak else 240)
    while sum(kills.values()) < n_kills and time.time() < deadline:
        if sup is None or sup.poll() is not None:
            if sup is not None and sup.returncode == 0:
                break  # it finished between kills
            sup = subprocess.Popen([str(EXE), "run", str(study), "--quiet"], cwd=cli.tmp,
                                   env=cli.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.8, 3.0))
        if sup.poll() is not None:
            continue
        try:
            workers = [c for c in psutil.Process(sup.pid).children(recursive=True)
                       if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        except psutil.NoSuchProcess:
            continue
        if workers and rng.random() < 0.5:
            victim = rng.choice(workers)
            kills["worker"] += 1
        else:
            victim = psutil.Process(sup.pid)
            kills["supervisor"] += 1
        try:
            os.kill(victim.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if victim.pid == sup.pid:
            sup.wait(timeout=30)
    if sup is not None and sup.poll() is None:
        sup.wait(timeout=300)
    for _ in range(3):  # resume until done (a run killed three times fails; the next run retries)
        p = cli("run", study, "--json", timeout=300)
        if json.loads(p.stdout)["ok"]:
            break
    assert json.loads(p.stdout)["ok"], p.stdout
    assert sum(kills.values()) >= (n_kills if not soak else 1), kills
    _assert_all_verified_once(cli, "chaos", 13)
    assert not list((cli.tmp / "ws" / "tmp").iterdir()), "temporary folders left behind"
    # the results equal an undisturbed run's (resumed from checkpoints, not re-seeded)
    clean = make_study(CHAOS_STUDY.format(sleep=0.0), name="clean.toml")
    env = dict(cli.env, FAIRTRIAL_WORKSPACE=str(cli.tmp / "clean_ws"))
    subprocess.run([str(EXE), "run", str(clean), "--quiet"], cwd=cli.tmp, env=env, check=True,
                   timeout=300)
    assert _work_results(cli.tmp / "ws") == _work_results(cli.tmp / "clean_ws")
    # no traceback reached a supervisor's log or a stage log (BrokenPipe from orphans, say)
    for log in (cli.tmp / "ws").rglob("*.log"):
        text = log.read_text(errors="replace")
        assert "BrokenPipeError" not in text, log


def test_run_committed_by_an_orphaned_worker_is_closed_not_rerun(cli, make_study):
    """A worker whose supervisor was killed can commit in the half second before it notices. What it
    leaves: a verified artifact, a record still `running`, an open attempt and a lease held by dead
    processes. The next run closes that attempt as done and does not run the stage again."""
    study = make_study()
    cli("run", study, check=0)
    key = _keys(cli, "work")[0]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    con = sqlite3.connect(cli.tmp / "ws" / "fairtrial.db")
    with con:
        con.execute("update stage_runs set state='running', pid=? where key=?", (dead.pid, key))
        con.execute("insert into attempts (key, attempt, study, pid, host, started_at) "
                    "values (?, 2, 'study', ?, ?, ?)", (key, dead.pid, os.uname().nodename,
                                                        time.time()))
        con.execute("insert into leases (key, token, study, host, pid, worker_pid, acquired_at, "
                    "renewed_at) values (?, 'old', 'study', ?, ?, ?, ?, ?)",
                    (key, os.uname().nodename, dead.pid, dead.pid, time.time(), time.time()))
    con.close()
    before = len(calls(cli.tmp))
    p = cli("run", study, check=0)
    assert len(calls(cli.tmp)) == before, "the committed stage ran again"
    assert "0 run, 7 cached" in p.stdout
    rows = db_rows(cli, f"select attempt, outcome from attempts where key='{key}' order by id")
    assert rows[-1] == (2, "done"), rows
    assert db_rows(cli, "select count(*) from leases") == [(0,)]
    assert db_rows(cli, f"select state from stage_runs where key='{key}'") == [("done",)]


def test_worker_whose_supervisor_is_gone_ends_quietly(tmp_path):
    """The worker's answer to a dead supervisor (a broken pipe) ends it without a traceback."""
    import multiprocessing as mp

    from fairtrial.engine import worker

    parent, child = mp.Pipe()
    sent = []

    def fake_run_task(task, store, ws, hb):
        parent.close()  # the supervisor dies while the stage runs
        sent.append(task)
        return {"key": task["key"], "outcome": "done"}

    class Conn:
        def __init__(self):
            self.n = 0

        def recv(self):
            self.n += 1
            if self.n > 1:
                raise AssertionError("the worker went on after its supervisor was gone")
            return {"key": "k" * 64}

        def send(self, obj):
            child.send(obj)  # raises BrokenPipeError: the other end is closed

    orig = worker.run_task
    worker.run_task = fake_run_task
    try:
        worker.worker_main(Conn(), {}, str(tmp_path / "ws"), f"sqlite:///{tmp_path / 'db'}")
    finally:
        worker.run_task = orig
    assert len(sent) == 1


def _open_store(url: str, q) -> None:
    from fairtrial.store.db import Store

    try:
        Store(url).dispose()
        q.put("ok")
    except Exception as e:  # noqa: BLE001 - reported to the test
        q.put(repr(e))


def test_supervisors_starting_on_a_fresh_database_at_once(tmp_path):
    """Several processes opening a new record store at the same moment all succeed (before, one
    found "table ... already exists" between its check and its CREATE, in about 4 of 10 tries)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    for i in range(6):
        url = f"sqlite:///{tmp_path}/r{i}.db"
        q = ctx.Queue()
        procs = [ctx.Process(target=_open_store, args=(url, q)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [q.get(timeout=5) for _ in procs] == ["ok"] * 3
