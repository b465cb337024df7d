"""Run a study (`fairtrial run` and `resume`): in the foreground with progress through a callback,
detached in a background supervisor, and stop a running one. Resuming is running again: whatever
is done is cached, lost and unfinished stage runs are found and completed.

Nothing here prints; progress reaches the caller through `on_event`. Refusals (a study already
running, nothing to stop) raise `fairtrial.errors.Refused`."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairtrial.app.resolve import load, open_store, open_workspace, plan, resolve_study
from fairtrial.errors import Refused, UserError

if TYPE_CHECKING:
    from fairtrial.spec import Spec
    from fairtrial.workspace import Workspace


def _q(text) -> str:
    """A path or name as one shell word, for hint commands a user copies."""
    return shlex.quote(str(text))


@dataclass
class RunOutcome:
    study: str
    ok: bool
    stage_runs: int
    run: int
    cached: int
    failed: list[dict[str, str]] = field(default_factory=list)
    """[{"key", "stage", "error" (first line)}]"""
    skipped: list[dict[str, str]] = field(default_factory=list)
    """[{"key", "stage"}]"""
    interrupted: bool = False
    evaluation_only: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.evaluation_only:
            out.pop("evaluation_only")
        return out


EventCallback = Callable[[str, dict[str, Any]], None]
"""on_event(kind, info). Kinds: "planned" ({"study", "stage_runs"}), then per stage run
"started", "done", "failed", "skipped", "lost", "retry", "oom", "corrupt", "held", "cached" (info:
the engine's fields plus "key", "stage", "arms" (sorted), "seed"), and "progress" ({"key",
"stage", "arms", "seed", "done", "total", "unit", "rate", "message"}) for running stage runs
that report progress, at most every 0.5 s."""


EXECUTORS = ("local", "ray")


def executor_choice(executor: str | None) -> str:
    """--executor, else $FAIRTRIAL_EXECUTOR, else local."""
    name = executor or os.environ.get("FAIRTRIAL_EXECUTOR") or "local"
    if name not in EXECUTORS:
        src = "--executor" if executor else "FAIRTRIAL_EXECUTOR"
        raise UserError(f'{src}: unknown executor "{name}"; known: {", ".join(EXECUTORS)}')
    return name


def run(spec: Spec, ws: Workspace, cpus: float | None = None, memory_gb: float | None = None,
        on_event: EventCallback | None = None, executor: str | None = None,
        address: str | None = None) -> RunOutcome:
    """Run whatever of the study is not done, in this process; returns the outcome. Refused when
    another supervisor runs the study. `executor`: "local" (worker processes here) or "ray" (a
    Ray cluster at `address`, else $RAY_ADDRESS, else a local Ray); see docs/cluster.md."""
    if spec.evaluation_only:  # nothing to train
        return RunOutcome(study=spec.name, ok=True, stage_runs=0, run=0, cached=0,
                          evaluation_only=True)
    from fairtrial.engine.local import Slots, StudyLock
    from fairtrial.engine.supervisor import Supervisor

    kind = executor_choice(executor)
    if address and kind != "ray":
        raise UserError("--address names a Ray cluster: give it with --executor ray")
    store = open_store(ws)
    lock = StudyLock(ws, spec.name)
    lock.acquire()
    try:
        p = plan(spec, ws)
        store.upsert_study(spec.name, str(spec.path), spec.recipe.name, spec.digest,
                           dict(spec.raw, _stages=[st for st in p.stages
                                                   if any(n.stage == st for n in p.nodes.values())]))
        store.ensure_runs([n.to_record() for n in p.nodes.values()], spec.name)
        store.set_cells(spec.name, [(a, r, s, k) for (a, r, s), k in p.cells.items()])
        slots = Slots.of_machine(cpus, memory_gb)
        emit = on_event or (lambda kind, info: None)
        emit("planned", {"study": spec.name, "stage_runs": len(p.nodes)})
        running: set[str] = set()
        last = [0.0]

        def node_info(key: str) -> dict[str, Any]:
            n = p.nodes[key]
            return {"key": key, "stage": n.stage, "arms": sorted({a for a, _ in n.cells}),
                    "seed": n.seed}

        def engine_event(kind: str, info: dict) -> None:
            key = info.get("key")
            if kind == "started":
                running.add(key)
            elif kind in ("done", "failed", "lost", "retry", "oom"):
                running.discard(key)
            if key in p.nodes and kind != "tick":
                emit(kind, {**info, **node_info(key)})
            if kind == "tick" and running and on_event is not None \
                    and time.time() - last[0] > 0.5:
                last[0] = time.time()
                recs = store.get_runs(list(running))
                for k in list(running):
                    r = recs.get(k) or {}
                    if r.get("progress_total"):
                        emit("progress", {**node_info(k), "done": r["progress_done"],
                                          "total": r["progress_total"],
                                          "unit": r.get("progress_unit") or "it",
                                          "rate": r.get("rate"), "message": r.get("message")})

        if kind == "ray":
            from fairtrial.engine.ray_executor import RayExecutor

            ex = RayExecutor(ws, store.url, address)
        else:
            ex = None  # the local executor on `slots`
        result = Supervisor(ws, store, spec.name, p, slots, on_event=engine_event,
                            executor=ex).run()
        failed = []
        for key in result.failed:
            rec = store.get_run(key) or {}
            failed.append({"key": key, "stage": p.nodes[key].stage,
                           "error": (rec.get("error") or "").splitlines()[0] if rec.get("error") else ""})
        return RunOutcome(study=spec.name, ok=result.ok, stage_runs=len(p.nodes), run=result.done,
                          cached=result.cached, failed=failed,
                          skipped=[{"key": k, "stage": p.nodes[k].stage} for k in result.skipped],
                          interrupted=result.interrupted)
    finally:
        lock.release()
        store.dispose()


@dataclass
class Detached:
    study: str
    pid: int
    log: Path
    finished: bool
    """The supervisor ended before it was seen running (nothing was left to do)."""
    last_line: str = ""
    """The last line of its log when it finished at once."""


def detach(study: str | Path, ws: Workspace, cpus: float | None = None,
           memory_gb: float | None = None, executor: str | None = None,
           address: str | None = None) -> Detached:
    """Start a background supervisor (`fairtrial run --quiet` in a new session) and return once it
    runs (its pid file names it) or finished at once. Refused when the study is running."""
    from fairtrial.engine.local import StudyLock

    spec = load(study)
    if StudyLock(ws, spec.name).held_by_other():  # refuse here: the child's refusal is in its log
        from fairtrial.engine.pidfile import read_supervisor

        holder = read_supervisor(ws.study_dir(spec.name) / "supervisor.json")
        raise Refused(f'study "{spec.name}" is already running'
                      + (f" (pid {holder['pid']})" if isinstance(holder, dict) and holder.get("pid") else "") + "; watch it with "
                      f"`fairtrial status {_q(spec.name)}` or end it with `fairtrial stop {_q(spec.name)}`")
    d = ws.study_dir(spec.name)
    d.mkdir(parents=True, exist_ok=True)
    log = d / "supervisor.log"
    cmd = [sys.executable, "-m", "fairtrial.cli", "run", str(Path(study).resolve()),
           "--workspace", str(ws.root), "--quiet"]
    if cpus:
        cmd += ["--cpus", str(cpus)]
    if memory_gb:
        cmd += ["--memory-gb", str(memory_gb)]
    if executor:
        cmd += ["--executor", executor_choice(executor)]
    if address:
        cmd += ["--address", address]
    with open(log, "ab") as f:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=os.getcwd())
    info = d / "supervisor.json"
    deadline = time.time() + 15
    finished = False
    while time.time() < deadline:
        rc = proc.poll()
        if rc == 0:  # it ended before we saw its pid file (a study with nothing left to do): success
            finished = True
            break
        if rc is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            err = (Refused if rc == 3 else UserError)(f"the background run ended at once (exit {rc}):\n"
                                                      + "\n".join(tail))
            err.exit_code = rc if rc in (1, 2, 3, 70, 74) else 1
            raise err
        try:
            if json.loads(info.read_text()).get("pid") == proc.pid:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    last = ""
    if finished:
        last = (log.read_text(errors="replace").strip().splitlines()[-1:] or [""])[0]
    return Detached(study=spec.name, pid=proc.pid, log=log, finished=finished, last_line=last)


def stop(workspace: str | Path | None, study: str | None = None, timeout: float = 60,
         on_stopped: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """End running supervisors cleanly (SIGTERM; their stage runs resume on the next run).
    Returns [{"study", "pid"}]; Refused when none runs or one does not end within `timeout`."""
    import socket

    from fairtrial.base.process import alive
    from fairtrial.engine.pidfile import read_supervisor

    ws = open_workspace(workspace)
    store = open_store(ws)
    names = resolve_study(study, store)
    live = []
    for n in names:
        sup = read_supervisor(ws.study_dir(n) / "supervisor.json")
        # its recorded start time too: a pid reused by another process is not the supervisor
        if sup and alive(sup.get("pid"), sup.get("pid_started"), host=sup.get("host"),
                         this_host=socket.gethostname()):
            live.append((n, sup))
    if not live:
        raise Refused("nothing to stop: no supervisor is running" +
                      (f" for {names[0]}" if study else ""))
    stopped = []
    for n, sup in live:
        os.kill(sup["pid"], signal.SIGTERM)
        deadline = time.time() + timeout
        while time.time() < deadline and alive(sup["pid"]):
            time.sleep(0.2)
        if alive(sup["pid"]):
            raise Refused(f"{n}: supervisor pid {sup['pid']} did not end within {timeout:.0f}s")
        stopped.append({"study": n, "pid": sup["pid"]})
        if on_stopped is not None:
            on_stopped(stopped[-1])
    return stopped
