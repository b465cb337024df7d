"""The stage context's store writes are rate-limited: progress and heartbeats may be called on
every micro-batch without a database write each."""

from __future__ import annotations

import logging
from pathlib import Path

from fairtrial.engine import context as C


class Recorder:
    def __init__(self):
        self.writes: list[dict] = []

    def update_run(self, key, **fields):
        self.writes.append(fields)


def _ctx(store) -> C.RunContext:
    return C.RunContext(key="k", store=store, params={}, seed=None, out=Path("."), inputs={},
                        checkpoint_dir=Path("."), log=logging.getLogger("t"))


def test_heartbeats_are_written_at_most_once_per_interval(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(C.time, "time", lambda: now[0])
    store = Recorder()
    ctx = _ctx(store)
    for _ in range(500):                 # a training loop's micro-batches within one second
        ctx.heartbeat()
        now[0] += 0.001
    assert len(store.writes) == 1 and "heartbeat_at" in store.writes[0]
    now[0] += C.PROGRESS_WRITE_S
    ctx.heartbeat()
    assert len(store.writes) == 2
    ctx.progress(1, 10)                  # progress and heartbeats share one write interval
    ctx.heartbeat()
    assert len(store.writes) == 2
