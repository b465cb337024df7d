"""The application layer: the use cases that the CLI and the dashboard call.

check, run (foreground and detached), report, import, status, stop, logs: each takes plain input
(paths, names, numbers), does the orchestration (spec, plan, store, engine, analysis) and returns
plain data (dataclasses and dicts). Nothing here prints; progress reaches the caller through
callbacks. Expected failures raise `fairtrial.errors.UserError` (and its kinds: `Refused`,
`EnvironmentFault`) with the message the user sees.

The CLI (`fairtrial.cli`) only parses input and renders what these functions return.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairtrial.errors import EnvironmentFault, Refused, UserError, environment_fault

if TYPE_CHECKING:
    from fairtrial.plan import Plan
    from fairtrial.spec import Spec
    from fairtrial.status import StudyStatus
    from fairtrial.store.db import Store
    from fairtrial.workspace import Workspace

_IN_USE: dict[str, Any] = {}
"""The workspace and record store the running command opened: named in environment-fault
messages and where the crash log goes."""


def _q(text) -> str:
    """A path or name as one shell word, for hint commands a user copies."""
    return shlex.quote(str(text))


# ---------------------------------------------------------------- workspace and store
def open_workspace(path: str | Path | None) -> Workspace:
    """The workspace at `path` (None: $FAIRTRIAL_WORKSPACE or ./.fairtrial), created when missing."""
    from fairtrial.workspace import Workspace

    ws = Workspace.find(path)
    if ws.root.exists() and not ws.root.is_dir():
        raise UserError(f"workspace {ws.root} is a file, not a folder; give a folder with "
                        "--workspace (it is created when missing)")
    try:
        ws = ws.ensure()
    except (NotADirectoryError, FileExistsError):  # a file where a folder of it should be
        raise UserError(f"workspace {ws.root} cannot be made: a part of its path is a file, not a "
                        "folder; give another --workspace") from None
    except OSError as e:
        fault = environment_fault(e)
        if fault is not None and str(fault).startswith("disk full"):
            raise fault from None
        raise EnvironmentFault(f"workspace {ws.root} cannot be created or written: "
                               f"{e.strerror or e}" + (f" ({e.filename})" if e.filename else "")) from None
    _IN_USE["workspace"] = ws.root
    return ws


def open_store(ws: Workspace) -> Store:
    from fairtrial.store.db import Store

    _IN_USE["db_url"] = ws.db_url
    return Store(ws.db_url)


def workspace_in_use() -> Path | None:
    """The workspace this process opened, if any (the crash log goes there)."""
    return _IN_USE.get("workspace")


def db_in_use() -> str | None:
    """The record store this process opened, for messages: a SQLite file's path, or the URL
    without its password."""
    import re

    url = _IN_USE.get("db_url")
    if not url:
        return None
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///"):]
    return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)  # never print a password


def load(study: str | Path) -> Spec:
    """The validated study file (every error at once, as a SpecError)."""
    from fairtrial.spec import load_spec

    return load_spec(study)


def plan(spec: Spec, ws: Workspace) -> Plan:
    """The study's plan, with input-file digests cached in the workspace."""
    from fairtrial.plan import plan_for
    from fairtrial.recipes.api import StageError
    from fairtrial.base.digests import DigestCache

    digests = DigestCache(ws.root / "digests.json")
    try:
        p = plan_for(spec, digests)
    except FileNotFoundError as e:
        raise UserError(f"{spec.path.name}: input file {e} does not exist") from None
    except StageError as e:  # a recipe naming its input files found bad params (a missing data path)
        raise UserError(f"{spec.path.name}: {e}") from None
    digests.save()
    return p


