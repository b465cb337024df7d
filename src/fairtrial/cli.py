"""The command line: thin. Every number it shows comes from the store, the artifacts or analysis.

Exit codes: 0 ok; 1 a study or check failed; 2 bad input (a usage error included); 3 refused
(locked, nothing to stop); 74 environment fault (disk full, unwritable workspace, damaged record
store); 70 internal error (the traceback is in the log file named on screen). See errors.py.

Every text a user or a stage wrote (names, questions, paths, error messages) is printed with its
square brackets escaped or with markup off: rich would read "[/INST]" or "[[arms]]" as markup.
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
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fairtrial import __version__
from fairtrial.errors import EnvironmentFault, Refused, UserError, environment_fault

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Run comparative ML training studies and turn them into honest verdicts.")
# not a terminal (a pipe, a log file, CI): no wrapping, so every message stays on one line
console = Console(soft_wrap=not sys.stdout.isatty(), width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=not sys.stderr.isatty())

WorkspaceOpt = typer.Option(None, "--workspace", "-w", envvar="FAIRTRIAL_WORKSPACE",
                            help="Workspace folder (default: .fairtrial in the current directory).")


@app.callback()
def _global_options(workspace: Optional[Path] = typer.Option(
        None, "--workspace", "-w", help="Workspace folder for the command that follows (as if given "
                                        "to it): `fairtrial -w DIR status`.")) -> None:
    """Run comparative ML training studies and turn them into honest verdicts."""
    # Every command reads $FAIRTRIAL_WORKSPACE as its --workspace default, and click parses the
    # command's options after this callback ran: so a global -w counts as the command's own
    # default, and a -w given to the command itself still wins.
    if workspace is not None:
        os.environ["FAIRTRIAL_WORKSPACE"] = str(workspace)


def _q(text) -> str:
    """A path or name as one shell word, for hint commands a user copies."""
    return shlex.quote(str(text))


def _ws(workspace: Optional[Path]):
    from fairtrial.workspace import Workspace

    ws = Workspace.find(workspace)
    if ws.root.exists() and not ws.root.is_dir():
        raise UserError(f"workspace {ws.root} is a file, not a folder; give a folder with "
                        "--workspace (it is created when missing)")
    try:
        return ws.ensure()
    except (NotADirectoryError, FileExistsError):  # a file where a folder of it should be
        raise UserError(f"workspace {ws.root} cannot be made: a part of its path is a file, not a "
                        "folder; give another --workspace") from None
    except OSError as e:
        fault = environment_fault(e)
        if fault is not None and str(fault).startswith("disk full"):
            raise fault from None
        raise EnvironmentFault(f"workspace {ws.root} cannot be created or written: "
                               f"{e.strerror or e}" + (f" ({e.filename})" if e.filename else "")) from None


_DB_URL: list[str] = []  # the record store in use, named in environment-fault messages


def _store(ws):
    from fairtrial.store.db import Store

    _DB_URL[:] = [ws.db_url]
    return Store(ws.db_url)


def _emit_json(obj) -> None:
    # no indent: json's C encoder only runs without one (status --json on 10,000 runs)
    sys.stdout.write(json.dumps(obj, default=str) + "\n")


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _plan(spec, ws):
    """The study's plan, with input-file digests cached in the workspace."""
    from fairtrial.plan import plan_for
    from fairtrial.recipes.api import StageError
    from fairtrial.store.digests import DigestCache

    digests = DigestCache(ws.root / "digests.json")
    try:
        plan = plan_for(spec, digests)
    except FileNotFoundError as e:
        raise UserError(f"{spec.path.name}: input file {e} does not exist") from None
    except StageError as e:  # a recipe naming its input files found bad params (a missing data path)
        raise UserError(f"{spec.path.name}: {e}") from None
    digests.save()
    return plan


