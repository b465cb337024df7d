"""`fairtrial run`, `resume` and `stop`: a study run in the foreground with a progress display,
detached in a background supervisor, and stopped."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from fairtrial.app import resolve
from fairtrial.app import run as app_run
from fairtrial.cli.terminal import WorkspaceOpt, console, emit_json, q
from fairtrial.errors import UserError


def run(study: Path = typer.Argument(..., help="The study file (TOML)."),
        workspace: Path | None = WorkspaceOpt,
        detach: bool = typer.Option(False, "--detach", "-d",
                                    help="Run in a background supervisor and return at once."),
        cpus: float | None = typer.Option(None, help="CPU slots (default: all cores)."),
        memory_gb: float | None = typer.Option(None, help="Memory budget (default: 90% of RAM)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
        as_json: bool = typer.Option(False, "--json",
                                     help="No progress display; print the outcome as JSON."),
        executor: str | None = typer.Option(
            None, help="Where stage runs run: local (default; or $FAIRTRIAL_EXECUTOR) or ray."),
        address: str | None = typer.Option(
            None, help="The Ray cluster (HOST:PORT) for --executor ray (default: $RAY_ADDRESS, "
                       "else a local Ray).")) -> None:
    """Run a study (resumes whatever is not done; cached stage runs are not run again)."""
    _check_budget("--cpus", cpus)
    _check_budget("--memory-gb", memory_gb)
    spec = resolve.load(study)
    ws = resolve.open_workspace(workspace)
    if spec.evaluation_only:  # nothing to train: say what to do instead of "0 of 0 stage runs"
        if as_json:
            emit_json(app_run.run(spec, ws).to_dict())
        else:
            qs = q(str(study))
            console.print(f"{spec.name}: an evaluation-only study has nothing to run; import each "
                          f"system's per-item scores (fairtrial import {qs} SCORES.jsonl --arm "
                          f"ARM), then: fairtrial report {qs}", markup=False, highlight=False)
        raise typer.Exit(0)
    if detach:
        _detach(study, ws, cpus, memory_gb, as_json, executor, address)
        return
    outcome = _run_foreground(spec, ws, cpus, memory_gb, quiet or as_json, as_json, executor,
                              address)
    if as_json:
        emit_json(outcome.to_dict())
    raise typer.Exit(0 if outcome.ok else 1)


def resume(study: Path = typer.Argument(..., help="The study file (TOML)."),
           workspace: Path | None = WorkspaceOpt,
           detach: bool = typer.Option(False, "--detach", "-d"),
           cpus: float | None = typer.Option(None), memory_gb: float | None = typer.Option(None),
           quiet: bool = typer.Option(False, "--quiet", "-q"),
           as_json: bool = typer.Option(False, "--json"),
           executor: str | None = typer.Option(None), address: str | None = typer.Option(None)) -> None:
    """Same as `run`: finds lost and unfinished stage runs and completes them."""
    run(study, workspace, detach, cpus, memory_gb, quiet, as_json, executor, address)


def _check_budget(option: str, value: float | None) -> None:
    """--cpus / --memory-gb: a finite positive number (nan made the scheduler wait forever)."""
    import math

    if value is not None and not (math.isfinite(value) and value > 0):
        raise UserError(f"{option} must be a positive finite number, got {value}")


def _detach(study: Path, ws, cpus, memory_gb, as_json: bool = False, executor=None,
            address=None) -> None:
    d = app_run.detach(study, ws, cpus, memory_gb, executor, address)
    if as_json:
        emit_json({"study": d.study, "detached": True, "pid": d.pid, "log": str(d.log),
                    "finished": d.finished})
        return
    if d.finished:
        console.print(f"{d.study}: the background run finished at once: {d.last_line}", markup=False,
                      highlight=False)
        console.print(f"log: {d.log}; report: fairtrial report {q(study)}", markup=False, highlight=False)
        return
    console.print(f"started {d.study} in the background (pid {d.pid}); log: {d.log}", markup=False,
                  highlight=False)
    console.print(f"watch: fairtrial status {q(d.study)} --watch    stop: fairtrial stop {q(d.study)}",
                  markup=False, highlight=False)


def _run_foreground(spec, ws, cpus, memory_gb, quiet, as_json: bool = False, executor=None,
                    address=None) -> app_run.RunOutcome:
    """Run the study in this process with a progress display; returns the outcome."""
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    show = not quiet and console.is_terminal
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                        TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                        console=console, disable=not show)
    overall: list[int] = []
    tasks: dict[str, int] = {}

    def label(info: dict) -> str:
        arms = info["arms"]
        who = arms[0] if len(arms) == 1 else f"{len(arms)} arms"
        seed = f" seed {info['seed']}" if info["seed"] is not None else ""
        return escape(f"  {info['stage']} [{who}{seed}] {info['key'][:8]}")

    def on_event(kind: str, info: dict) -> None:
        if kind == "planned":
            overall.append(progress.add_task(escape(info["study"]), total=info["stage_runs"], info=""))
            progress.start()
            return
        key = info.get("key")
        if kind == "progress":
            if key in tasks:
                rate = info.get("rate")
                progress.update(tasks[key], total=info["total"], completed=info["done"],
                                info=escape((f"{rate:.1f} {info['unit']}/s" if rate else "") +
                                            (f" {info['message']}" if info.get("message") else "")))
            return
        if kind == "started":
            tasks[key] = progress.add_task(label(info), total=None, info="")
        elif kind in ("done", "failed", "lost", "retry", "oom") and key in tasks:
            progress.remove_task(tasks.pop(key))
        if kind in ("done", "failed", "skipped", "lost", "retry", "oom", "corrupt", "held",
                    "cached"):
            if kind in ("done", "cached") and overall:
                progress.advance(overall[0])
            where = label(info).strip()
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
                progress.console.print(f"{where}: {msg}", highlight=False)

    try:
        outcome = app_run.run(spec, ws, cpus, memory_gb, on_event=on_event, executor=executor,
                               address=address)
        if overall:
            progress.update(overall[0], completed=outcome.run + outcome.cached)
    finally:
        progress.stop()
    if as_json:
        return outcome
    console.print(f"{spec.name}: {outcome.run} run, {outcome.cached} cached, "
                  f"{len(outcome.failed)} failed, {len(outcome.skipped)} skipped of "
                  f"{outcome.stage_runs} stage runs"
                  + (" (interrupted; `fairtrial run` resumes)" if outcome.interrupted else ""),
                  markup=False, highlight=False)
    for f in outcome.failed:
        console.print(f"  [red]failed[/] {escape(f['stage'])} {f['key'][:12]}: {escape(f['error'])}"
                      f"  (fairtrial logs {f['key'][:12]})", highlight=False)
    if outcome.skipped:
        names = sorted({s["stage"] for s in outcome.skipped})
        console.print(f"  skipped downstream of failures: {len(outcome.skipped)} ({', '.join(names)})",
                      markup=False, highlight=False)
    return outcome


def stop(study: str | None = typer.Argument(None, help="Study name or file."),
         workspace: Path | None = WorkspaceOpt,
         timeout: float = typer.Option(60, help="Seconds to wait for a clean end."),
         as_json: bool = typer.Option(False, "--json", help="Print what was stopped as JSON.")) -> None:
    """End a background run cleanly (running stage runs are interrupted and resume later)."""
    def said(s: dict) -> None:
        if not as_json:
            console.print(f"stopped {s['study']} (supervisor pid {s['pid']}); `fairtrial run` resumes it",
                          markup=False, highlight=False)

    stopped = app_run.stop(workspace, study, timeout, on_stopped=said)
    if as_json:
        emit_json({"stopped": stopped})
