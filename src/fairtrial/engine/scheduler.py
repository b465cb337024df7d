"""The scheduler: a pure state machine over the plan's graph and the outcomes so far.

It knows keys and their upstream keys, nothing else: no processes, no store, no clock of its own
(every call that depends on time takes `now`). The supervisor feeds it outcomes and asks it what
is ready; an executor runs what it hands out. Unit-tested on plain integers
(`tests/engine/test_scheduler.py`).

States: waiting -> ready -> running -> done | failed, and back to waiting for a retry (transient
failure, after a back-off), an OOM back-off (at once, with new params), a lost run (its process
died; at most `max_lost` times), a stage run another supervisor holds (looked at again after
`held_poll_s`) or an interrupted one. A waiting run whose upstream failed or was skipped is skipped.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

ACTIVE = ("waiting", "ready", "running")
TERMINAL = ("done", "failed", "skipped")


@dataclass(frozen=True)
class Decision:
    """What the scheduler made of an outcome: `state` is the run's new state; `action` one of
    done | retry | oom | lost | failed; `delay` the back-off before a retry (seconds)."""

    action: str
    state: str
    delay: float = 0.0


class _States(dict):
    """key -> state, with the indexes one step needs so that it costs O(what changed), not O(plan):
    1,000 trivial stage runs must schedule in seconds."""

    def __init__(self, children: Mapping):
        super().__init__()
        self.children = children
        self.dirty: set = set()      # waiting nodes whose readiness may have changed
        self.ready: dict = {}        # an ordered set
        self.active = 0

    def __setitem__(self, key, st: str) -> None:
        old = self.get(key)
        if old in ACTIVE:
            self.active -= 1
        if st in ACTIVE:
            self.active += 1
        super().__setitem__(key, st)
        if st == "ready":
            self.ready[key] = None
        else:
            self.ready.pop(key, None)
        if st == "waiting":
            self.dirty.add(key)
        elif st in TERMINAL:
            self.dirty.update(self.children.get(key, ()))


class Scheduler(Generic[K]):
    def __init__(self, needs: Mapping[K, Iterable[K]], *, backoff_s: float = 1.0,
                 max_lost: int = 3, held_poll_s: float = 1.0):
        self.needs = {k: tuple(v) for k, v in needs.items()}
        children: dict[K, list[K]] = {}
        for k, ups in self.needs.items():
            for u in ups:
                if u not in self.needs:
                    raise ValueError(f"{k!r} needs {u!r}, which is not in the plan")
                children.setdefault(u, []).append(k)
        self.order = {k: i for i, k in enumerate(self.needs)}
        self.state: _States = _States(children)
        self.retry_at: dict[K, float] = {}
        self.lost_count: dict[K, int] = {}
        self.backoff_s = backoff_s
        self.max_lost = max_lost
        self.held_poll_s = held_poll_s

    # ---- the initial sorting (what the store already holds) ----
    def set_done(self, key: K) -> None:
        self.state[key] = "done"

    def set_waiting(self, key: K) -> None:
        self.state[key] = "waiting"

    # ---- one step ----
    def advance(self, now: float) -> list[K]:
        """Move waiting runs whose upstream is done to ready (and due retries back in); returns
        the runs newly skipped because an upstream failed or was skipped (in plan order)."""
        due = [k for k, t in self.retry_at.items() if t <= now]
        for k in due:
            del self.retry_at[k]
        candidates = self.state.dirty.union(due)
        self.state.dirty = set()
        skipped = []
        for key in sorted(candidates, key=self.order.__getitem__):
            if self.state.get(key) != "waiting" or key in self.retry_at:
                continue  # a back-off not over: `due` brings it back
            ups = [self.state[k] for k in self.needs[key]]
            if any(s in ("failed", "skipped") for s in ups):
                self.state[key] = "skipped"
                skipped.append(key)
            elif all(s == "done" for s in ups):
                self.state[key] = "ready"
        return skipped

    def ready(self) -> list[K]:
        return list(self.state.ready)

    @property
    def active(self) -> int:
        """How many runs are not finished (waiting, ready or running)."""
        return self.state.active

    def next_due(self) -> float | None:
        return min(self.retry_at.values(), default=None)

    def in_state(self, st: str) -> list[K]:
        return [k for k, s in self.state.items() if s == st]

    # ---- transitions the supervisor reports ----
    def start(self, key: K) -> None:
        if self.state.get(key) != "ready":
            raise ValueError(f"{key!r} is {self.state.get(key)}, not ready")
        self.state[key] = "running"

    def cached(self, key: K) -> None:
        """Found done (by another holder, or an orphan's commit) when it was about to start."""
        self.retry_at.pop(key, None)
        self.state[key] = "done"

    def hold(self, key: K, now: float) -> None:
        """Another supervisor runs it: look again after `held_poll_s`."""
        self.state[key] = "waiting"
        self.retry_at[key] = now + self.held_poll_s

    def interrupt(self, key: K) -> None:
        self.state[key] = "waiting"

    def fail(self, key: K) -> Decision:
        self.state[key] = "failed"
        return Decision("failed", "failed")

    def finish(self, key: K, outcome: str, now: float, *, attempt: int = 1, max_retries: int = 0,
               oom_adjusted: bool = False) -> Decision:
        """A run ended with `outcome` (done | failed | transient | oom) on its `attempt`-th try."""
        if self.state.get(key) != "running":
            raise ValueError(f"{key!r} is {self.state.get(key)}, not running")
        if outcome == "done":
            self.state[key] = "done"
            return Decision("done", "done")
        if outcome == "transient" and attempt <= max_retries:
            delay = self.backoff_s * 2 ** (attempt - 1)
            self.state[key] = "waiting"
            self.retry_at[key] = now + delay
            return Decision("retry", "waiting", delay)
        if outcome == "oom" and oom_adjusted:
            self.state[key] = "waiting"
            return Decision("oom", "waiting")
        return self.fail(key)

    def lost(self, key: K) -> Decision:
        """Its process died: run it again, unless that happened `max_lost` times."""
        n = self.lost_count.get(key, 0) + 1
        self.lost_count[key] = n
        if n >= self.max_lost:
            return self.fail(key)
        self.state[key] = "waiting"
        return Decision("lost", "waiting")
