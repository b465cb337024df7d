"""The local executor: the embedded default.

One supervisor per study (an exclusive file lock says so) schedules ready stage runs onto worker
processes within the machine's slots (CPU slots, memory, GPUs), supervises them, retries transient
failures with back-off, applies OOM policies, and survives its own death: a new supervisor finds
runs whose process is gone (`lost`) and runs them again, from their checkpoints where they keep one.

Studies share stage runs (equal keys), and several supervisors may run on one workspace at once.
Before a supervisor starts a stage run it takes the run's lease in the record store (one row per
key; see `Store.try_lease`): only the holder runs the key, writes its attempts and touches its
checkpoint. Another supervisor that needs the key waits and then finds it done. A lease is free
again when its holders (the supervisor and its worker) are dead on this host, or when its renewal
is older than the stale limit (a holder on another host).

Workers for CPU stages are long-lived (a Python start-up per stage run would cost more than a
trivial stage); a GPU stage gets a fresh worker with CUDA_VISIBLE_DEVICES set to its devices.
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing as mp
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable

import psutil

from fairtrial.engine.pidfile import read_supervisor
from fairtrial.errors import Refused
from fairtrial.plan import Node, Plan
from fairtrial.store import artifacts
from fairtrial.store.db import Store
from fairtrial.workspace import Workspace

MAX_LOST = 3
"""A run whose worker dies this many times is failed (a segfaulting stage must not loop)."""
BACKOFF_S = 1.0
HELD_POLL_S = 1.0
"""How often a stage run whose lease another supervisor holds is looked at again."""
RENEW_S = 5.0
"""How often a supervisor renews its leases (a lease unrenewed for STALE_S may be taken over)."""


def _started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _proc_alive(pid: int | None, started: float | None) -> bool:
    if not pid:
        return False
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        # a recycled pid is another process: its start time differs from the holder's
        return started is None or abs(p.create_time() - started) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def lease_holder_dead(row: dict, this_host: str, stale_s: float) -> bool:
    """A lease may be taken over when neither its supervisor nor its worker is alive (a holder
    on this host), or when it was not renewed for `stale_s` (a holder on another host)."""
    if row.get("host") == this_host:
        return not (_proc_alive(row.get("pid"), row.get("pid_started"))
                    or _proc_alive(row.get("worker_pid"), row.get("worker_started")))
    return time.time() - (row.get("renewed_at") or 0) > stale_s


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
                   gpus: list[str] | None = None) -> "Slots":
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
                                   "started_at": time.time()}))
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
    task: dict | None = None
    slot: dict = field(default_factory=dict)


@dataclass
class RunSummary:
    done: int = 0
    cached: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False
    executed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped and not self.interrupted


class _States(dict):
    """key -> scheduling state, with the indexes the loop needs so that one iteration costs
    O(what changed), not O(plan): 1,000 trivial stage runs must schedule in seconds."""

    ACTIVE = ("waiting", "ready", "running")

    def __init__(self, children: dict[str, list[str]]):
        super().__init__()
        self.children = children
        self.dirty: set[str] = set()      # waiting nodes whose readiness may have changed
        self.ready: dict[str, None] = {}  # an ordered set
        self.active = 0

    def __setitem__(self, key: str, st: str) -> None:
        old = self.get(key)
        if old in self.ACTIVE:
            self.active -= 1
        if st in self.ACTIVE:
            self.active += 1
        super().__setitem__(key, st)
        if st == "ready":
            self.ready[key] = None
        else:
            self.ready.pop(key, None)
        if st == "waiting":
            self.dirty.add(key)
        elif st in ("done", "failed", "skipped"):
            self.dirty.update(self.children.get(key, ()))


class Supervisor:
    def __init__(self, ws: Workspace, store: Store, study: str, plan: Plan,
                 slots: Slots | None = None, on_event: Callable[[str, dict], None] | None = None,
                 stale_s: float | None = None):
        self.ws = ws
        self.store = store
        self.study = study
        self.plan = plan
        self.slots = slots or Slots.of_machine()
        self.on_event = on_event or (lambda kind, info: None)
        self.free_cpus = self.slots.cpus
        self.free_mem = self.slots.memory_gb
        self.free_gpus = list(self.slots.gpus)
        self.workers: list[Worker] = []
        children: dict[str, list[str]] = {}
        for k, n in plan.nodes.items():
            for parent in n.needs.values():
                children.setdefault(parent, []).append(k)
        self.order = {k: i for i, k in enumerate(plan.nodes)}
        self.state = _States(children)
        self.effective: dict[str, dict] = {}
        self.adjustments: dict[str, list] = {}
        self.retry_at: dict[str, float] = {}
        self.lost_count: dict[str, int] = {}
        self.stop_requested = False
        self.ctx = mp.get_context("spawn")
        from fairtrial.engine.context import STALE_S

        self.stale_s = stale_s or STALE_S
        self.token = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.pid_started = _started(os.getpid())
        self.recheck: set[str] = set()  # artifacts to check again once their upstream is done
        self.held_by: dict[str, str] = {}  # key -> the study whose supervisor holds its lease
        self.summary = RunSummary()
        self._renewed = 0.0

    # ---- the loop ----
    def run(self) -> RunSummary:
        summary = self.summary
        self._prepare(summary)
        old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        for s in old:
            signal.signal(s, self._on_signal)
        try:
            while not self.stop_requested:
                self._advance(summary)
                if not self.state.active:
                    break
                self._dispatch()
                self._collect(summary, timeout=0.2)
                if time.time() - self._renewed >= RENEW_S:
                    self._renewed = time.time()
                    self.store.renew_leases(self.token)
                self.on_event("tick", {})
            if self.stop_requested:
                summary.interrupted = True
                self._interrupt_all()
            summary.failed = [k for k, s in self.state.items() if s == "failed"]
        except BaseException as e:
            # the supervisor itself fails (a full disk, a database gone): leave no attempt open,
            # so status says `pending` and the next `run` resumes, then let the error through
            try:
                self._interrupt_all(f"the supervisor stopped: {type(e).__name__}: {e}")
            except Exception:  # noqa: BLE001 - the store itself may be what failed
                pass
            raise
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            self._shutdown_workers()
            try:
                self.store.release_lease(None, self.token)
            except Exception:  # noqa: BLE001 - a dead holder's leases are free anyway
                pass
            try:
                # half-written output of workers that died meanwhile (an orphan of a killed
                # supervisor may end after this supervisor started, even after it committed)
                artifacts.clean_tmp(self.ws)
            except OSError:
                pass
        return summary

    def _on_signal(self, signum, _frame) -> None:
        self.stop_requested = True

    def _prepare(self, summary: RunSummary) -> None:
        """Sort the plan into done and waiting. Reads records, writes none of other supervisors'
        runs: a run's record is only changed by whoever holds its lease (see `_claim`)."""
        artifacts.clean_tmp(self.ws)
        records = self.store.get_runs(self.plan.nodes.keys())
        for key, node in self.plan.nodes.items():
            rec = records.get(key) or {}
            self.effective[key] = dict(rec.get("effective_params") or node.params) \
                if rec.get("adjustments") else dict(node.params)
            self.adjustments[key] = list(rec.get("adjustments") or [])
            v = artifacts.verify(self.ws, key)
            if v.ok:
                if any(self.state.get(k) != "done" for k in node.needs.values()):
                    # an upstream run must be redone first; this artifact is valid only if the
                    # upstream comes out the same (checked when it is ready, in _claim)
                    self.recheck.add(key)
                    self.state[key] = "waiting"
                    continue
                stale = artifacts.stale_inputs(self.ws, v.manifest)
                if not stale and rec.get("state") == "running":
                    # committed, but its attempt is still open: by a live holder about to close
                    # it, or by a worker whose supervisor died; _claim finds out which and closes it
                    self.recheck.add(key)
                    self.state[key] = "waiting"
                    continue
                if not stale:
                    self.state[key] = "done"
                    summary.cached += 1
                    if rec.get("state") != "done":
                        # the artifact is the truth: a supervisor may have died after the commit
                        self.store.update_run(key, state="done")
                    continue
                v.reason = "made from other inputs (" + ", ".join(stale) + ")"
            if v.reason not in ("missing",):
                artifacts.quarantine(self.ws, key)
                self.on_event("corrupt", {"key": key, "reason": v.reason})
            self.state[key] = "waiting"

    def _advance(self, summary: RunSummary) -> None:
        now = time.time()
        due = [k for k, t in self.retry_at.items() if t <= now]
        for k in due:
            del self.retry_at[k]
        candidates = self.state.dirty.union(due)
        self.state.dirty = set()
        for key in sorted(candidates, key=self.order.__getitem__):
            node = self.plan.nodes[key]
            if self.state[key] != "waiting":
                continue
            if key in self.retry_at:
                continue  # back-off not over; `due` brings it back
            needs = [self.state[k] for k in node.needs.values()]
            if any(s in ("failed", "skipped") for s in needs):
                self.state[key] = "skipped"
                summary.skipped.append(key)
                self.on_event("skipped", {"key": key, "stage": node.stage})
            elif all(s == "done" for s in needs):
                self.state[key] = "ready"

    def _fits(self, node: Node) -> bool:
        r = node.resources
        cpus = min(r.cpus, self.slots.cpus)
        mem = min(r.memory_gb, self.slots.memory_gb)
        return cpus <= self.free_cpus + 1e-9 and mem <= self.free_mem + 1e-9 and \
            r.gpus <= len(self.free_gpus)

    def _dispatch(self) -> None:
        for key in list(self.state.ready):
            node = self.plan.nodes[key]
            if node.resources.gpus > len(self.slots.gpus):
                self._fail(key, f"stage {node.stage} asks for {node.resources.gpus} GPU(s); this "
                           f"machine has {len(self.slots.gpus)}. Lower resources.{node.stage}.gpus "
                           "in the study file or run on a machine with GPUs")
                continue
            if not self._fits(node):
                continue
            if self._claim(key, node):
                self._start(key, node)

    def _claim(self, key: str, node: Node) -> bool:
        """Take the stage run's lease. False when it need not (or cannot yet) run here: another
        supervisor holds it (look again in a moment), or it turns out done (by the holder we
        waited for, by a worker whose supervisor died after it committed, or an artifact whose
        upstream came out the same when it was redone)."""
        held = self.store.try_lease(
            key, self.token, study=self.study, host=self.host, pid=os.getpid(),
            pid_started=self.pid_started,
            holder_dead=lambda row: lease_holder_dead(row, self.host, self.stale_s))
        if held is not None:
            if key not in self.held_by:
                self.held_by[key] = held.get("study") or "?"
                self.on_event("held", {"key": key, "stage": node.stage,
                                       "by": self.held_by[key]})
            self.state[key] = "waiting"
            self.retry_at[key] = time.time() + HELD_POLL_S
            return False
        self.held_by.pop(key, None)
        rec = self.store.get_run(key) or {}
        v = artifacts.verify(self.ws, key)
        stale = artifacts.stale_inputs(self.ws, v.manifest) if v.ok else []
        if v.ok and not stale:
            if rec.get("state") == "running":  # its worker committed, then lost its supervisor
                self.store.end_attempt(key, "done", state="done",
                                       error=None, duration_s=None)
                artifacts.clean_tmp(self.ws)  # what that worker had not removed yet
            elif rec.get("state") != "done":
                self.store.update_run(key, state="done")
            self.store.release_lease(key, self.token)
            shutil.rmtree(self.ws.checkpoint(key), ignore_errors=True)
            self.recheck.discard(key)
            self.state[key] = "done"
            self.summary.cached += 1
            self.on_event("cached", {"key": key, "stage": node.stage})
            return False
        if v.ok or v.reason != "missing":
            reason = ("made from other inputs (" + ", ".join(stale) + ")") if v.ok else v.reason
            artifacts.quarantine(self.ws, key)
            self.on_event("corrupt", {"key": key, "reason": reason})
        self.recheck.discard(key)
        if rec.get("state") == "running":
            # its holder is gone (we took over its lease): the attempt was lost; resume it
            self.store.end_attempt(key, "lost", error="process lost; resumed", state="pending")
            artifacts.clean_tmp(self.ws)
        elif rec.get("state") in ("failed", "interrupted", "done"):
            # this run tries it again: until it starts, it is pending
            self.store.update_run(key, state="pending")
        return True

    def _start(self, key: str, node: Node) -> None:
        r = node.resources
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
        w = self._worker(env, env_key, int(cpus))
        w.slot = {"cpus": cpus, "mem": mem, "gpus": gpus}
        self.store.set_lease_worker(key, self.token, w.proc.pid, _started(w.proc.pid))
        attempt = self.store.start_attempt(key, self.study, w.proc.pid, socket.gethostname(),
                                           effective_params=self.effective[key],
                                           adjustments=self.adjustments[key])
        task = {
            "key": key, "recipe": node.recipe, "stage": node.stage, "study": self.study,
            "params": self.effective[key], "declared_params": node.params,
            "adjustments": self.adjustments[key], "seed": node.seed, "needs": node.needs,
            "inputs": {n: str(self.ws.artifact(k)) for n, k in node.needs.items()},
            "input_files": node.input_files, "attempt": attempt,
            "device": "cuda" if gpus else "cpu", "cpus": cpus,
        }
        w.task = task
        w.conn.send(task)
        self.state[key] = "running"
        self.on_event("started", {"key": key, "stage": node.stage, "attempt": attempt})

    def _worker(self, env: dict, env_key: str, cpus: int) -> Worker:
        if env_key == "cpu":
            for w in self.workers:
                if w.task is None and w.env_key == env_key and w.proc.is_alive():
                    return w
        parent, child = self.ctx.Pipe()
        from fairtrial.engine.worker import worker_main

        proc = self.ctx.Process(target=worker_main, daemon=False,  # stages may start their own pools
                                args=(child, env, str(self.ws.root), self.store.url, os.getpid()))
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

    def _collect(self, summary: RunSummary, timeout: float) -> None:
        busy = [w for w in self.workers if w.task is not None]
        if not busy:
            time.sleep(min(timeout, max(0.0, min(self.retry_at.values(), default=time.time())
                                        - time.time())) if self.retry_at else 0)
            return
        ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=timeout)
        for w in busy:
            if w.conn in ready:
                try:
                    result = w.conn.recv()
                except (EOFError, OSError):
                    result = None
                if result is not None:
                    key = w.task["key"]
                    self._release(w)
                    self._handle(key, result, summary)
                    continue
            if not w.proc.is_alive() and w.task is not None:
                key = w.task["key"]
                self._release(w)
                self._lost(key, w.proc.exitcode)

    def _handle(self, key: str, result: dict, summary: RunSummary) -> None:
        try:
            self._outcome(key, result, summary)
        finally:
            self.store.release_lease(key, self.token)

    def _outcome(self, key: str, result: dict, summary: RunSummary) -> None:
        node = self.plan.nodes[key]
        outcome = result["outcome"]
        if outcome == "done":
            self.store.end_attempt(key, "done", state="done", study=self.study,
                                   duration_s=result["ended"] - result["started"],
                                   summary=result.get("summary"))
            self.state[key] = "done"
            summary.done += 1
            summary.executed.append(key)
            self.on_event("done", {"key": key, "stage": node.stage})
            return
        attempt_n = (self.store.get_run(key) or {}).get("attempts", 1)
        recipe_stage = _stage_of(node)
        if outcome == "transient" and attempt_n <= recipe_stage.max_retries:
            delay = BACKOFF_S * 2 ** (attempt_n - 1)
            self.store.end_attempt(key, "transient", error=result["error"], state="pending")
            self.retry_at[key] = time.time() + delay
            self.state[key] = "waiting"
            self.on_event("retry", {"key": key, "stage": node.stage, "delay": delay,
                                    "error": result["error"]})
            return
        if outcome == "oom":
            policy = recipe_stage.oom
            new = policy(dict(self.effective[key])) if policy else None
            if new is not None:
                change = {k: [self.effective[key].get(k), v] for k, v in new.items()
                          if self.effective[key].get(k) != v}
                self.adjustments[key].append({"reason": result["error"], "changed": change})
                self.effective[key] = new
                self.store.end_attempt(key, "oom", error=result["error"], state="pending",
                                       effective_params=new, adjustments=self.adjustments[key])
                self.state[key] = "waiting"
                self.on_event("oom", {"key": key, "stage": node.stage, "changed": change})
                return
            result["error"] = (f"out of memory and the OOM policy has nothing left to try "
                               f"({result['error']})")
        self._fail(key, result["error"], outcome if outcome != "oom" else "oom")

    def _fail(self, key: str, error: str, outcome: str = "failed") -> None:
        self.store.end_attempt(key, outcome, error=error, state="failed")
        self.state[key] = "failed"
        self.on_event("failed", {"key": key, "stage": self.plan.nodes[key].stage, "error": error})

    def _lost(self, key: str, exitcode: int | None) -> None:
        n = self.lost_count.get(key, 0) + 1
        self.lost_count[key] = n
        msg = f"worker process died (exit code {exitcode})"
        if n >= MAX_LOST:
            self._fail(key, f"{msg} {n} times; giving up", "lost")
            self.store.release_lease(key, self.token)
            return
        self.store.end_attempt(key, "lost", error=msg, state="pending")
        self.store.release_lease(key, self.token)
        artifacts.clean_tmp(self.ws)  # the dead worker's half-written output
        self.state[key] = "waiting"
        self.on_event("lost", {"key": key, "stage": self.plan.nodes[key].stage, "error": msg})

    def _interrupt_all(self, why: str = "stopped by the user") -> None:
        for w in list(self.workers):  # _stop_worker removes from the list
            if w.task is not None:
                key = w.task["key"]
                self._stop_worker(w)
                self.store.end_attempt(key, "interrupted", error=why, state="interrupted")
                self.store.release_lease(key, self.token)
                self.state[key] = "waiting"
                w.task = None

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

    def _shutdown_workers(self) -> None:
        for w in list(self.workers):
            self._stop_worker(w)


def _stage_of(node: Node):
    from fairtrial.recipes import registry

    return registry.get(node.recipe).stage(node.stage)
