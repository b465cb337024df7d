"""The executor protocol: what the supervisor needs from whatever runs stage runs.

An executor runs `Task`s somewhere (worker processes on this machine, Ray tasks on a cluster) and
reports how each ended. It holds no scheduling logic and writes no records: the scheduler decides,
the supervisor records, the executor runs. The task itself writes its heartbeat, progress and
where it runs (pid, host) to the store, and commits its artifact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from fairtrial.engine.task import Resources, Result, Task


@dataclass
class Finished:
    """A submitted task ended: with a `result`, or lost (`result` None; `lost` says how)."""

    key: str
    result: Result | None = None
    lost: str = ""


class Executor(Protocol):
    name: str

    def check(self, needs: Iterable[tuple[str, Resources]]) -> None:
        """Refuse (fairtrial.errors.Refused, one line) before anything runs when a stage asks for
        resources no node has; `needs` is (stage, resources) per stage."""

    def cannot_run(self, stage: str, res: Resources) -> str | None:
        """Why a task of `stage` can never run here (the run fails with it), else None."""

    def fits(self, res: Resources) -> bool:
        """Whether a task with `res` can start now (capacity)."""

    def submit(self, task: Task) -> None:
        """Start the task (its capacity is taken until it is reported finished)."""

    def poll(self, timeout: float) -> list[Finished]:
        """Wait up to `timeout` s for tasks to end; return those that did."""

    def cancel(self, key: str) -> None:
        """Stop a running task (it is not reported by poll afterwards)."""

    def running(self) -> list[str]:
        """Keys of the tasks submitted and not yet reported."""

    def shutdown(self) -> None:
        """Stop everything it started (called once, at the end of a run)."""
