"""The local executor: the embedded default (plus the study lock and the machine's slots).

One supervisor per study (an exclusive file lock, `StudyLock`, says so); the supervisor
(supervisor.py) schedules ready stage runs and this executor runs them on worker processes within
the machine's slots (CPU slots, memory, GPUs).
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing as mp
import os
import shlex
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

import psutil

from fairtrial.base.process import start_time
from fairtrial.engine.executor import Finished
from fairtrial.engine.pidfile import read_supervisor
from fairtrial.engine.task import Resources, Result, Task
from fairtrial.errors import Refused
from fairtrial.workspace import Workspace


def detect_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
            return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU")]
        except (OSError, subprocess.SubprocessError):
            return []
    return []


@dataclass
class Slots:
    cpus: float
    memory_gb: float
    gpus: list[str]

    @classmethod
    def of_machine(cls, cpus: float | None = None, memory_gb: float | None = None,
                   gpus: list[str] | None = None) -> Slots:
        return cls(cpus=cpus or float(os.cpu_count() or 1),
                   memory_gb=memory_gb or psutil.virtual_memory().total / 2**30 * 0.9,
                   gpus=detect_gpus() if gpus is None else gpus)


class StudyLock:
    """An exclusive, non-blocking flock: the kernel releases it when the holder dies, so a killed
    supervisor never leaves a stale lock behind."""

    def __init__(self, ws: Workspace, study: str):
        self.path = ws.locks / f"study-{study}.lock"
        self.info = ws.study_dir(study) / "supervisor.json"
        self.study = study
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_supervisor(self.info)
            who = f" (pid {holder['pid']}, started {time.ctime(holder['started_at'])})" if holder else ""
            raise Refused(f'study "{self.study}" is already running{who}; watch it with '
                          f"`fairtrial status {shlex.quote(self.study)}` or end it with "
                          f"`fairtrial stop {shlex.quote(self.study)}`")
        self.fd = fd
        self.info.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.info.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                   "pid_started": start_time(), "started_at": time.time()}))
        os.replace(tmp, self.info)

    def release(self) -> None:
        if self.fd is not None:
            try:
                self.info.unlink()
            except FileNotFoundError:
                pass
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def held_by_other(self) -> bool:
        """True when some live process holds the lock (used by status and stop)."""
        if not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)


@dataclass
class Worker:
    proc: Any
    conn: Any
    env_key: str
    task: Task | None = None
    slot: dict = field(default_factory=dict)


class LocalExecutor:
    """Runs tasks on worker processes of this machine within its slots (CPU slots, memory, GPUs).
    Workers for CPU stages are long-lived (a Python start-up per stage run would cost more than a
    trivial stage); a GPU stage gets a fresh worker with CUDA_VISIBLE_DEVICES set to its devices."""

    name = "local"

    def __init__(self, ws: Workspace, db_url: str, slots: Slots | None = None):
        self.ws = ws
        self.db_url = db_url
        self.slots = slots or Slots.of_machine()
        self.free_cpus = self.slots.cpus
        self.free_mem = self.slots.memory_gb
        self.free_gpus = list(self.slots.gpus)
        self.workers: list[Worker] = []
        self.ctx = mp.get_context("spawn")

    def check(self, needs) -> None:
        """Locally a stage asking for more GPUs than the machine has fails on its own (the other
        arms continue): see cannot_run."""

    def cannot_run(self, stage: str, r: Resources) -> str | None:
        if r.gpus > len(self.slots.gpus):
            return (f"stage {stage} asks for {r.gpus} GPU(s); this machine has "
                    f"{len(self.slots.gpus)}. Lower resources.{stage}.gpus in the study file or "
                    "run on a machine with GPUs")
        return None

    def fits(self, r: Resources) -> bool:
        cpus = min(r.cpus, self.slots.cpus)
        mem = min(r.memory_gb, self.slots.memory_gb)
        return cpus <= self.free_cpus + 1e-9 and mem <= self.free_mem + 1e-9 and \
            r.gpus <= len(self.free_gpus)

    def running(self) -> list[str]:
        return [w.task.key for w in self.workers if w.task is not None]

    def submit(self, task: Task) -> None:
        r = task.resources
        cpus = min(r.cpus, self.slots.cpus)
        mem = min(r.memory_gb, self.slots.memory_gb)
        gpus = [self.free_gpus.pop(0) for _ in range(r.gpus)]
        self.free_cpus -= cpus
        self.free_mem -= mem
        env = {"CUDA_VISIBLE_DEVICES": ",".join(gpus),
               "OMP_NUM_THREADS": str(max(1, int(cpus))),
               "MKL_NUM_THREADS": str(max(1, int(cpus))),
               "TOKENIZERS_PARALLELISM": "false"}
        env_key = "cpu" if not gpus else "gpu:" + ",".join(gpus)
        w = self._worker(env, env_key)
        w.slot = {"cpus": cpus, "mem": mem, "gpus": gpus}
        task.device = "cuda" if gpus else "cpu"
        task.cpus = cpus
        w.task = task
        w.conn.send(task.to_dict())

    def _worker(self, env: dict, env_key: str) -> Worker:
        if env_key == "cpu":
            for w in self.workers:
                if w.task is None and w.env_key == env_key and w.proc.is_alive():
                    return w
        parent, child = self.ctx.Pipe()
        from fairtrial.engine.worker import worker_main

        proc = self.ctx.Process(target=worker_main, daemon=False,  # stages may start their own pools
                                args=(child, env, str(self.ws.root), self.db_url))
        proc.start()
        child.close()
        w = Worker(proc=proc, conn=parent, env_key=env_key)
        self.workers.append(w)
        return w

    def _release(self, w: Worker) -> None:
        self.free_cpus += w.slot.get("cpus", 0)
        self.free_mem += w.slot.get("mem", 0)
        self.free_gpus.extend(w.slot.get("gpus", []))
        w.slot = {}
        w.task = None
        if w.env_key != "cpu":
            self._stop_worker(w)

    def poll(self, timeout: float) -> list[Finished]:
        busy = [w for w in self.workers if w.task is not None]
        if not busy:
            return []
        ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=timeout)
        out = []
        for w in busy:
            if w.conn in ready:
                try:
                    result = w.conn.recv()
                except (EOFError, OSError):
                    result = None
                if result is not None:
                    key = w.task.key
                    self._release(w)
                    out.append(Finished(key, Result.from_dict(result)))
                    continue
            if not w.proc.is_alive() and w.task is not None:
                key = w.task.key
                self._release(w)
                out.append(Finished(key, None,
                                    f"worker process died (exit code {w.proc.exitcode})"))
        return out

    def cancel(self, key: str) -> None:
        for w in list(self.workers):
            if w.task is not None and w.task.key == key:
                self._stop_worker(w)
                self._release(w)

    def _stop_worker(self, w: Worker) -> None:
        try:
            if w.task is None and w.proc.is_alive():
                w.conn.send(None)
                w.proc.join(timeout=2)
        except (OSError, BrokenPipeError):
            pass
        if w.proc.is_alive():
            w.proc.terminate()
            w.proc.join(timeout=5)
        if w.proc.is_alive():
            w.proc.kill()
            w.proc.join(timeout=5)
        if w in self.workers:
            self.workers.remove(w)

    def shutdown(self) -> None:
        for w in list(self.workers):
            self._stop_worker(w)
