"""The record store's studies, cells, stage runs, attempts and heartbeats, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fairtrial.store.db import IMPORT_STAGE, Store
from tests.store.conftest import record

A, B, C = "a" * 64, "b" * 64, "c" * 64


def test_opening_a_store_again_keeps_its_rows(store_url):
    s = Store(store_url)
    s.ensure_runs([record(A)], "s")
    s.dispose()
    s = Store(store_url)
    try:
        assert s.get_run(A)["stage"] == "work"
    finally:
        s.dispose()


def test_a_study_is_inserted_then_updated_and_listed_by_name(store):
    store.upsert_study("zeta", "/x/zeta.toml", "_test", "d1", {"replicates": [0, 1]})
    store.upsert_study("alpha", "/x/alpha.toml", "_test", "d2", {"where": Path("/tmp/p")})
    store.upsert_study("zeta", "/y/zeta.toml", "_test", "d3", {"replicates": [0, 1, 2]})
    z = store.get_study("zeta")
    assert (z["path"], z["spec_digest"], z["spec"]) == ("/y/zeta.toml", "d3", {"replicates": [0, 1, 2]})
    assert store.get_study("alpha")["spec"] == {"where": "/tmp/p"}  # non-JSON values as text
    assert [s["name"] for s in store.list_studies()] == ["alpha", "zeta"]
    assert store.get_study("nope") is None


def test_cells_are_replaced_per_study_and_imports_per_arm(store):
    store.set_cells("s", [("base", 0, "work", A), ("base", 1, "work", B)])
    store.set_cells("other", [("base", 0, "work", A)])
    store.set_cells("s", [("base", 0, IMPORT_STAGE, C), ("new", 0, IMPORT_STAGE, C)],
                    stage=IMPORT_STAGE)
    cells = lambda st: sorted((c["arm"], c["replicate"], c["stage"], c["key"])
                              for c in store.get_cells(st))
    assert cells("s") == [("base", 0, "import", C), ("base", 0, "work", A), ("base", 1, "work", B),
                          ("new", 0, "import", C)]
    # a new plan replaces the planned cells, never the imports
    store.set_cells("s", [("base", 0, "work", B)])
    assert cells("s") == [("base", 0, "import", C), ("base", 0, "work", B), ("new", 0, "import", C)]
    # importing one arm again replaces that arm's imports only
    store.set_cells("s", [("new", 1, IMPORT_STAGE, A)], stage=IMPORT_STAGE)
    assert cells("s") == [("base", 0, "import", C), ("base", 0, "work", B), ("new", 1, "import", A)]
    store.set_cells("s", [])
    store.set_cells("s", [], stage=IMPORT_STAGE)  # no arm imported: no import replaced
    assert cells("s") == [("base", 0, "import", C), ("new", 1, "import", A)]
    assert cells("other") == [("base", 0, "work", A)]


def test_ensure_runs_inserts_each_key_once_and_keeps_what_is_known(store):
    store.ensure_runs([record(A), record(B, stage="score")], "first")
    store.update_run(A, state="done", duration_s=2.0)
    store.ensure_runs([record(A), record(C)], "second")
    runs = store.get_runs()
    assert sorted(runs) == [A, B, C]
    assert (runs[A]["state"], runs[A]["study"], runs[A]["duration_s"]) == ("done", "first", 2.0)
    assert (runs[C]["state"], runs[C]["study"], runs[C]["attempts"]) == ("pending", "second", 0)
    assert runs[B]["params"] == {"steps": 3} and runs[B]["needs"] == {}
    assert sorted(store.get_runs([A, C, "z" * 64])) == [A, C]
    assert store.get_run("z" * 64) is None
    store.ensure_runs([], "third")  # an empty plan: nothing to insert, nothing to read
    assert store.get_runs([]) == {} and len(store.get_runs()) == 3


def test_a_plan_of_more_than_900_runs(store):
    """Past 900 keys the store reads every row instead of an IN list (SQLite's variable limit)."""
    keys = [f"{i:064x}" for i in range(950)]
    store.ensure_runs([record(k) for k in keys[:10]], "s")
    store.update_run(keys[0], state="done")
    store.ensure_runs([record(k) for k in keys], "s")
    runs = store.get_runs(keys)
    assert len(runs) == 950 and runs[keys[0]]["state"] == "done"
    assert len(store.get_runs(keys[:-1])) == 949


def test_attempts_are_counted_on_the_run_and_logged_once_each(store):
    store.ensure_runs([record(A)], "s")
    assert store.start_attempt(A, "s", 11, "h1") == 1
    store.update_run(A, progress_done=5, progress_total=10, message="half", rate=1.5)
    store.end_attempt(A, "oom", error="CUDA out of memory", state="failed",
                      adjustments=[{"batch_size": 4}])
    n = store.start_attempt(A, "s", 12, "h2", effective_params={"batch_size": 4})
    run = store.get_run(A)
    assert n == 2 and run["attempts"] == 2
    # a new attempt starts from a clean row: no progress, error or end of the last one
    assert (run["state"], run["pid"], run["host"], run["error"], run["ended_at"]) == \
        ("running", 12, "h2", None, None)
    assert (run["progress_done"], run["message"], run["rate"]) == (None, None, None)
    assert run["effective_params"] == {"batch_size": 4}
    assert run["adjustments"] == [{"batch_size": 4}]
    store.end_attempt(A, "done", state="done", duration_s=3.5)
    store.end_attempt(A, "lost", error="late")  # no open attempt: a closed one is never rewritten
    log = store.get_attempts(A)
    assert [(a["attempt"], a["pid"], a["host"], a["outcome"], a["error"]) for a in log] == \
        [(1, 11, "h1", "oom", "CUDA out of memory"), (2, 12, "h2", "done", None)]
    assert all(a["ended_at"] >= a["started_at"] for a in log)
    assert store.get_run(A)["state"] == "done"
    assert store.get_attempts("z" * 64) == [] and len(store.get_attempts()) == 2


def test_heartbeats_and_progress_are_what_status_reads(store):
    store.ensure_runs([record(A), record(B)], "s")
    store.start_attempt(A, "s", 11, "h1")
    beat = time.time() + 5
    store.update_run(A, heartbeat_at=beat, progress_done=3, progress_total=8, progress_unit="step",
                     rate=0.5, message="training")
    store.update_run(B, adjustments=[{"batch_size": 2}])
    rows = store.status_rows()
    assert sorted(rows) == [A, B]
    a = rows[A]
    assert a["heartbeat_at"] == pytest.approx(beat)
    assert (a["state"], a["attempts"], a["pid"], a["host"]) == ("running", 1, 11, "h1")
    assert (a["progress_done"], a["progress_total"], a["progress_unit"], a["rate"], a["message"]) \
        == (3, 8, "step", 0.5, "training")
    assert a["adjustments"] is None and rows[B]["adjustments"] == [{"batch_size": 2}]


def test_status_rows_read_no_back_off_the_same_on_both_backends(store):
    """A run whose list of OOM back-offs is empty reads as None, as SQLite's fast reader gives it."""
    store.ensure_runs([record(A)], "s")
    store.update_run(A, adjustments=[])
    assert store.status_rows()[A]["adjustments"] is None


def test_durations_of_finished_runs_per_stage_of_one_recipe(store):
    store.ensure_runs([record(A), record(B), record(C, stage="score"),
                       record("d" * 64, recipe="ilm")], "s")
    store.update_run(A, duration_s=1.5)
    store.update_run(B, duration_s=2.5)
    store.update_run(C, duration_s=0.25)
    store.update_run("d" * 64, duration_s=9.0)
    d = store.durations("_test")
    assert {k: sorted(v) for k, v in d.items()} == {"work": [1.5, 2.5], "score": [0.25]}
