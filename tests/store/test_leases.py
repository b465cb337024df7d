"""Leases, the rows that say who runs a stage run now, on SQLite and PostgreSQL: one holder at a
time, also when several supervisors race for one key (threads with their own connections)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from fairtrial.store.db import Store
from tests.store.conftest import record

KEY, OTHER = "k" * 64, "o" * 64


def take(store: Store, token: str, key: str = KEY, dead: bool = False, host: str = "h1"):
    """`dead`: the holder found is dead, unless it is one of the racers (tokens t0, t1, ...)."""
    return store.try_lease(key, token, study="s", host=host, pid=10, pid_started=1.0,
                           holder_dead=lambda row: dead and not row["token"].startswith("t"))


def test_one_holder_at_a_time_and_takeover_only_of_a_dead_one(store):
    assert take(store, "a") is None
    assert take(store, "a") is None  # already ours
    held = take(store, "b")
    assert (held["token"], held["study"], held["host"], held["pid"]) == ("a", "s", "h1", 10)
    assert take(store, "b", dead=True) is None  # a dead holder is replaced
    lease = store.get_lease(KEY)
    assert lease["token"] == "b" and lease["worker_pid"] is None
    store.release_lease(KEY, "a")  # not a's any more: nothing happens
    assert store.get_lease(KEY)["token"] == "b"
    store.release_lease(KEY, "b")
    assert store.get_lease(KEY) is None and store.get_leases() == {}


def test_only_the_holder_sets_its_worker_renews_and_releases(store):
    take(store, "a")
    take(store, "a", key=OTHER)
    take(store, "b", key="x" * 64)
    before = store.get_leases()
    store.set_lease_worker(KEY, "b", 99, 9.0)  # not b's lease
    assert store.get_lease(KEY)["worker_pid"] is None
    store.set_lease_worker(KEY, "a", 42, 4.0)
    assert (store.get_lease(KEY)["worker_pid"], store.get_lease(KEY)["worker_started"]) == (42, 4.0)
    store.renew_leases("a")
    after = store.get_leases()
    assert after[OTHER]["renewed_at"] > before[OTHER]["renewed_at"]
    assert after["x" * 64]["renewed_at"] == before["x" * 64]["renewed_at"]
    store.release_lease(None, "a")  # all of a's leases, none of b's
    assert sorted(store.get_leases()) == ["x" * 64]


def test_the_task_records_where_it_runs(store):
    store.ensure_runs([record(KEY)], "s")
    take(store, "a")
    store.start_attempt(KEY, "s", None, None)
    store.set_run_process(KEY, "a", 4242, "h1", 5.0)
    run = store.get_run(KEY)
    assert (run["pid"], run["host"], run["state"]) == (4242, "h1", "running")
    assert [(a["pid"], a["host"]) for a in store.get_attempts(KEY)] == [(4242, "h1")]
    lease = store.get_lease(KEY)
    assert (lease["worker_pid"], lease["worker_started"]) == (4242, 5.0)
    # a task on another host than its supervisor: its pid means nothing to the lease's host
    store.set_run_process(KEY, "a", 99, "h2", 6.0)
    assert store.get_run(KEY)["host"] == "h2"
    assert store.get_lease(KEY)["worker_pid"] == 4242
    # a task that does not hold the lease never writes it
    store.set_run_process(KEY, "zzz", 7, "h1", 7.0)
    assert store.get_lease(KEY)["worker_pid"] == 4242


def _race(store_url: str, n: int, dead: bool) -> tuple[list, dict]:
    """n supervisors (each its own Store) try to take KEY at the same moment."""
    stores = [Store(store_url) for _ in range(n)]
    start = threading.Barrier(n)

    def one(i):
        start.wait(10)
        return take(stores[i], f"t{i}", dead=dead)

    try:
        with ThreadPoolExecutor(n) as ex:
            results = list(ex.map(one, range(n)))
        return results, stores[0].get_lease(KEY)
    finally:
        for s in stores:
            s.dispose()


def test_of_supervisors_racing_for_a_free_key_exactly_one_wins(store_url):
    results, lease = _race(store_url, 4, dead=False)
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1, results
    assert lease["token"] == f"t{winners[0]}"
    assert all(r["token"] == lease["token"] for r in results if r is not None), results


def test_of_supervisors_racing_to_replace_a_dead_holder_exactly_one_wins(store_url):
    s = Store(store_url)
    take(s, "dead")
    s.dispose()
    results, lease = _race(store_url, 4, dead=True)
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1, results
    assert lease["token"] == f"t{winners[0]}"
