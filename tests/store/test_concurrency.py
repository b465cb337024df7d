"""Several processes and supervisors on one record store at once, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp

from sqlalchemy import event

from fairtrial.store.db import Store
from tests.core.test_faults import _open_store
from tests.store.conftest import record

A, B, C = "a" * 64, "b" * 64, "c" * 64


def test_processes_opening_a_fresh_store_at_once_all_succeed(store_url):
    """Supervisors starting together on a new database all create (or find) the tables; on
    PostgreSQL an advisory lock orders them, on SQLite a retry."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_open_store, args=(store_url, q)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [q.get(timeout=5) for _ in procs] == ["ok"] * 3
    s = Store(store_url)
    try:
        s.ensure_runs([record(A)], "s")
        assert list(s.get_runs()) == [A]
    finally:
        s.dispose()


def test_a_study_inserting_runs_another_inserted_a_moment_ago_keeps_its_own(store_url):
    """Two studies whose plans overlap plan at once: study two has read which runs exist, study one
    inserts one of the runs two is about to insert. Two's insert must still add its other runs
    (before, the whole insert failed on the duplicate and two's new run C had no row)."""
    one, two = Store(store_url), Store(store_url)
    armed = []

    @event.listens_for(two.engine, "before_cursor_execute")
    def _between_read_and_insert(conn, cursor, statement, *a):
        if statement.lstrip().upper().startswith("INSERT INTO STAGE_RUNS") and armed:
            armed.clear()
            one.ensure_runs([record(B)], "one")

    try:
        one.ensure_runs([record(A)], "one")
        armed.append(1)
        two.ensure_runs([record(A), record(B, stage="score"), record(C)], "two")
        runs = two.get_runs()
        assert not armed and sorted(runs) == [A, B, C], sorted(runs)
        assert (runs[B]["study"], runs[B]["stage"]) == ("one", "work")  # the first insert stands
        assert runs[C]["study"] == "two"
    finally:
        one.dispose()
        two.dispose()
