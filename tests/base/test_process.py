"""The one liveness rule (fairtrial.base.process.alive) that status, stop, the lease takeover and
the clean-up of temporary folders ask."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from fairtrial.base.process import alive, start_time


def test_a_living_process_with_its_own_start_time():
    assert alive(os.getpid()) is True
    assert alive(os.getpid(), start_time()) is True
    assert start_time() == pytest.approx(psutil.Process().create_time())


def test_a_reused_pid_is_another_process():
    """The same pid with another start time is not the process that was recorded."""
    assert alive(os.getpid(), start_time() - 60) is False


def test_no_pid_an_ended_process_and_a_zombie_are_not_alive():
    assert alive(None) is False and alive(0) is False
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    assert alive(done.pid) is False            # reaped: no such process
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    for _ in range(400):                       # ended but not reaped by us: a zombie
        if psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.05)
    assert psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE
    assert alive(zombie.pid) is False
    zombie.wait()


def test_another_users_process_is_alive_and_another_host_cannot_tell(monkeypatch):
    """AccessDenied means the process exists (the OS will not show it to us): alive. On another
    host only a heartbeat can tell: None."""
    class Denied:
        def __init__(self, pid):
            raise psutil.AccessDenied(pid)

    monkeypatch.setattr(psutil, "Process", Denied)
    assert alive(12345, 1.0) is True
    assert start_time(12345) is None
    monkeypatch.undo()
    assert alive(os.getpid(), host="elsewhere", this_host="here") is None
    assert alive(os.getpid(), host="here", this_host="here") is True
