"""The scheduler as a pure state machine, on plain integers (no processes, no store, no clock)."""

from __future__ import annotations

import pytest

from fairtrial.engine.scheduler import Scheduler

#   0 -> 1 -> 3
#   0 -> 2 -> 3,   4 (independent)
GRAPH = {0: [], 1: [0], 2: [0], 3: [1, 2], 4: []}


def fresh(**kw) -> Scheduler[int]:
    s = Scheduler(GRAPH, **kw)
    for k in GRAPH:
        s.set_waiting(k)
    return s


def run_all_ready(s: Scheduler[int], now: float = 0.0) -> list[int]:
    s.advance(now)
    ks = s.ready()
    for k in ks:
        s.start(k)
    return ks


def test_ready_follows_the_graph_in_plan_order():
    s = fresh()
    assert run_all_ready(s) == [0, 4]
    assert s.ready() == [] and s.active == 5
    s.finish(0, "done", 0)
    assert run_all_ready(s) == [1, 2]
    s.finish(1, "done", 0)
    assert run_all_ready(s) == []  # 3 still needs 2
    s.finish(2, "done", 0)
    s.finish(4, "done", 0)
    assert run_all_ready(s) == [3]
    s.finish(3, "done", 0)
    assert s.advance(0) == [] and s.active == 0
    assert sorted(s.in_state("done")) == [0, 1, 2, 3, 4]


def test_done_upstream_from_the_store_makes_downstream_ready_at_once():
    s = Scheduler(GRAPH)
    s.set_done(0)
    for k in (1, 2, 3, 4):
        s.set_waiting(k)
    assert run_all_ready(s) == [1, 2, 4]


def test_failure_skips_everything_downstream_and_nothing_else():
    s = fresh()
    run_all_ready(s)
    s.finish(0, "done", 0)
    run_all_ready(s)
    d = s.finish(1, "failed", 0)
    assert (d.action, d.state) == ("failed", "failed")
    assert s.advance(0) == [3]  # one failed upstream is enough, though 2 still runs
    s.finish(2, "done", 0)
    s.finish(4, "done", 0)
    assert s.advance(0) == []
    assert s.state[3] == "skipped" and s.state[4] == "done" and s.active == 0


def test_transient_retries_with_exponential_back_off_then_fails():
    s = Scheduler({7: []}, backoff_s=1.0)
    s.set_waiting(7)
    now = 100.0
    for attempt, delay in ((1, 1.0), (2, 2.0)):
        assert run_all_ready(s, now) == [7]
        d = s.finish(7, "transient", now, attempt=attempt, max_retries=2)
        assert (d.action, d.delay) == ("retry", delay)
        assert s.next_due() == now + delay
        assert run_all_ready(s, now + delay - 0.01) == []  # not before the back-off ends
        now += delay
    assert run_all_ready(s, now) == [7]
    d = s.finish(7, "transient", now, attempt=3, max_retries=2)
    assert d.action == "failed" and s.active == 0


def test_oom_reruns_at_once_only_when_the_policy_changed_params():
    s = Scheduler({1: []})
    s.set_waiting(1)
    run_all_ready(s)
    assert s.finish(1, "oom", 0, oom_adjusted=True).action == "oom"
    assert run_all_ready(s, 0) == [1]  # no back-off
    assert s.finish(1, "oom", 0, oom_adjusted=False).action == "failed"


def test_lost_runs_again_until_max_lost():
    s = Scheduler({1: [], 2: [1]}, max_lost=3)
    s.set_waiting(1)
    s.set_waiting(2)
    for _ in range(2):
        assert run_all_ready(s) == [1]
        assert s.lost(1).action == "lost"
    assert run_all_ready(s) == [1]
    assert s.lost(1).action == "failed"
    assert s.advance(0) == [2] and s.state[2] == "skipped"


def test_held_by_another_supervisor_is_looked_at_again_after_the_poll():
    s = Scheduler({1: []}, held_poll_s=1.0)
    s.set_waiting(1)
    s.advance(10.0)
    assert s.ready() == [1]
    s.hold(1, 10.0)
    assert run_all_ready(s, 10.5) == []
    s.advance(11.0)
    assert s.ready() == [1]
    s.cached(1)  # the holder finished it
    assert s.state[1] == "done" and s.active == 0


def test_interrupted_run_waits_and_can_start_again():
    s = Scheduler({1: []})
    s.set_waiting(1)
    run_all_ready(s)
    s.interrupt(1)
    assert run_all_ready(s) == [1]


def test_misuse_is_refused():
    s = Scheduler({1: []})
    s.set_waiting(1)
    with pytest.raises(ValueError, match="not ready"):
        s.start(1)
    with pytest.raises(ValueError, match="not running"):
        s.finish(1, "done", 0)
    with pytest.raises(ValueError, match="not in the plan"):
        Scheduler({1: [9]})


def test_a_wide_plan_steps_in_time_linear_in_what_changed():
    n = 20000
    s = Scheduler({i: ([] if i == 0 else [0]) for i in range(n)})
    for i in range(n):
        s.set_waiting(i)
    assert run_all_ready(s) == [0]
    s.finish(0, "done", 0)
    assert len(run_all_ready(s)) == n - 1
    for i in range(1, n):
        s.finish(i, "done", 0)
    assert s.advance(0) == [] and s.active == 0
