"""The object a stage function receives (satisfies fairtrial.recipes.api.StageContext)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # status imports this module for STALE_S: keep SQLAlchemy out of its imports
    from fairtrial.store.db import Store

HEARTBEAT_S = 5.0
"""How often a running stage run's heartbeat is written (status calls a run `lost` after STALE_S)."""
STALE_S = 60.0
PROGRESS_WRITE_S = 1.0


class RunContext:
    def __init__(self, *, key: str, store: Store, params: Mapping[str, Any], seed: int | None,
                 out: Path, inputs: dict[str, Path], checkpoint_dir: Path, log: logging.Logger,
                 device: str = "cpu", cpus: float = 1):
        self.key = key
        self.params = params
        self.seed = seed
        self.out = out
        self.inputs = inputs
        self.checkpoint_dir = checkpoint_dir
        self.log = log
        self.device = device
        self.cpus = cpus
        self._store = store
        self._t0 = time.time()
        self._done0: float | None = None
        self._last_write = 0.0
        self._lock = threading.Lock()

    def progress(self, done: float, total: float | None = None, unit: str = "it",
                 message: str = "") -> None:
        now = time.time()
        with self._lock:
            if self._done0 is None:
                # a resumed run starts part-way: measure the rate from where this attempt began
                self._done0, self._t0 = done, now
            if now - self._last_write < PROGRESS_WRITE_S and not (total and done >= total):
                return
            self._last_write = now
            elapsed = now - self._t0
            rate = (done - self._done0) / elapsed if elapsed > 0 and done > self._done0 else None
        self._store.update_run(self.key, progress_done=float(done),
                               progress_total=float(total) if total else None,
                               progress_unit=unit, rate=rate, message=message or None,
                               heartbeat_at=now)

    def heartbeat(self) -> None:
        """A store write at most every PROGRESS_WRITE_S (a progress write beats too), so a
        training loop may call it on every micro-batch."""
        now = time.time()
        with self._lock:
            if now - self._last_write < PROGRESS_WRITE_S:
                return
            self._last_write = now
        self._store.update_run(self.key, heartbeat_at=now)


def lease_lost(row: dict | None, token: str, this_host: str, stale_s: float) -> str | None:
    """Why the holder of `token` no longer holds its stage run's lease (None: it does). The
    lease, not the process tree, says whether a task's supervisor is still there: it works the
    same for a local worker and for a Ray task on another node."""
    if row is None or row.get("token") != token:
        return "its lease was released or taken over"
    if row.get("host") == this_host and row.get("pid"):
        from fairtrial.base.process import alive

        return None if alive(row["pid"], row.get("pid_started")) else "its supervisor died"
    if time.time() - (row.get("renewed_at") or 0) > stale_s:
        return f"its supervisor did not renew its lease for {stale_s:.0f} s"
    return None


class Heartbeat(threading.Thread):
    """Writes the heartbeat while a stage runs, and ends the process when the run's lease is lost
    (its supervisor died or another supervisor took the run over), so an orphan never finishes a
    run that a new supervisor has already restarted."""

    def __init__(self, store: Store, stale_s: float = STALE_S, exit_on_loss: bool = True):
        super().__init__(daemon=True)
        self.store = store
        self.stale_s = stale_s
        self.exit_on_loss = exit_on_loss
        self.key: str | None = None
        self.token: str | None = None
        self.lost: str | None = None
        self._stop = threading.Event()

    def watch(self, key: str | None, token: str | None) -> None:
        self.key, self.token = key, token

    def run(self) -> None:
        import socket

        host = socket.gethostname()
        last = 0.0
        while not self._stop.wait(0.5):
            key, token = self.key, self.token
            if not key:
                continue
            if token:
                try:
                    why = lease_lost(self.store.get_lease(key), token, host, self.stale_s)
                except Exception:  # noqa: BLE001 - the database may blink; look again
                    why = None
                if why and self.key == key:
                    self.lost = why
                    if self.exit_on_loss:
                        os._exit(3)
            if time.time() - last >= HEARTBEAT_S:
                last = time.time()
                try:
                    self.store.update_run(key, heartbeat_at=last)
                except Exception:  # noqa: BLE001 - the next beat will try again
                    pass

    def stop(self) -> None:
        self._stop.set()