# ---------------------------------------------------------------- check
@dataclass
class Checked:
    spec: Spec
    stages: list[dict[str, Any]]
    """Per stage: stage, cells, runs, shared, cached, to_run, est_s_each, seeded."""

    def to_dict(self) -> dict[str, Any]:
        spec = self.spec
        return {"study": spec.name, "recipe": spec.recipe.name, "question": spec.question,
                "arms": [a.name for a in spec.arms], "replicates": spec.replicates,
                "control": spec.control, "endpoint": spec.endpoint.metric,
                "direction": spec.direction, "stages": self.stages, "valid": True,
                "external_arms": list(spec.external_arms),
                "external_stages": list(spec.recipe.external_stages)
                if spec.planned_external_arms else [],
                "evaluation_only": spec.evaluation_only,
                "metrics": [{"name": m.name, "direction": m.direction,
                             "aggregation": m.aggregation, "missing": m.missing}
                            for m in spec.recipe.metrics]}


def check(study: str | Path, workspace: str | Path | None) -> Checked:
    """Validate a study file and plan it: per stage, cells, distinct and shared stage runs, how
    many are cached in this workspace, and the median duration of finished runs."""
    from fairtrial.store import artifacts

    spec = load(study)
    ws = open_workspace(workspace)
    p = plan(spec, ws)
    store = open_store(ws)
    history = store.durations(spec.recipe.name)
    rows = []
    for st in p.stages:
        nodes = [n for n in p.nodes.values() if n.stage == st]
        if not nodes:   # a stage no arm runs (a study of external arms runs only theirs)
            continue
        cached = sum(1 for n in nodes if artifacts.verify(ws, n.key).ok)
        shared = sum(1 for n in nodes if len(n.cells) > 1)
        hist = history.get(st)
        est = sorted(hist)[len(hist) // 2] if hist else None
        rows.append({"stage": st, "cells": sum(1 for (_, _, s), _ in p.cells.items() if s == st),
                     "runs": len(nodes), "shared": shared, "cached": cached,
                     "to_run": len(nodes) - cached, "est_s_each": est,
                     "seeded": spec.recipe.stage(st).seeded})
    return Checked(spec=spec, stages=rows)


# ---------------------------------------------------------------- run
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


# ---------------------------------------------------------------- status, stop, logs
def resolve_study(arg: str | None, store) -> list[str]:
    """Study names: all in the workspace (None), the one a study file names, or `arg` itself."""
    if arg is None:
        return [s["name"] for s in store.list_studies()]
    p = Path(arg)
    if p.suffix == ".toml" and p.exists():
        return [load(p).name]
    if store.get_study(arg):
        return [arg]
    known = [s["name"] for s in store.list_studies()]
    raise UserError(f'unknown study "{arg}"; known in this workspace: {", ".join(known) or "none"}')


@dataclass
class StatusQuery:
    """The studies `status` shows; `read()` derives their status afresh (for --watch, again)."""
    ws: Workspace
    store: Any
    names: list[str]

    def read(self, verify: bool = False) -> list[StudyStatus]:
        from fairtrial.status import study_status

        return [study_status(self.ws, self.store, n, verify) for n in self.names]


def status(workspace: str | Path | None, study: str | None = None) -> StatusQuery:
    """The studies to show: one (a name or a study file) or all of the workspace. Only reads;
    a read-only workspace is read without SQLAlchemy's write access."""
    ws = open_workspace(workspace)
    try:
        store = open_store(ws)
    except Exception:
        from fairtrial.store.fastread import reader_for

        store = reader_for(ws.db_url)
        if store is None:
            raise
    return StatusQuery(ws=ws, store=store, names=resolve_study(study, store))


def stop(workspace: str | Path | None, study: str | None = None, timeout: float = 60,
         on_stopped: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """End running supervisors cleanly (SIGTERM; their stage runs resume on the next run).
    Returns [{"study", "pid"}]; Refused when none runs or one does not end within `timeout`."""
    import socket

    from fairtrial.engine.pidfile import read_supervisor
    from fairtrial.status import _alive

    ws = open_workspace(workspace)
    store = open_store(ws)
    names = resolve_study(study, store)
    live = []
    for n in names:
        sup = read_supervisor(ws.study_dir(n) / "supervisor.json")
        if sup and _alive(sup.get("pid"), sup.get("host"), socket.gethostname()):
            live.append((n, sup))
    if not live:
        raise Refused("nothing to stop: no supervisor is running" +
                      (f" for {names[0]}" if study else ""))
    stopped = []
    for n, sup in live:
        os.kill(sup["pid"], signal.SIGTERM)
        deadline = time.time() + timeout
        while time.time() < deadline and _alive(sup["pid"], None, ""):
            time.sleep(0.2)
        if _alive(sup["pid"], None, ""):
            raise Refused(f"{n}: supervisor pid {sup['pid']} did not end within {timeout:.0f}s")
        stopped.append({"study": n, "pid": sup["pid"]})
        if on_stopped is not None:
            on_stopped(stopped[-1])
    return stopped


def find_key(ref: str, study: str | None, ws: Workspace, store) -> str:
    """A stage run's key from a key prefix (6+ characters) or ARM/SEED/STAGE with a study."""
    if "/" in ref:
        parts = ref.split("/")
        if len(parts) != 3 or not study:
            raise UserError("give arm/seed/stage together with --study NAME")
        names = resolve_study(study, store)
        for c in store.get_cells(names[0]):
            if (c["arm"], str(c["replicate"]), c["stage"]) == tuple(parts):
                return c["key"]
        raise UserError(f"no cell {ref} in study {names[0]}")
    if len(ref) < 6:
        raise UserError("give at least 6 characters of the stage-run key")
    matches = [k for k in store.get_runs() if k.startswith(ref)]
    if not matches:
        raise UserError(f"no stage run with key {ref}...")
    if len(matches) > 1:
        raise UserError(f"{ref} is ambiguous: {len(matches)} stage runs match; give more characters")
    return matches[0]


def stage_log(ref: str, study: str | None, workspace: str | Path | None) -> Path:
    """The log file of a stage run (see `find_key` for `ref`); UserError when it has none yet."""
    ws = open_workspace(workspace)
    store = open_store(ws)
    key = find_key(ref, study, ws, store)
    path = ws.log(key)
    if not path.exists():
        raise UserError(f"stage run {key[:12]} has no log yet (it has not started)")
    return path


def artifact_folder(ref: str, study: str | None, workspace: str | Path | None) -> Path:
    """The verified artifact folder of a finished stage run (for recipe commands such as ilm's
    `infill`); UserError when the run has no verified artifact."""
    from fairtrial.store import artifacts

    ws = open_workspace(workspace)
    store = open_store(ws)
    key = find_key(ref, study, ws, store)
    if not artifacts.verify(ws, key).ok:
        raise UserError(f"stage run {key[:12]} has no verified artifact (is it done?)")
    return ws.artifact(key)


# ---------------------------------------------------------------- report
@dataclass
class Reported:
    result: Any
    """The fairtrial.analysis.AnalysisResult (`headline`, `to_dict()`)."""
    folder: Path
    """Where report.md, report.html and report.json were written."""


def report(spec: Spec, ws: Workspace, out: Path | None = None, seed: int = 20240601,
           resamples: int = 10_000) -> Reported:
    """Analyse the study's item scores and write report.md, report.html and report.json."""
    from fairtrial.report import render_html, render_markdown

    result = analyse(spec, ws, seed=seed, resamples=resamples)
    folder = out or ws.study_dir(spec.name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text(render_markdown(result))
    (folder / "report.html").write_text(render_html(result))
    (folder / "report.json").write_text(json.dumps(result.to_dict(), indent=1, default=str))
    return Reported(result=result, folder=folder)


def analyse(spec: Spec, ws: Workspace, seed: int = 20240601, resamples: int = 10_000,
            store=None):
    """The study's AnalysisResult (what `report` writes), computed afresh; writes nothing."""
    from fairtrial.analysis import AnalysisContext, StudyDesign, analyze
    from fairtrial.collect import gather

    store = store or open_store(ws)
    got = gather(ws, store, spec)
    design = StudyDesign.from_spec(spec)
    ctx = AnalysisContext(effective_params=got["effective_params"], provenance=got["provenance"],
                          complete=got["complete"], progress=got["progress"],
                          train_texts=got["train_texts"], eval_texts=got["eval_texts"],
                          splits=got["splits"])
    if got["scores"].empty:
        if got.get("sections"):  # the recipe reports what its stages found (curate's funnel)
            from fairtrial.analysis import without_scores

            result = without_scores(design, ctx)
            result.sections = got["sections"]
            return result
        raise UserError(f"{spec.name}: no item scores yet ({got['progress'].get('done', 0)} of "
                        f"{got['progress']['total']} stage runs done); run the study first")
    result = analyze(got["scores"], design, ctx, seed=seed, n_resamples=resamples)
    result.sections = got.get("sections") or []
    return result


# ---------------------------------------------------------------- import
def import_scores(spec: Spec, ws: Workspace, arm: str, scores: Path, metric: str | None = None,
                  eval_set: str | None = None, outputs: bool = False) -> dict[str, Any]:
    """Add item scores produced elsewhere as an external arm; returns {"arm", "key", "rows",
    "eval_sets", "replicates", "coverage", "same_items_as_study"} (see docs/cli.md).
    `outputs`: the file holds raw outputs, scored by the recipe's own scorer (plus "outputs":
    {"items", "scored", "missing", "missing_ids"})."""
    from fairtrial.importer import import_scores as _import

    store = open_store(ws)
    if not store.get_study(spec.name):
        store.upsert_study(spec.name, str(spec.path), spec.recipe.name, spec.digest, spec.raw)
    return _import(ws, store, spec, arm, scores, metric, eval_set, outputs=outputs)


# ---------------------------------------------------------------- recipes, versions
def recipes() -> list[dict[str, Any]]:
    """Every public recipe: {"name", "available": True, "description", "stages": [{"name",
    "version", "needs"}], "metrics": [{"name", "direction", "aggregation"}]}, or {"name",
    "available": False, "error"} for one that cannot be loaded."""
    from fairtrial.recipes import registry

    rows = []
    for name in registry.names():
        try:
            r = registry.get(name)
        except UserError as e:
            rows.append({"name": name, "available": False, "error": str(e)})
            continue
        rows.append({"name": name, "available": True, "description": r.description,
                     "stages": [{"name": s.name, "version": s.version,
                                 "needs": list(s.needs)} for s in r.stages],
                     "metrics": [{"name": m.name, "direction": m.direction,
                                  "aggregation": m.aggregation} for m in r.metrics]})
    return rows


LIBRARIES = ("torch", "transformers", "numpy", "pandas", "pyarrow", "sqlalchemy", "pydantic")


def versions() -> dict[str, Any]:
    """fairtrial's version, the code version recorded in every artifact, Python's and the main
    libraries' (None: not installed). Never raises for a missing library."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    from fairtrial import __version__
    from fairtrial.store.artifacts import code_version

    libs: dict[str, str | None] = {}
    for lib in LIBRARIES:
        try:
            libs[lib] = dist_version(lib)
        except PackageNotFoundError:
            libs[lib] = None
    return {"fairtrial": __version__, "code_version": code_version(),
            "python": platform.python_version(), "libraries": libs}


# ---------------------------------------------------------------- dashboard reads (fairtrial ui)
# The web dashboard (fairtrial.web) shows nothing it computes itself: these read the store, the
# artifacts and the analysis. Every name a client sends is looked up among what exists (a study
# in the store, a stage-run key in the records, a file name in a verified manifest) and never used
# as a path.
@dataclass
class Reader:
    """A workspace and its record store, opened once for a long-running reader (the dashboard)."""
    ws: Workspace
    store: Any


def reader(workspace: str | Path | None) -> Reader:
    ws = open_workspace(workspace)
    return Reader(ws=ws, store=open_store(ws))


class NotFound(UserError):
    """A study, stage run or file the client named does not exist (the dashboard answers 404)."""


def _known_study(r: Reader, name: str) -> dict[str, Any]:
    rec = r.store.get_study(name) if isinstance(name, str) and name else None
    if rec is None:
        raise NotFound(f'unknown study "{name}"')
    return rec


def _known_key(r: Reader, key: str) -> dict[str, Any]:
    # a full key only (no prefixes: the dashboard links by full key), hex digits only
    if not isinstance(key, str) or not 8 <= len(key) <= 64 or set(key) - set("0123456789abcdef"):
        raise NotFound("no such stage run")
    rec = r.store.get_run(key)
    if rec is None:
        raise NotFound(f"no stage run with key {key}")
    return rec


def dashboard_studies(r: Reader) -> list[dict[str, Any]]:
    """Every study of the workspace: name, question, recipe, state counts, ETA, whether a
    supervisor runs it, and the headline of the report last written to its folder (if any)."""
    out = []
    for s in r.store.list_studies():
        st = StatusQuery(r.ws, r.store, [s["name"]]).read()[0]
        spec = s.get("spec") or {}
        last = None
        rj = r.ws.study_dir(s["name"]) / "report.json"
        try:
            last = {"headline": json.loads(rj.read_text()).get("headline"),
                    "written_at": rj.stat().st_mtime}
        except (OSError, ValueError, AttributeError):
            pass
        out.append({"name": s["name"], "question": spec.get("question"), "recipe": s.get("recipe"),
                    "totals": st.totals, "eta_s": st.eta_s, "running": st.supervisor is not None,
                    "updated_at": s.get("updated_at"), "last_report": last,
                    "fingerprint": status_fingerprint(st)})
    return out


def status_fingerprint(st: StudyStatus) -> str:
    """A digest of which stage runs are done or cached: an analysis stays valid while it holds."""
    import hashlib

    done = sorted(k for k, v in st.runs.items() if v.state in ("done", "cached"))
    return hashlib.sha256("\n".join(done).encode()).hexdigest()[:16]


def dashboard_study(r: Reader, name: str) -> dict[str, Any]:
    """`fairtrial status --json` of one study, with its question, recipe, arms and fingerprint."""
    rec = _known_study(r, name)
    st = StatusQuery(r.ws, r.store, [name]).read()[0]
    spec = rec.get("spec") or {}
    return {**st.to_dict(), "question": spec.get("question"), "recipe": rec.get("recipe"),
            "arms": [a.get("name") for a in spec.get("arms") or [] if isinstance(a, dict)],
            "control": spec.get("control"), "fingerprint": status_fingerprint(st)}


def dashboard_run(r: Reader, key: str) -> dict[str, Any]:
    """One stage run: its record (declared and effective params, OOM back-offs), state as status
    derives it, attempts, the cells that use it, and its verified manifest (files with digests)."""
    import socket

    from fairtrial.status import derive_state
    from fairtrial.store import artifacts

    rec = _known_key(r, key)
    v = artifacts.verify(r.ws, key)
    state = derive_state(rec, v.ok, rec.get("study"), time.time(), socket.gethostname())
    manifest = None
    if v.ok and v.manifest:
        m = v.manifest
        manifest = {"files": {n: {"sha256": f.get("sha256"), "size": f.get("size")}
                              for n, f in sorted((m.get("files") or {}).items())},
                    **{k: m.get(k) for k in ("code_version", "host", "committed_at", "needs",
                                             "input_digests", "input_files", "summary")}}
    cells = r.store.cells_of_key(key)
    log = r.ws.log(key)
    return {"key": key, "recipe": rec.get("recipe"), "stage": rec.get("stage"),
            "version": rec.get("version"), "seed": rec.get("seed"), "study": rec.get("study"),
            "state": state, "recorded_state": rec.get("state"),
            "verify": "ok" if v.ok else (v.reason or "missing"),
            "params": rec.get("params") or {}, "effective_params": rec.get("effective_params"),
            "adjustments": rec.get("adjustments") or [], "attempts_count": rec.get("attempts"),
            "attempts": [{k: a.get(k) for k in ("attempt", "study", "pid", "host", "started_at",
                                                 "ended_at", "outcome", "error")}
                         for a in r.store.get_attempts(key)],
            "progress": {k: rec.get(k) for k in ("progress_done", "progress_total",
                                                  "progress_unit", "rate", "message")},
            "started_at": rec.get("started_at"), "ended_at": rec.get("ended_at"),
            "duration_s": rec.get("duration_s"), "error": rec.get("error"),
            "needs": rec.get("needs"), "cells": cells, "manifest": manifest,
            "has_log": log.exists()}


def dashboard_log(r: Reader, key: str, offset: int = -1, limit: int = 65536) -> dict[str, Any]:
    """The stage run's log from byte `offset` (-1: its last `limit` bytes), at most `limit` bytes:
    {"text", "offset" (where the next read starts), "size"}. A log that shrank is read anew."""
    _known_key(r, key)
    path = r.ws.log(key)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return {"text": "", "offset": 0, "size": 0}
    except OSError as e:
        raise NotFound(f"log of {key[:12]} cannot be read: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        start = max(0, size - limit) if offset < 0 or offset > size else offset
        f.seek(start)
        data = f.read(min(limit, size - start))
    return {"text": data.decode("utf-8", errors="replace"), "offset": start + len(data),
            "size": size}


def artifact_file(r: Reader, key: str, name: str):
    """An open binary file of a finished stage run's artifact, addressed by its key and a name its
    verified manifest lists (never a path from the caller). Refuses (NotFound) a name not in the
    manifest and a file that resolves outside the artifact folder (a symlink pointing out)."""
    from fairtrial.store import artifacts

    _known_key(r, key)
    v = artifacts.verify(r.ws, key)
    if not v.ok or not v.manifest:
        raise NotFound(f"stage run {key[:12]} has no verified artifact")
    if not isinstance(name, str) or name not in (v.manifest.get("files") or {}):
        raise NotFound(f"stage run {key[:12]} has no file of that name in its manifest")
    folder = os.path.realpath(r.ws.artifact(key))
    if not folder.startswith(os.path.realpath(r.ws.artifacts) + os.sep):
        raise NotFound(f"the artifact of {key[:12]} lies outside the workspace")
    path = os.path.join(folder, name)
    real = os.path.realpath(path)
    if real != os.path.normpath(path) or not real.startswith(folder + os.sep):
        raise NotFound(f"{name} of {key[:12]} is a link; links are not served")
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        raise NotFound(f"{name} of {key[:12]} cannot be opened") from None
    f = os.fdopen(fd, "rb")
    st = os.fstat(fd)
    import stat as _stat

    if not _stat.S_ISREG(st.st_mode):
        f.close()
        raise NotFound(f"{name} of {key[:12]} is not a plain file")
    return f


def _stored_spec(r: Reader, name: str) -> Spec:
    rec = _known_study(r, name)
    path = rec.get("path")
    if not path or not Path(path).exists():
        raise UserError(f'study "{name}": its study file {path} no longer exists; the report '
                        "and comparisons need it")
    return load(path)


def dashboard_report(r: Reader, name: str, seed: int = 20240601,
                     resamples: int = 10_000) -> dict[str, Any]:
    """What `fairtrial report` writes, as data: the headline (its first line), verdict, integrity
    findings and the report's blocks (headings, paragraphs, tables, plots as base64 PNG)."""
    import base64

    from fairtrial.report.document import Heading, Image, Para, Table, build

    result = analyse(_stored_spec(r, name), r.ws, seed=seed, resamples=resamples, store=r.store)
    blocks: list[dict[str, Any]] = []
    for b in build(result):
        if isinstance(b, Para):
            blocks.append({"kind": "para", "text": b.text, "class": b.kind})
        elif isinstance(b, Heading):
            blocks.append({"kind": "heading", "text": b.text, "level": b.level})
        elif isinstance(b, Table):
            blocks.append({"kind": "table", "header": list(b.header),
                           "rows": [[str(c) for c in row] for row in b.rows],
                           "classes": list(b.classes)})
        elif isinstance(b, Image):
            png = b.render()
            if png:
                blocks.append({"kind": "image", "title": b.title,
                               "png": base64.b64encode(png).decode()})
    return {"study": name, "headline": result.headline, "verdict": result.verdict,
            "complete": result.complete, "progress": result.progress,
            "findings": [{"severity": f.severity, "code": f.code, "message": f.message}
                         for f in result.findings], "blocks": blocks}


def dashboard_compare(r: Reader, name: str, a: str, b: str, metric: str | None = None,
                      eval_set: str | None = None, top: int = 25) -> dict[str, Any]:
    """Two arms item by item on a metric (default: the endpoint): per item, the mean over the
    seeds both arms have of (a - b), paired on item and seed; the items where they disagree most,
    with the item text where the recipe exposes it (its integrity hook's eval texts)."""
    from fairtrial.collect import gather

    spec = _stored_spec(r, name)
    got = gather(r.ws, r.store, spec)
    df = got["scores"]
    metric = metric or spec.endpoint.metric
    arms = sorted(set(df["arm"])) if not df.empty else []
    for arm in (a, b):
        if arm not in arms:
            raise NotFound(f'study "{name}" has no item scores for arm "{arm}"; arms with scores: '
                           f"{', '.join(arms) or 'none'}")
    df = df[(df["metric"] == metric) & (df["system"] == "model")]
    sets = sorted(set(df["eval_set"]))
    if not sets:
        raise NotFound(f'study "{name}" has no item scores for metric "{metric}"')
    eval_set = eval_set or sets[0]
    if eval_set not in sets:
        raise NotFound(f'no eval set "{eval_set}"; known: {", ".join(sets)}')
    df = df[df["eval_set"] == eval_set]
    pa = df[df["arm"] == a].set_index(["item_id", "replicate"])["value"]
    pb = df[df["arm"] == b].set_index(["item_id", "replicate"])["value"]
    pa = pa[~pa.index.duplicated()]
    pb = pb[~pb.index.duplicated()]
    both = pa.index.intersection(pb.index)
    diff = (pa.loc[both] - pb.loc[both]).groupby(level="item_id").mean()
    va = pa.loc[both].groupby(level="item_id").mean()
    vb = pb.loc[both].groupby(level="item_id").mean()
    seeds = sorted({int(s) for s in both.get_level_values("replicate")})
    direction = next((m.direction for m in spec.recipe.metrics if m.name == metric), None) \
        if spec.recipe is not None else None
    texts = (got.get("eval_texts") or {}).get(eval_set) or {}
    order = diff.abs().sort_values(ascending=False, kind="stable").index[:max(0, top)]
    items = [{"item_id": str(i), "a": float(va[i]), "b": float(vb[i]), "diff": float(diff[i]),
              "text": texts.get(str(i))} for i in order]
    n = len(diff)
    return {"study": name, "a": a, "b": b, "metric": metric, "direction": direction,
            "eval_set": eval_set, "eval_sets": sets, "arms": arms, "seeds": seeds,
            "n_items": n, "only_a": len(pa.index.difference(both)),
            "only_b": len(pb.index.difference(both)),
            "mean_a": float(va.mean()) if n else None, "mean_b": float(vb.mean()) if n else None,
            "mean_diff": float(diff.mean()) if n else None,
            "a_higher": int((diff > 0).sum()), "b_higher": int((diff < 0).sum()),
            "ties": int((diff == 0).sum()), "items": items,
            "has_text": bool(texts)}
