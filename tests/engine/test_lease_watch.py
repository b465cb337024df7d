"""How a running task decides that its supervisor is gone: from the lease, not the process tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

from fairtrial.engine.context import lease_lost


def row(**kw) -> dict:
    base = {"token": "t", "host": "here", "pid": os.getpid(),
            "pid_started": psutil.Process().create_time(), "renewed_at": time.time()}
    return base | kw


def test_a_live_supervisor_on_this_host_holds_the_lease():
    assert lease_lost(row(), "t", "here", 60) is None


def test_released_or_taken_over_lease_is_lost():
    assert "released or taken over" in lease_lost(None, "t", "here", 60)
    assert "released or taken over" in lease_lost(row(token="other"), "t", "here", 60)


def test_a_dead_or_recycled_supervisor_pid_on_this_host_loses_it():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert lease_lost(row(pid=p.pid, pid_started=None), "t", "here", 60) == "its supervisor died"
    # our own pid, but started at another time: a recycled pid, another process
    assert lease_lost(row(pid_started=1.0), "t", "here", 60) == "its supervisor died"


def test_a_supervisor_on_another_host_is_judged_by_its_renewals():
    assert lease_lost(row(host="elsewhere", pid=1), "t", "here", 60) is None
    old = row(host="elsewhere", renewed_at=time.time() - 61)
    assert "did not renew its lease for 60 s" in lease_lost(old, "t", "here", 60)
