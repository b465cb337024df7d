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
        self._store.update_run(self.key, heartbeat_at=time.time())


class Heartbeat(threading.Thread):
    """Writes the heartbeat while a stage runs, and ends the worker if its supervisor died (so an
    orphan never finishes a run that a new supervisor has already restarted)."""

    def __init__(self, store: Store, parent_pid: int):
        super().__init__(daemon=True)
        self.store = store
        self.parent_pid = parent_pid
        self.key: str | None = None
        self._stop = threading.Event()

    def run(self) -> None:
        last = 0.0
        while not self._stop.wait(0.5):
            if os.getppid() != self.parent_pid:
                os._exit(3)
            key = self.key
            if key and time.time() - last >= HEARTBEAT_S:
                last = time.time()
                try:
                    self.store.update_run(key, heartbeat_at=last)
                except Exception:  # noqa: BLE001 - the next beat will try again
                    pass

    def stop(self) -> None:
        self._stop.set()