# ---------------------------------------------------------------- check
@app.command()
def check(study: Path = typer.Argument(..., help="The study file (TOML)."),
          workspace: Optional[Path] = WorkspaceOpt,
          as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON.")) -> None:
    """Validate a study file and print its plan: arms x replicates x stages, shared and cached
    stage runs, and estimated time per stage when history exists."""
    from fairtrial.spec import load_spec
    from fairtrial.store import artifacts

    spec = load_spec(study)
    ws = _ws(workspace)
    plan = _plan(spec, ws)
    store = _store(ws)
    history = store.durations(spec.recipe.name)
    rows = []
    for st in plan.stages:
        nodes = [n for n in plan.nodes.values() if n.stage == st]
        cached = sum(1 for n in nodes if artifacts.verify(ws, n.key).ok)
        shared = sum(1 for n in nodes if len(n.cells) > 1)
        hist = history.get(st)
        est = sorted(hist)[len(hist) // 2] if hist else None
        rows.append({"stage": st, "cells": len(spec.arms) * len(spec.replicates),
                     "runs": len(nodes), "shared": shared, "cached": cached,
                     "to_run": len(nodes) - cached, "est_s_each": est,
                     "seeded": spec.recipe.stage(st).seeded})
    out = {"study": spec.name, "recipe": spec.recipe.name, "question": spec.question,
           "arms": [a.name for a in spec.arms], "replicates": spec.replicates,
           "control": spec.control, "endpoint": spec.endpoint.metric, "direction": spec.direction,
           "stages": rows, "valid": True, "external_arms": list(spec.external_arms),
           "evaluation_only": spec.evaluation_only,
           "metrics": [{"name": m.name, "direction": m.direction, "aggregation": m.aggregation}
                       for m in spec.recipe.metrics]}
    if as_json:
        _emit_json(out)
        return
    if spec.evaluation_only:
        _check_evaluation_only(spec, study)
        return
    console.print(f"[bold]{escape(spec.name)}[/]: {escape(spec.question)}", highlight=False)
    console.print(f"recipe {spec.recipe.name}; {len(spec.arms)} arms x {len(spec.replicates)} "
                  f"replicates (seeds {spec.replicates}); control: {spec.control or '-'}; "
                  f"endpoint: {spec.endpoint.metric} ({spec.direction} is better)",
                  markup=False, highlight=False)
    console.print("arms: " + ", ".join(a.name for a in spec.arms), markup=False, highlight=False)
    t = Table("stage", "cells", "stage runs", "shared", "cached", "to run", "est. each")
    for r in rows:
        t.add_row(escape(r["stage"]), str(r["cells"]), str(r["runs"]), str(r["shared"]), str(r["cached"]),
                  str(r["to_run"]), _fmt_s(r["est_s_each"]) if r["est_s_each"] else "-")
    console.print(t)
    console.print("[green]valid[/]")


def _check_evaluation_only(spec, study: Path) -> None:
    """An evaluation-only study has no plan: say what it compares and how its scores come in."""
    console.print(f"[bold]{escape(spec.name)}[/]: {escape(spec.question)}", highlight=False)
    ep = spec.recipe.metric(spec.endpoint.metric)
    console.print(f"evaluation only (recipe {spec.recipe.name}): {len(spec.external_arms)} external "
                  f"arms, nothing to train; control: {spec.control or '-'}; endpoint: "
                  f"{ep.name} ({ep.direction} is better, {ep.aggregation})",
                  highlight=False, markup=False)
    if len(spec.replicates) > 1:
        console.print(f"replicates {spec.replicates}: an external arm is one fixed system; its "
                      "scores are imported once and count as one replicate", markup=False)
    console.print("import each system's per-item scores, then report:", markup=False)
    for a in spec.external_arms:
        console.print(f"  fairtrial import {_q(str(study))} {_q(a + '.jsonl')} --arm {_q(a)}",
                      highlight=False, markup=False)
    console.print(f"  fairtrial report {_q(str(study))}", highlight=False, markup=False)
    console.print("[green]valid[/]")


# ---------------------------------------------------------------- run
@app.command()
def run(study: Path = typer.Argument(..., help="The study file (TOML)."),
        workspace: Optional[Path] = WorkspaceOpt,
        detach: bool = typer.Option(False, "--detach", "-d",
                                    help="Run in a background supervisor and return at once."),
        cpus: Optional[float] = typer.Option(None, help="CPU slots (default: all cores)."),
        memory_gb: Optional[float] = typer.Option(None, help="Memory budget (default: 90% of RAM)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
        as_json: bool = typer.Option(False, "--json",
                                     help="No progress display; print the outcome as JSON.")) -> None:
    """Run a study (resumes whatever is not done; cached stage runs are not run again)."""
    from fairtrial.spec import load_spec

    _check_budget("--cpus", cpus)
    _check_budget("--memory-gb", memory_gb)
    spec = load_spec(study)
    ws = _ws(workspace)
    if spec.evaluation_only:  # nothing to train: say what to do instead of "0 of 0 stage runs"
        if as_json:
            _emit_json({"study": spec.name, "ok": True, "stage_runs": 0, "run": 0, "cached": 0,
                        "failed": [], "skipped": [], "interrupted": False,
                        "evaluation_only": True})
        else:
            q = shlex.quote(str(study))
            console.print(f"{spec.name}: an evaluation-only study has nothing to run; import each "
                          f"system's per-item scores (fairtrial import {q} SCORES.jsonl --arm "
                          f"ARM), then: fairtrial report {q}", markup=False, highlight=False)
        raise typer.Exit(0)
    if detach:
        _detach(study, ws, cpus, memory_gb, as_json)
        return
    outcome = _run_foreground(spec, ws, cpus, memory_gb, quiet or as_json, as_json)
    if as_json:
        _emit_json(outcome)
    raise typer.Exit(0 if outcome["ok"] else 1)


@app.command()
def resume(study: Path = typer.Argument(..., help="The study file (TOML)."),
           workspace: Optional[Path] = WorkspaceOpt,
           detach: bool = typer.Option(False, "--detach", "-d"),
           cpus: Optional[float] = typer.Option(None), memory_gb: Optional[float] = typer.Option(None),
           quiet: bool = typer.Option(False, "--quiet", "-q"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Same as `run`: finds lost and unfinished stage runs and completes them."""
    run(study, workspace, detach, cpus, memory_gb, quiet, as_json)


def _check_budget(option: str, value: float | None) -> None:
    """--cpus / --memory-gb: a finite positive number (nan made the scheduler wait forever)."""
    import math

    if value is not None and not (math.isfinite(value) and value > 0):
        raise UserError(f"{option} must be a positive finite number, got {value}")


def _detach(study: Path, ws, cpus, memory_gb, as_json: bool = False) -> None:
    from fairtrial.engine.local import StudyLock
    from fairtrial.spec import load_spec

    spec = load_spec(study)
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
    if as_json:
        _emit_json({"study": spec.name, "detached": True, "pid": proc.pid, "log": str(log),
                    "finished": finished})
        return
    if finished:
        last = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        console.print(f"{spec.name}: the background run finished at once: {last[0]}", markup=False,
                      highlight=False)
        console.print(f"log: {log}; report: fairtrial report {_q(study)}", markup=False, highlight=False)
        return
    console.print(f"started {spec.name} in the background (pid {proc.pid}); log: {log}", markup=False,
                  highlight=False)
    console.print(f"watch: fairtrial status {_q(spec.name)} --watch    stop: fairtrial stop {_q(spec.name)}",
                  markup=False, highlight=False)


def _run_foreground(spec, ws, cpus, memory_gb, quiet, as_json: bool = False) -> dict:
    """Run the study in this process; returns the outcome (`ok`, counts, failed runs)."""
    from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,
                               TimeRemainingColumn)

    from fairtrial.engine.local import Slots, StudyLock, Supervisor

    store = _store(ws)
    lock = StudyLock(ws, spec.name)
    lock.acquire()
    try:
        plan = _plan(spec, ws)
        store.upsert_study(spec.name, str(spec.path), spec.recipe.name, spec.digest,
                           dict(spec.raw, _stages=[s.name for s in spec.recipe.stages]))
        store.ensure_runs([n.to_record() for n in plan.nodes.values()], spec.name)
        store.set_cells(spec.name, [(a, r, s, k) for (a, r, s), k in plan.cells.items()])
        slots = Slots.of_machine(cpus, memory_gb)
        show = not quiet and console.is_terminal
        progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                            TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                            console=console, disable=not show)
        overall = progress.add_task(escape(spec.name), total=len(plan.nodes), info="")
        tasks: dict[str, int] = {}
        last = [0.0]

        def label(key: str) -> str:
            n = plan.nodes[key]
            arms = sorted({a for a, _ in n.cells})
            who = arms[0] if len(arms) == 1 else f"{len(arms)} arms"
            seed = f" seed {n.seed}" if n.seed is not None else ""
            return escape(f"  {n.stage} [{who}{seed}] {key[:8]}")

        def on_event(kind: str, info: dict) -> None:
            key = info.get("key")
            if kind == "started":
                tasks[key] = progress.add_task(label(key), total=None, info="")
            elif kind in ("done", "failed", "lost", "retry", "oom") and key in tasks:
                progress.remove_task(tasks.pop(key))
            if kind in ("done", "failed", "skipped", "lost", "retry", "oom", "corrupt", "held",
                        "cached"):
                if kind in ("done", "cached"):
                    progress.advance(overall)
                # a stage's error is the stage's text: "[/INST]" in it is not markup
                info = {k: escape(str(v)) if isinstance(v, str) else v for k, v in info.items()}
                info["changed"] = escape(str(info.get("changed")))
                msg = {"done": "[green]done[/]", "failed": f"[red]failed[/]: {info.get('error')}",
                       "skipped": "[yellow]skipped[/] (an upstream stage failed)",
                       "lost": f"[yellow]lost[/]: {info.get('error')}; running it again",
                       "retry": f"[yellow]retry in {info.get('delay', 0):.0f}s[/]: {info.get('error')}",
                       "oom": f"[yellow]out of memory[/]: retrying with {info.get('changed')}",
                       "corrupt": f"[yellow]corrupt artifact[/] ({info.get('reason')}): rerunning",
                       "held": f"[blue]waiting[/]: study {info.get('by')} is running it",
                       "cached": "[cyan]done by another run[/]: taken as cached"}[kind]
                if not quiet:
                    progress.console.print(f"{label(key).strip()}: {msg}", highlight=False)
            if kind == "tick" and tasks and time.time() - last[0] > 0.5:
                last[0] = time.time()
                recs = store.get_runs(list(tasks))
                for k, t in tasks.items():
                    r = recs.get(k) or {}
                    if r.get("progress_total"):
                        rate = r.get("rate")
                        progress.update(t, total=r["progress_total"], completed=r["progress_done"],
                                        info=escape((f"{rate:.1f} {r.get('progress_unit') or 'it'}/s"
                                                     if rate else "") +
                                                    (f" {r['message']}" if r.get("message") else "")))

        sup = Supervisor(ws, store, spec.name, plan, slots, on_event=on_event)
        with progress:
            result = sup.run()
            progress.update(overall, completed=result.done + result.cached)
        n_total = len(plan.nodes)
        failed = []
        for key in result.failed:
            rec = store.get_run(key) or {}
            failed.append({"key": key, "stage": plan.nodes[key].stage,
                           "error": (rec.get("error") or "").splitlines()[0] if rec.get("error") else ""})
        outcome = {"study": spec.name, "ok": result.ok, "stage_runs": n_total, "run": result.done,
                   "cached": result.cached, "failed": failed,
                   "skipped": [{"key": k, "stage": plan.nodes[k].stage} for k in result.skipped],
                   "interrupted": result.interrupted}
        if as_json:
            return outcome
        console.print(f"{spec.name}: {result.done} run, {result.cached} cached, "
                      f"{len(result.failed)} failed, {len(result.skipped)} skipped of {n_total} "
                      "stage runs" + (" (interrupted; `fairtrial run` resumes)" if result.interrupted else ""),
                      markup=False, highlight=False)
        for f in failed:
            console.print(f"  [red]failed[/] {escape(f['stage'])} {f['key'][:12]}: {escape(f['error'])}"
                          f"  (fairtrial logs {f['key'][:12]})", highlight=False)
        if result.skipped:
            names = sorted({plan.nodes[k].stage for k in result.skipped})
            console.print(f"  skipped downstream of failures: {len(result.skipped)} ({', '.join(names)})",
                          markup=False, highlight=False)
        return outcome
    finally:
        lock.release()
        store.dispose()


# ---------------------------------------------------------------- status
def _resolve_study(arg: Optional[str], store) -> list[str]:
    if arg is None:
        return [s["name"] for s in store.list_studies()]
    p = Path(arg)
    if p.suffix == ".toml" and p.exists():
        from fairtrial.spec import load_spec

        return [load_spec(p).name]
    if store.get_study(arg):
        return [arg]
    known = [s["name"] for s in store.list_studies()]
    raise UserError(f'unknown study "{arg}"; known in this workspace: {", ".join(known) or "none"}')


@app.command()
def status(study: Optional[str] = typer.Argument(None, help="Study name or file (default: all)."),
           workspace: Optional[Path] = WorkspaceOpt,
           as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
           watch: bool = typer.Option(False, "--watch", help="Refresh every 2 s until Ctrl-C."),
           verify: bool = typer.Option(False, "--verify", help="Re-hash every artifact file."),
           every: bool = typer.Option(False, "--all", help="List every cell, not only unfinished.")) -> None:
    """Status per arm x replicate x stage, derived from artifacts, records and process liveness."""
    from fairtrial.status import study_status

    ws = _ws(workspace)
    try:
        store = _store(ws)
    except Exception:  # noqa: BLE001 - e.g. a read-only workspace: status only reads
        from fairtrial.store.fastread import reader_for

        store = reader_for(ws.db_url)
        if store is None:
            raise
    names = _resolve_study(study, store)
    if as_json:
        _emit_json({"studies": [study_status(ws, store, n, verify).to_dict() for n in names]})
        return
    if watch and not console.is_terminal:  # a pipe or a log: print a fresh view every 2 s
        try:
            while True:
                console.print(_status_view([study_status(ws, store, n) for n in names], every))
                console.rule()
                sys.stdout.flush()
                time.sleep(2)
        except KeyboardInterrupt:
            return
    if watch:
        from rich.live import Live

        try:
            with Live(console=console, refresh_per_second=1) as live:
                while True:
                    live.update(_status_view([study_status(ws, store, n) for n in names], every))
                    time.sleep(2)
        except KeyboardInterrupt:
            return
    if not names:
        console.print("no studies in this workspace yet")
        return
    console.print(_status_view([study_status(ws, store, n, verify) for n in names], every))


STATE_STYLE = {"done": "green", "cached": "cyan", "running": "blue", "pending": "white",
               "failed": "red", "lost": "yellow"}


def _status_view(statuses, every: bool):
    """One table per study: arm x seed rows, a short state per stage; details listed below."""
    from rich.console import Group

    parts = []
    for st in statuses:
        sup = st.supervisor
        head = f"[bold]{escape(st.study)}[/]  " + "  ".join(
            f"[{STATE_STYLE.get(k, 'white')}]{k} {v}[/]" for k, v in sorted(st.totals.items())
            if k != "total") + f"  (of {st.totals.get('total', 0)} stage runs)"
        if st.eta_s:
            head += f"   ETA {_fmt_s(st.eta_s)}"
        head += f"   supervisor pid {sup['pid']}" if sup else "   no supervisor running"
        parts.append(head)
        stages = st.stages or sorted({c.stage for c in st.cells})
        t = Table("arm", "seed", *map(escape, stages), caption="* shared by several arms/seeds; "
                  "+ trained with an OOM back-off")
        grid: dict[tuple, dict] = {}
        for c in st.cells:
            grid.setdefault((c.arm, c.replicate), {})[c.stage] = c
        hidden = 0
        for (arm, rep), row in grid.items():
            if not every and len(grid) > 30 and all(row[s].state in ("done", "cached") for s in row):
                hidden += 1
                continue
            cells = []
            for s in stages:
                c = row.get(s)
                if not c:
                    cells.append("")
                    continue
                r = st.runs[c.key]
                txt = f"[{STATE_STYLE.get(r.state, 'white')}]{r.state}[/]"
                if r.state == "running" and r.progress_total:
                    txt += f" {100 * (r.progress or 0) / r.progress_total:.0f}%"
                txt += ("*" if r.shared else "") + ("+" if r.adjustments else "")
                cells.append(txt)
            t.add_row(escape(arm), str(rep), *cells)
        parts.append(t)
        if hidden:
            parts.append(f"({hidden} finished arm x seed rows hidden; --all shows them)")
        for r in st.runs.values():
            who = ", ".join(r.arms[:3]) + (f" +{len(r.arms) - 3}" if len(r.arms) > 3 else "")
            if r.state == "running":
                rate = escape(f", {r.rate:.2f} {r.unit or 'it'}/s") if r.rate else ""
                prog = (escape(f"{r.progress:.0f}/{r.progress_total:.0f} {r.unit or ''}")
                        if r.progress_total else "started")
                parts.append(f"  [blue]running[/] {escape(r.stage)} {escape('[' + who + ']')} {r.key[:12]}: {prog}{rate}"
                             f"{', ETA ' + _fmt_s(r.eta_s) if r.eta_s is not None else ''}"
                             f"{' - ' + escape(r.message) if r.message else ''}")
            elif r.state in ("failed", "lost"):
                parts.append(f"  [{STATE_STYLE[r.state]}]{r.state}[/] {escape(r.stage)} {escape('[' + who + ']')} "
                             f"{r.key[:12]}: {escape(r.error or '')}  (fairtrial logs {r.key[:12]})")
    return Group(*parts)


# ---------------------------------------------------------------- stop
@app.command()
def stop(study: Optional[str] = typer.Argument(None, help="Study name or file."),
         workspace: Optional[Path] = WorkspaceOpt,
         timeout: float = typer.Option(60, help="Seconds to wait for a clean end."),
         as_json: bool = typer.Option(False, "--json", help="Print what was stopped as JSON.")) -> None:
    """End a background run cleanly (running stage runs are interrupted and resume later)."""
    from fairtrial.engine.pidfile import read_supervisor
    from fairtrial.status import _alive

    ws = _ws(workspace)
    store = _store(ws)
    names = _resolve_study(study, store)
    import socket

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
        if not as_json:
            console.print(f"stopped {n} (supervisor pid {sup['pid']}); `fairtrial run` resumes it",
                          markup=False, highlight=False)
    if as_json:
        _emit_json({"stopped": stopped})


# ---------------------------------------------------------------- logs
@app.command()
def logs(stage_run: str = typer.Argument(..., help="A stage-run key (a prefix of 6+ characters) "
                                                   "or arm/seed/stage with --study."),
         study: Optional[str] = typer.Option(None, "--study", "-s"),
         workspace: Optional[Path] = WorkspaceOpt,
         tail: int = typer.Option(0, help="Only the last N lines."),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines.")) -> None:
    """Show a stage run's log."""
    ws = _ws(workspace)
    store = _store(ws)
    key = _find_key(stage_run, study, ws, store)
    path = ws.log(key)
    if not path.exists():
        raise UserError(f"stage run {key[:12]} has no log yet (it has not started)")
    text = path.read_text(errors="replace")
    lines = text.splitlines()
    sys.stdout.write("\n".join(lines[-tail:] if tail else lines) + "\n")
    if follow:
        with open(path, errors="replace") as f:
            f.seek(0, 2)
            try:
                while True:
                    line = f.readline()
                    if line:
                        sys.stdout.write(line)
                        sys.stdout.flush()
                    else:
                        time.sleep(0.5)
            except KeyboardInterrupt:
                return


def _find_key(ref: str, study: Optional[str], ws, store) -> str:
    if "/" in ref:
        parts = ref.split("/")
        if len(parts) != 3 or not study:
            raise UserError("give arm/seed/stage together with --study NAME")
        names = _resolve_study(study, store)
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


# ---------------------------------------------------------------- report
@app.command()
def report(study: Path = typer.Argument(..., help="The study file (TOML)."),
           workspace: Optional[Path] = WorkspaceOpt,
           out: Optional[Path] = typer.Option(None, help="Folder for report.md and report.html "
                                                        "(default: the study's folder in the workspace)."),
           seed: int = typer.Option(20240601, min=0, max=2**63 - 1,
                                    help="Seed of the bootstrap (reports are reproducible)."),
           resamples: int = typer.Option(10_000, min=1, help="Bootstrap resamples."),
           as_json: bool = typer.Option(False, "--json", help="Print the analysis as JSON.")) -> None:
    """Analyse a study's item scores and write report.md and a self-contained report.html.
    The first line is the verdict with its effect and interval; integrity findings come next."""
    from fairtrial.analysis import AnalysisContext, StudyDesign, analyze
    from fairtrial.collect import gather
    from fairtrial.report import render_html, render_markdown
    from fairtrial.spec import load_spec

    spec = load_spec(study)
    ws = _ws(workspace)
    store = _store(ws)
    got = gather(ws, store, spec)
    design = StudyDesign.from_study(_design_dict(spec),
                                    {m.name: m.direction for m in spec.recipe.metrics},
                                    {m.name: m.aggregation for m in spec.recipe.metrics})
    ctx = AnalysisContext(effective_params=got["effective_params"], provenance=got["provenance"],
                          complete=got["complete"], progress=got["progress"],
                          train_texts=got["train_texts"], eval_texts=got["eval_texts"],
                          splits=got["splits"])
    if got["scores"].empty:
        raise UserError(f"{spec.name}: no item scores yet ({got['progress'].get('done', 0)} of "
                        f"{got['progress']['total']} stage runs done); run the study first")
    result = analyze(got["scores"], design, ctx, seed=seed, n_resamples=resamples)
    folder = out or ws.study_dir(spec.name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text(render_markdown(result))
    (folder / "report.html").write_text(render_html(result))
    (folder / "report.json").write_text(json.dumps(result.to_dict(), indent=1, default=str))
    if as_json:
        _emit_json(result.to_dict())
        return
    console.print(result.headline, highlight=False, markup=False)
    console.print(f"report: {folder / 'report.md'}  and  {folder / 'report.html'}", markup=False,
                  highlight=False)


@app.command("import")
def import_(study: Path = typer.Argument(..., help="The study file (TOML)."),
            arm: str = typer.Option(..., "--arm", help="An external arm named in the study's "
                                                       "external_arms."),
            scores: Path = typer.Argument(..., help="JSONL: item_id, value, metric, eval_set."),
            metric: Optional[str] = typer.Option(None, help="Metric of every line without one."),
            eval_set: Optional[str] = typer.Option(None, help="Eval set of every line without one."),
            workspace: Optional[Path] = WorkspaceOpt,
            as_json: bool = typer.Option(False, "--json")) -> None:
    """Add item scores produced elsewhere (e.g. a hosted API model) as an external arm."""
    from fairtrial.importer import import_scores
    from fairtrial.spec import load_spec

    spec = load_spec(study)
    ws = _ws(workspace)
    store = _store(ws)
    if not store.get_study(spec.name):
        store.upsert_study(spec.name, str(spec.path), spec.recipe.name, spec.digest, spec.raw)
    out = import_scores(ws, store, spec, arm, scores, metric, eval_set)
    if as_json:
        _emit_json(out)
        return
    console.print(f"imported {out['rows']} item scores as arm {arm} ({', '.join(out['eval_sets'])}); "
                  f"stage run {out['key'][:12]}", highlight=False, markup=False)
    for es, cov in out["coverage"].items():
        if cov["same"] is False:   # None: no other arm has scores on this eval set yet
            parts = []
            if cov["missing"]:
                parts.append(f"lacks {cov['missing']:,} of the {cov['others']:,} items the other "
                             f"arms have (e.g. {', '.join(cov['missing_ids'][:3])})")
            if cov["extra"]:
                parts.append(f"has {cov['extra']:,} items no other arm has")
            console.print(f"  note: eval set {es}: {arm} " + " and ".join(parts)
                          + "; the report compares each pair of arms on the items both have and "
                          "names the missing ones", highlight=False, markup=False)
    if out["replicates"] > 1:
        console.print(f"  note: {arm} is one fixed system: its scores stand for every seed of the "
                      "study and count as one replicate", highlight=False, markup=False)


def _design_dict(spec) -> dict:
    return {"name": spec.name, "question": spec.question, "control": spec.control,
            "replicates": spec.replicates,
            "endpoint": {"metric": spec.endpoint.metric, "direction": spec.direction,
                         "secondary": list(spec.endpoint.secondary)},
            "decision": spec.decision.model_dump(),
            "arms": {**{a.name: a.params for a in spec.arms},
                     **{e: {"external": True} for e in spec.external_arms}},
            "external_arms": list(spec.external_arms),
            "analysis": spec.analysis}


# ---------------------------------------------------------------- data
data_app = typer.Typer(help="The public data sets the recipes use: list and fetch them.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("list")
def data_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List the known data sets and where each is found on this machine."""
    from fairtrial.data import list_datasets

    rows = list_datasets()
    if as_json:
        _emit_json(rows)
        return
    t = Table("name", "files", "size", "licence", "found at")
    for r in rows:
        t.add_row(escape(r["name"]), str(r["n_files"]), f"{r['bytes'] / 1e6:.1f} MB", escape(r["licence"]),
                  escape(str(r["location"])) if r["location"] else
                  "[yellow]not here[/] " + escape(f"(fairtrial data fetch {_q(r['name'])})"))
    console.print(t)


@data_app.command("fetch")
def data_fetch(name: str = typer.Argument(..., help="A data set name (see `fairtrial data list`)."),
               dest: Optional[Path] = typer.Option(None, help="Folder to put it in."),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """Download a data set from its upstream addresses and verify every file's sha256."""
    from fairtrial.data import fetch

    def progress(k: int, n: int, path: str) -> None:
        if not as_json:
            console.print(f"  [{k}/{n}] {path} verified", highlight=False, markup=False)

    folder = fetch(name, dest, progress=progress)
    if as_json:
        _emit_json({"name": name, "path": str(folder)})
    else:
        console.print(f"{name}: {folder}", markup=False, highlight=False)


# ---------------------------------------------------------------- infill
@app.command()
def infill(model_run: str = typer.Argument(..., help="A train stage-run key (prefix), "
                                                     "arm/seed/train with --study, or a model folder."),
           text: str = typer.Argument(..., help='Text with blanks: "She _ to school every _ ." '
                                                "(_ = word; \\[ngram], \\[sentence] typed blanks)."),
           study: Optional[str] = typer.Option(None, "--study", "-s"),
           workspace: Optional[Path] = WorkspaceOpt,
           n: int = typer.Option(1, "-n", help="How many samples."),
           temperature: float = typer.Option(0.8, help="0 = greedy."),
           top_p: float = typer.Option(0.95), top_k: int = typer.Option(0),
           max_new_tokens: int = typer.Option(64), seed: int = typer.Option(0),
           device: str = typer.Option("cpu"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Fill the blanks of a text with a trained infilling model (recipe ilm)."""
    from fairtrial.recipes.ilm.infill import infill_with_answers, resolve_model_dir

    p = Path(model_run)
    if p.exists():
        folder = p
    else:
        ws = _ws(workspace)
        store = _store(ws)
        key = _find_key(model_run, study, ws, store)
        from fairtrial.store import artifacts

        if not artifacts.verify(ws, key).ok:
            raise UserError(f"stage run {key[:12]} has no verified artifact (is it done?)")
        folder = ws.artifact(key)
    if not (resolve_model_dir(folder) / "config.json").exists():
        raise UserError(f"{folder} holds no model (give a train stage run of recipe ilm)")
    try:
        out = infill_with_answers(folder, text, temperature=temperature, top_k=top_k, top_p=top_p,
                                  max_new_tokens=max_new_tokens, seed=seed, n=n, device=device)
    except ValueError as e:
        raise UserError(str(e)) from None
    if as_json:
        _emit_json([{"text": t, "answers": a} for t, a in out])
        return
    for t, a in out:
        console.print(t, highlight=False, markup=False)


# ---------------------------------------------------------------- recipes
@app.command()
def recipes(as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")) -> None:
    """List the recipes and their stages and metrics."""
    from fairtrial.recipes import registry

    rows = []
    for name in registry.names():
        try:
            r = registry.get(name)
        except UserError as e:
            rows.append({"name": name, "available": False, "error": str(e)})
            if not as_json:
                console.print(f"[bold]{escape(name)}[/]: unavailable ({escape(str(e))})")
            continue
        rows.append({"name": name, "available": True, "description": r.description,
                     "stages": [{"name": s.name, "version": s.version,
                                 "needs": list(s.needs)} for s in r.stages],
                     "metrics": [{"name": m.name, "direction": m.direction,
                                  "aggregation": m.aggregation} for m in r.metrics]})
        if as_json:
            continue
        console.print(f"[bold]{escape(name)}[/]: {escape(r.description)}")
        console.print("  stages: " + (" -> ".join(s.name for s in r.stages)
                                      or "none (external arms only)"), markup=False)
        console.print("  metrics: " + (", ".join(f"{m.name} ({m.direction})" for m in r.metrics)
                                       or "declared by the study file ([metrics])"), markup=False)
    if as_json:
        _emit_json({"recipes": rows})


@app.command()
def version(as_json: bool = typer.Option(False, "--json",
                                         help="Also the code version and the main libraries'.")) -> None:
    """Print the version."""
    if not as_json:
        console.print(f"fairtrial {__version__}")
        return
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    from fairtrial.store.artifacts import code_version

    libs = {}
    for lib in ("torch", "transformers", "numpy", "pandas", "pyarrow", "sqlalchemy", "pydantic"):
        try:
            libs[lib] = dist_version(lib)
        except PackageNotFoundError:
            libs[lib] = None
    _emit_json({"fairtrial": __version__, "code_version": code_version(),
                "python": platform.python_version(), "libraries": libs})


# ---------------------------------------------------------------- entry point
def _say(prefix: str, style: str, message: str) -> None:
    """`prefix message` on stderr; the message is printed as it is (never read as markup)."""
    from rich.text import Text

    try:
        err_console.print(Text.assemble((prefix, style), " ", message), highlight=False, soft_wrap=True)
    except Exception:  # noqa: BLE001 - a broken terminal must not hide the message
        sys.stderr.write(f"{prefix} {message}\n")


def _click_kind(exc: BaseException) -> str | None:
    """What a click exception means, for click itself and for any copy of it (typer >= 0.2x raises
    from its own bundled `typer._click`, other tools vendor theirs): found by the names of the
    classes in the exception's MRO from a module named like click or typer, never by identity,
    so that no variant can pass as an internal error. None: not click's."""
    names = {c.__name__ for c in type(exc).__mro__
             if "click" in (c.__module__ or "") or "typer" in (c.__module__ or "")}
    for kind, name in (("help", "NoArgsIsHelpError"), ("exit", "Exit"), ("abort", "Abort"),
                       ("usage", "UsageError"), ("usage", "ClickException")):
        if name in names:
            return kind
    return None


def _usage_message(exc: BaseException) -> str:
    fmt = getattr(exc, "format_message", None)
    try:
        msg = fmt() if callable(fmt) else str(exc)
    except Exception:  # noqa: BLE001
        msg = str(exc)
    msg = "; ".join(line.strip() for line in str(msg).splitlines() if line.strip())
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or "fairtrial"
    return f"{msg} (see `{path} --help`)"


def _db_name() -> str | None:
    import re

    if not _DB_URL:
        return None
    url = _DB_URL[0]
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///"):]
    return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)  # never print a password


def _crash_log(text: str) -> str | None:
    """Write a crash log under a name no other crash shares (pid and nanoseconds), in
    $FAIRTRIAL_CRASH_DIR, else the temp folder; None when no folder can take it (a full disk)."""
    import tempfile

    name = f"fairtrial-crash-{os.getpid()}-{time.time_ns()}.log"
    for folder in (os.environ.get("FAIRTRIAL_CRASH_DIR"), tempfile.gettempdir()):
        if not folder:
            continue
        path = Path(folder) / name
        try:
            with open(path, "x") as f:
                f.write(text)
            return str(path)
        except OSError:
            try:
                path.unlink()  # a partial log of a full disk helps nobody
            except OSError:
                pass
    return None


def main(argv: list[str] | None = None) -> int:
    try:
        if os.environ.get("FAIRTRIAL_TEST_RAISE"):  # a test hook: a deliberate bug, to test exit 70
            raise RuntimeError(f"deliberate internal error (FAIRTRIAL_TEST_RAISE="
                               f"{os.environ['FAIRTRIAL_TEST_RAISE']})")
        rc = app(args=argv, standalone_mode=False, prog_name="fairtrial")
        return rc if isinstance(rc, int) else 0
    except typer.Exit as e:
        return e.exit_code
    except UserError as e:
        _say("error:", "red", str(e))
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `fairtrial status | head`: the reader left, nothing to say to it
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 141
    except Exception as e:  # noqa: BLE001 - sorted below: usage, environment, or a bug
        kind = _click_kind(e)
        if kind == "exit":
            return getattr(e, "exit_code", 0) or 0
        if kind == "abort":
            _say("aborted", "yellow", "")
            return 130
        if kind == "help":  # the help is printed already (stdout)
            _say("error:", "red", "give a command (the list is above; `fairtrial COMMAND --help` "
                                  "explains one)")
            return 2
        if kind == "usage":
            _say("error:", "red", _usage_message(e))
            return 2
        fault = environment_fault(e, _db_name())
        if fault is not None:
            _say("error:", "red", str(fault))
            return fault.exit_code
        text = (f"fairtrial {__version__}, Python {platform.python_version()}, "
                f"{platform.platform()}\nargv: {sys.argv}\n\n{traceback.format_exc()}")
        log = _crash_log(text)
        what = traceback.format_exception_only(type(e), e)[-1].strip()
        if log:
            _say("internal error", "red", f"(a bug in fairtrial): {what}\nthe traceback and versions "
                                          f"are in {log}; please include it in a report")
        else:
            try:
                sys.stderr.write(text)
            except OSError:
                pass
            _say("internal error", "red", f"(a bug in fairtrial): {what}\nno folder could take a "
                                          "crash log; the traceback and versions are above")
        return 70


if __name__ == "__main__":
    sys.exit(main())
