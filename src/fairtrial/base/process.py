"""Whether a process lives: the one rule that status, stop, the lease takeover, the supervisor's
watch of its worker and the clean-up of temporary folders all ask (psutil)."""

from __future__ import annotations

REUSE_TOLERANCE_S = 1.0
"""Two start times this close are the same process (psutil's create_time is rounded); further
apart, the pid was reused by another process."""


def start_time(pid: int | None = None) -> float | None:
    """The start time of process `pid` (this process by default), as psutil's create_time; None
    when it cannot be read. Recorded beside a pid so that a reused pid is not taken for it."""
    import os

    import psutil

    try:
        return psutil.Process(os.getpid() if pid is None else pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def alive(pid: int | None, started: float | None = None, *, host: str | None = None,
          this_host: str | None = None) -> bool | None:
    """Whether process `pid` lives and is the one that started at `started` (when given).

    None when `host` names another host than `this_host` (only a heartbeat can tell there).
    False when there is no pid, no such process, a zombie, or another process holds the pid now
    (its start time differs from `started`: pid reuse). True when it lives, also when the
    operating system denies a look at it (AccessDenied: the process exists, another user's)."""
    if not pid:
        return False
    if host and this_host and host != this_host:
        return None
    import psutil  # here, not at the top: `status --json` on finished runs never needs it

    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(p.create_time() - started) < REUSE_TOLERANCE_S
    except psutil.NoSuchProcess:  # ZombieProcess is one too: a zombie is not alive
        return False
    except psutil.AccessDenied:
        return True
