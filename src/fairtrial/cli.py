"""The command line: thin. Every number it shows comes from the store, the artifacts or analysis.

Exit codes: 0 ok; 1 a study or check failed; 2 bad input; 3 refused (locked, nothing to stop);
70 internal error (the traceback is in the log file named on screen).
"""

from __future__ import annotations

import json
import os
import platform
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
from fairtrial.errors import Refused, UserError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Run comparative ML training studies and turn them into honest verdicts.")
# not a terminal (a pipe, a log file, CI): no wrapping, so every message stays on one line
console = Console(soft_wrap=not sys.stdout.isatty(), width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=not sys.stderr.isatty())

WorkspaceOpt = typer.Option(None, "--workspace", "-w", envvar="FAIRTRIAL_WORKSPACE",
                            help="Workspace folder (default: .fairtrial in the current directory).")


def _ws(workspace: Optional[Path]):
    from fairtrial.workspace import Workspace

    return Workspace.find(workspace).ensure()


def _store(ws):
    from fairtrial.store.db import Store

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
           "stages": rows, "valid": True}
    if as_json:
        _emit_json(out)
        return
    console.print(f"[bold]{spec.name}[/]: {spec.question}")
    console.print(f"recipe {spec.recipe.name}; {len(spec.arms)} arms x {len(spec.replicates)} "
                  f"replicates (seeds {spec.replicates}); control: {spec.control or '-'}; "
                  f"endpoint: {spec.endpoint.metric} ({spec.direction} is better)")
    console.print("arms: " + ", ".join(a.name for a in spec.arms))
    t = Table("stage", "cells", "stage runs", "shared", "cached", "to run", "est. each")
    for r in rows:
        t.add_row(r["stage"], str(r["cells"]), str(r["runs"]), str(r["shared"]), str(r["cached"]),
                  str(r["to_run"]), _fmt_s(r["est_s_each"]) if r["est_s_each"] else "-")
    console.print(t)
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

    spec = load_spec(study)
    ws = _ws(workspace)
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


