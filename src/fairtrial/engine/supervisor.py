"""The supervisor: joins the scheduler (what may run), an executor (where it runs) and the store
(what is recorded). One per study (see `StudyLock` in local.py).

Studies share stage runs (equal keys), and several supervisors may run on one workspace at once.
Before a supervisor starts a stage run it takes the run's lease in the record store (one row per
key; see `Store.try_lease`): only the holder runs the key, writes its attempts and touches its
checkpoint. Another supervisor that needs the key waits and then finds it done. A lease is free
again when its holders (the supervisor and the process running the task) are dead on this host,
or when its renewal is older than the stale limit (a holder on another host). The task watches
its lease too and ends when it is lost (see `context.Heartbeat`): no parent-pid check, so the same
holds for a Ray task on another node.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from fairtrial.base.process import alive, start_time
from fairtrial.engine.executor import Executor, Finished
from fairtrial.engine.scheduler import Scheduler
from fairtrial.engine.task import Result, Task
from fairtrial.plan import Node, Plan
from fairtrial.store import artifacts
from fairtrial.store.db import Store
from fairtrial.workspace import Workspace

MAX_LOST = 3
"""A run whose process dies this many times is failed (a segfaulting stage must not loop)."""
BACKOFF_S = 1.0
HELD_POLL_S = 1.0
"""How often a stage run whose lease another supervisor holds is looked at again."""
RENEW_S = 5.0
"""How often a supervisor renews its leases (a lease unrenewed for STALE_S may be taken over)."""


def lease_holder_dead(row: dict, this_host: str, stale_s: float) -> bool:
    """A lease may be taken over when neither its supervisor nor its worker is alive (a holder
    on this host), or when it was not renewed for `stale_s` (a holder on another host)."""
    if row.get("host") == this_host:
        return not (alive(row.get("pid"), row.get("pid_started"))
                    or alive(row.get("worker_pid"), row.get("worker_started")))
    return time.time() - (row.get("renewed_at") or 0) > stale_s


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


class Supervisor:
    def __init__(self, ws: Workspace, store: Store, study: str, plan: Plan,
                 slots=None, on_event: Callable[[str, dict], None] | None = None,
                 stale_s: float | None = None, executor: Executor | None = None):
        from fairtrial.engine.context import STALE_S

        self.ws = ws
        self.store = store
        self.study = study
        self.plan = plan
        self.on_event = on_event or (lambda kind, info: None)
        self.stale_s = stale_s or STALE_S
        if executor is None:
            from fairtrial.engine.local import LocalExecutor, Slots  # local never imports back

            executor = LocalExecutor(ws, store.url, slots or Slots.of_machine())
        self.executor = executor
        self.sched: Scheduler[str] = Scheduler(
            {k: list(n.needs.values()) for k, n in plan.nodes.items()},
            backoff_s=BACKOFF_S, max_lost=MAX_LOST, held_poll_s=HELD_POLL_S)
        self.effective: dict[str, dict] = {}
        self.adjustments: dict[str, list] = {}
        self.stop_requested = False
        self.token = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.pid_started = start_time()
        self.recheck: set[str] = set()  # artifacts to check again once their upstream is done
        self.held_by: dict[str, str] = {}  # key -> the study whose supervisor holds its lease
        self.summary = RunSummary()
        self._renewed = 0.0

    # ---- the loop ----
    def run(self) -> RunSummary:
        summary = self.summary
        self.executor.check((n.stage, n.resources) for n in self.plan.nodes.values())
        self._prepare(summary)
        old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        for s in old:
            signal.signal(s, self._on_signal)
        try:
            while not self.stop_requested:
                self._advance(summary)
                if not self.sched.active:
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
            summary.failed = self.sched.in_state("failed")
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
            self.executor.shutdown()
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
        state = self.sched.state
        for key, node in self.plan.nodes.items():
            rec = records.get(key) or {}
            self.effective[key] = dict(rec.get("effective_params") or node.params) \
                if rec.get("adjustments") else dict(node.params)
            self.adjustments[key] = list(rec.get("adjustments") or [])
            v = artifacts.verify(self.ws, key)
            if v.ok:
                if any(state.get(k) != "done" for k in node.needs.values()):
                    # an upstream run must be redone first; this artifact is valid only if the
                    # upstream comes out the same (checked when it is ready, in _claim)
                    self.recheck.add(key)
                    self.sched.set_waiting(key)
                    continue
                stale = artifacts.stale_inputs(self.ws, v.manifest)
                if not stale and rec.get("state") == "running":
                    # committed, but its attempt is still open: by a live holder about to close
                    # it, or by a worker whose supervisor died; _claim finds out which and closes it
                    self.recheck.add(key)
                    self.sched.set_waiting(key)
                    continue
                if not stale:
                    self.sched.set_done(key)
                    summary.cached += 1
                    if rec.get("state") != "done":
                        # the artifact is the truth: a supervisor may have died after the commit
                        self.store.update_run(key, state="done")
                    continue
                v.reason = "made from other inputs (" + ", ".join(stale) + ")"
            if v.reason not in ("missing",):
                artifacts.quarantine(self.ws, key)
                self.on_event("corrupt", {"key": key, "reason": v.reason})
            self.sched.set_waiting(key)

    def _advance(self, summary: RunSummary) -> None:
        for key in self.sched.advance(time.time()):
            summary.skipped.append(key)
            self.on_event("skipped", {"key": key, "stage": self.plan.nodes[key].stage})

    def _dispatch(self) -> None:
        for key in self.sched.ready():
            node = self.plan.nodes[key]
            why = self.executor.cannot_run(node.stage, node.resources)
            if why:
                self.sched.fail(key)
                self._record_failed(key, why)
                continue
            if not self.executor.fits(node.resources):
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
            self.sched.hold(key, time.time())
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
            self.sched.cached(key)
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
        # the task records its own pid and host when it starts (set_run_process)
        attempt = self.store.start_attempt(key, self.study, None, None,
                                           effective_params=self.effective[key],
                                           adjustments=self.adjustments[key])
        task = Task(key=key, recipe=node.recipe, stage=node.stage, study=self.study,
                    params=self.effective[key], declared_params=node.params, seed=node.seed,
                    needs=node.needs,
                    inputs={n: str(self.ws.artifact(k)) for n, k in node.needs.items()},
                    input_files=node.input_files, attempt=attempt, resources=node.resources,
                    adjustments=self.adjustments[key], lease_token=self.token)
        self.sched.start(key)
        try:
            self.executor.submit(task)
        except BaseException:
            self.sched.interrupt(key)
            raise
        self.on_event("started", {"key": key, "stage": node.stage, "attempt": attempt})

    def _collect(self, summary: RunSummary, timeout: float) -> None:
        if not self.executor.running():
            due = self.sched.next_due()
            if due is not None:
                time.sleep(max(0.0, min(timeout, due - time.time())))
            return
        for f in self.executor.poll(timeout):
            self._finished(f, summary)

    def _finished(self, f: Finished, summary: RunSummary) -> None:
        if f.result is None:
            self._lost(f.key, f.lost)
            return
        try:
            self._outcome(f.key, f.result, summary)
        finally:
            self.store.release_lease(f.key, self.token)

    def _outcome(self, key: str, result: Result, summary: RunSummary) -> None:
        node = self.plan.nodes[key]
        now = time.time()
        if result.outcome == "done":
            self.sched.finish(key, "done", now)
            self.store.end_attempt(key, "done", state="done", study=self.study,
                                   duration_s=result.ended - result.started,
                                   summary=result.summary)
            summary.done += 1
            summary.executed.append(key)
            self.on_event("done", {"key": key, "stage": node.stage})
            return
        attempt_n = (self.store.get_run(key) or {}).get("attempts", 1)
        recipe_stage = _stage_of(node)
        error = result.error or ""
        new = None
        if result.outcome == "oom" and recipe_stage.oom:
            new = recipe_stage.oom(dict(self.effective[key]))
        d = self.sched.finish(key, result.outcome, now, attempt=attempt_n,
                              max_retries=recipe_stage.max_retries, oom_adjusted=new is not None)
        if d.action == "retry":
            self.store.end_attempt(key, "transient", error=error, state="pending")
            self.on_event("retry", {"key": key, "stage": node.stage, "delay": d.delay,
                                    "error": error})
            return
        if d.action == "oom":
            change = {k: [self.effective[key].get(k), v] for k, v in new.items()
                      if self.effective[key].get(k) != v}
            self.adjustments[key].append({"reason": error, "changed": change})
            self.effective[key] = new
            self.store.end_attempt(key, "oom", error=error, state="pending",
                                   effective_params=new, adjustments=self.adjustments[key])
            self.on_event("oom", {"key": key, "stage": node.stage, "changed": change})
            return
        if result.outcome == "oom":
            error = f"out of memory and the OOM policy has nothing left to try ({error})"
        self._record_failed(key, error, result.outcome)

    def _record_failed(self, key: str, error: str, outcome: str = "failed") -> None:
        self.store.end_attempt(key, outcome, error=error, state="failed")
        self.on_event("failed", {"key": key, "stage": self.plan.nodes[key].stage, "error": error})

    def _lost(self, key: str, how: str) -> None:
        d = self.sched.lost(key)
        n = self.sched.lost_count[key]
        msg = how or "the process running it died"
        if d.action == "failed":
            self._record_failed(key, f"{msg} {n} times; giving up", "lost")
            self.store.release_lease(key, self.token)
            return
        self.store.end_attempt(key, "lost", error=msg, state="pending")
        self.store.release_lease(key, self.token)
        artifacts.clean_tmp(self.ws)  # the dead worker's half-written output
        self.on_event("lost", {"key": key, "stage": self.plan.nodes[key].stage, "error": msg})

    def _interrupt_all(self, why: str = "stopped by the user") -> None:
        for key in self.executor.running():
            self.executor.cancel(key)
            self.store.end_attempt(key, "interrupted", error=why, state="interrupted")
            self.store.release_lease(key, self.token)
            self.sched.interrupt(key)


def _stage_of(node: Node):
    from fairtrial.recipes import registry

    return registry.get(node.recipe).stage(node.stage)