def _detach(study: Path, ws, cpus, memory_gb, as_json: bool = False) -> None:
    from fairtrial.spec import load_spec

    spec = load_spec(study)
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
    while time.time() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise UserError("the background run ended at once:\n" + "\n".join(tail))
        try:
            if json.loads(info.read_text()).get("pid") == proc.pid:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    if as_json:
        _emit_json({"study": spec.name, "detached": True, "pid": proc.pid, "log": str(log)})
        return
    console.print(f"started {spec.name} in the background (pid {proc.pid}); log: {log}")
    console.print(f"watch: fairtrial status {spec.name} --watch    stop: fairtrial stop {spec.name}")


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
        overall = progress.add_task(f"{spec.name}", total=len(plan.nodes), info="")
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
            if kind in ("done", "failed", "skipped", "lost", "retry", "oom", "corrupt"):
                if kind == "done":
                    progress.advance(overall)
                msg = {"done": "[green]done[/]", "failed": f"[red]failed[/]: {info.get('error')}",
                       "skipped": "[yellow]skipped[/] (an upstream stage failed)",
                       "lost": f"[yellow]lost[/]: {info.get('error')}; running it again",
                       "retry": f"[yellow]retry in {info.get('delay', 0):.0f}s[/]: {info.get('error')}",
                       "oom": f"[yellow]out of memory[/]: retrying with {info.get('changed')}",
                       "corrupt": f"[yellow]corrupt artifact[/] ({info.get('reason')}): rerunning"}[kind]
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
                                        info=(f"{rate:.1f} {r.get('progress_unit') or 'it'}/s"
                                              if rate else "") + (f" {r['message']}" if r.get("message") else ""))

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
                      "stage runs" + (" (interrupted; `fairtrial run` resumes)" if result.interrupted else ""))
        for f in failed:
            console.print(f"  [red]failed[/] {f['stage']} {f['key'][:12]}: {f['error']}"
                          f"  (fairtrial logs {f['key'][:12]})")
        if result.skipped:
            names = sorted({plan.nodes[k].stage for k in result.skipped})
            console.print(f"  skipped downstream of failures: {len(result.skipped)} ({', '.join(names)})")
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
    store = _store(ws)
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
        t = Table("arm", "seed", *stages, caption="* shared by several arms/seeds; "
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
                rate = f", {r.rate:.2f} {r.unit or 'it'}/s" if r.rate else ""
                prog = (f"{r.progress:.0f}/{r.progress_total:.0f} {r.unit or ''}"
                        if r.progress_total else "started")
                parts.append(f"  [blue]running[/] {r.stage} {escape('[' + who + ']')} {r.key[:12]}: {prog}{rate}"
                             f"{', ETA ' + _fmt_s(r.eta_s) if r.eta_s is not None else ''}"
                             f"{' - ' + escape(r.message) if r.message else ''}")
            elif r.state in ("failed", "lost"):
                parts.append(f"  [{STATE_STYLE[r.state]}]{r.state}[/] {r.stage} {escape('[' + who + ']')} "
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
            console.print(f"stopped {n} (supervisor pid {sup['pid']}); `fairtrial run` resumes it")
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
           seed: int = typer.Option(20240601, help="Seed of the bootstrap (reports are reproducible)."),
           resamples: int = typer.Option(10_000, help="Bootstrap resamples."),
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
    console.print(f"report: {folder / 'report.md'}  and  {folder / 'report.html'}")


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
                  f"stage run {out['key'][:12]}")
    for es, same in out["same_items_as_study"].items():
        if not same:
            console.print(f"  [yellow]note[/]: eval set {es}: not the study's items (yet); "
                          "the report compares only shared items and says so")


def _design_dict(spec) -> dict:
    return {"name": spec.name, "question": spec.question, "control": spec.control,
            "replicates": spec.replicates,
            "endpoint": {"metric": spec.endpoint.metric, "direction": spec.direction,
                         "secondary": list(spec.endpoint.secondary)},
            "decision": spec.decision.model_dump(),
            "arms": {**{a.name: a.params for a in spec.arms},
                     **{e: {"external": True} for e in spec.external_arms}},
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
        t.add_row(r["name"], str(r["n_files"]), f"{r['bytes'] / 1e6:.1f} MB", r["licence"],
                  r["location"] or "[yellow]not here[/] (fairtrial data fetch " + r["name"] + ")")
    console.print(t)


@data_app.command("fetch")
def data_fetch(name: str = typer.Argument(..., help="A data set name (see `fairtrial data list`)."),
               dest: Optional[Path] = typer.Option(None, help="Folder to put it in."),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """Download a data set from its upstream addresses and verify every file's sha256."""
    from fairtrial.data import fetch

    def progress(k: int, n: int, path: str) -> None:
        if not as_json:
            console.print(f"  [{k}/{n}] {path} verified", highlight=False)

    folder = fetch(name, dest, progress=progress)
    if as_json:
        _emit_json({"name": name, "path": str(folder)})
    else:
        console.print(f"{name}: {folder}")


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
                console.print(f"[bold]{name}[/]: unavailable ({e})")
            continue
        rows.append({"name": name, "available": True, "description": r.description,
                     "stages": [{"name": s.name, "version": s.version,
                                 "needs": list(s.needs)} for s in r.stages],
                     "metrics": [{"name": m.name, "direction": m.direction,
                                  "aggregation": m.aggregation} for m in r.metrics]})
        if as_json:
            continue
        console.print(f"[bold]{name}[/]: {r.description}")
        console.print("  stages: " + " -> ".join(s.name for s in r.stages))
        console.print("  metrics: " + ", ".join(f"{m.name} ({m.direction})" for m in r.metrics))
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
def main(argv: list[str] | None = None) -> int:
    import click

    try:
        rc = app(args=argv, standalone_mode=False, prog_name="fairtrial")
        return rc if isinstance(rc, int) else 0
    except typer.Exit as e:
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except UserError as e:
        err_console.print(f"[red]error:[/] {e}", highlight=False, markup=True, soft_wrap=True)
        return e.exit_code
    except click.ClickException as e:
        err_console.print(f"[red]error:[/] {e.format_message()}", highlight=False)
        return 2
    except click.exceptions.Abort:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001 - a bug: keep the traceback, show where it is
        log = Path(os.environ.get("FAIRTRIAL_CRASH_DIR", "/tmp")) / f"fairtrial-crash-{int(time.time())}.log"
        with open(log, "w") as f:
            f.write(f"fairtrial {__version__}, Python {platform.python_version()}, "
                    f"{platform.platform()}\nargv: {sys.argv}\n\n{traceback.format_exc()}")
        err_console.print(f"[red]internal error[/] (a bug in fairtrial): "
                          f"{traceback.format_exception_only(sys.exc_info()[1])[-1].strip()}\n"
                          f"the traceback and versions are in {log}; please include it in a report")
        return 70


if __name__ == "__main__":
    sys.exit(main())
