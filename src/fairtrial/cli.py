"""The command line: thin. It parses input and renders output; the use cases (check, run,
report, import, status, stop) live in `fairtrial.study`, and every number shown comes from there.

Exit codes: 0 ok; 1 a study or check failed; 2 bad input (a usage error included); 3 refused
(locked, nothing to stop); 74 environment fault (disk full, unwritable workspace, damaged record
store); 70 internal error (the traceback is in the log file named on screen). See errors.py.

Every text a user or a stage wrote (names, questions, paths, error messages) is printed with its
square brackets escaped or with markup off: rich would read "[/INST]" or "[[arms]]" as markup.

Recipes may add commands of their own (`recipes/<name>/commands.py`, or `Recipe.commands`); they
are mounted next to the core commands when the command line names one of them (or asks for help),
so the core commands never pay for importing every recipe.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import traceback
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from fairtrial import __version__
from fairtrial import study as usecases
from fairtrial.errors import UserError, environment_fault
from fairtrial.terminal import WorkspaceOpt, console, err_console
from fairtrial.terminal import emit_json as _emit_json
from fairtrial.terminal import q as _q

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Run comparative ML training studies and turn them into honest verdicts.")

__all__ = ["WorkspaceOpt", "app", "console", "err_console", "main"]


@app.callback()
def _global_options(workspace: Path | None = typer.Option(
        None, "--workspace", "-w", help="Workspace folder for the command that follows (as if given "
                                        "to it): `fairtrial -w DIR status`.")) -> None:
    """Run comparative ML training studies and turn them into honest verdicts."""
    # Every command reads $FAIRTRIAL_WORKSPACE as its --workspace default, and click parses the
    # command's options after this callback ran: so a global -w counts as the command's own
    # default, and a -w given to the command itself still wins.
    if workspace is not None:
        os.environ["FAIRTRIAL_WORKSPACE"] = str(workspace)


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


# ---------------------------------------------------------------- check
@app.command()
def check(study: Path = typer.Argument(..., help="The study file (TOML)."),
          workspace: Path | None = WorkspaceOpt,
          as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON.")) -> None:
    """Validate a study file and print its plan: arms x replicates x stages, shared and cached
    stage runs, and estimated time per stage when history exists."""
    checked = usecases.check(study, workspace)
    spec, rows = checked.spec, checked.stages
    if as_json:
        _emit_json(checked.to_dict())
        return
    if spec.evaluation_only:
        _check_evaluation_only(spec, study)
        return
    console.print(f"[bold]{escape(spec.name)}[/]: {escape(spec.question)}", highlight=False)
    shape = (f"{len(spec.arms)} arms x {len(spec.replicates)} replicates (seeds "
             f"{spec.replicates})" if spec.arms else
             f"{len(spec.external_arms)} external arms, nothing trained")
    console.print(f"recipe {spec.recipe.name}; {shape}; control: {spec.control or '-'}; "
                  f"endpoint: {spec.endpoint.metric} ({spec.direction} is better)",
                  markup=False, highlight=False)
    if spec.arms:
        console.print("arms: " + ", ".join(a.name for a in spec.arms), markup=False,
                      highlight=False)
    if spec.planned_external_arms:
        raw = spec.recipe.score_outputs is not None
        console.print(f"external arms: {', '.join(spec.planned_external_arms)} (their "
                      + ("outputs" if raw else "scores") + " come from fairtrial import"
                      + (" --outputs" if raw else "") + f"; the plan runs "
                      f"{', '.join(spec.recipe.external_stages)} for them: the same items and "
                      "trivial baselines as a trained arm)", markup=False, highlight=False)
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
    raw = spec.recipe.score_outputs is not None  # the recipe scores raw outputs itself
    console.print("import each system's " + ("raw outputs (scored by the recipe)" if raw else
                                             "per-item scores") + ", then report:", markup=False)
    for a in spec.external_arms:
        console.print(f"  fairtrial import {_q(str(study))} {_q(a + '.jsonl')} --arm {_q(a)}"
                      + (" --outputs" if raw else ""), highlight=False, markup=False)
    console.print(f"  fairtrial report {_q(str(study))}", highlight=False, markup=False)
    console.print("[green]valid[/]")


# ---------------------------------------------------------------- run
@app.command()
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
    spec = usecases.load(study)
    ws = usecases.open_workspace(workspace)
    if spec.evaluation_only:  # nothing to train: say what to do instead of "0 of 0 stage runs"
        if as_json:
            _emit_json(usecases.run(spec, ws).to_dict())
        else:
            q = _q(str(study))
            console.print(f"{spec.name}: an evaluation-only study has nothing to run; import each "
                          f"system's per-item scores (fairtrial import {q} SCORES.jsonl --arm "
                          f"ARM), then: fairtrial report {q}", markup=False, highlight=False)
        raise typer.Exit(0)
    if detach:
        _detach(study, ws, cpus, memory_gb, as_json, executor, address)
        return
    outcome = _run_foreground(spec, ws, cpus, memory_gb, quiet or as_json, as_json, executor,
                              address)
    if as_json:
        _emit_json(outcome.to_dict())
    raise typer.Exit(0 if outcome.ok else 1)


@app.command()
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
    d = usecases.detach(study, ws, cpus, memory_gb, executor, address)
    if as_json:
        _emit_json({"study": d.study, "detached": True, "pid": d.pid, "log": str(d.log),
                    "finished": d.finished})
        return
    if d.finished:
        console.print(f"{d.study}: the background run finished at once: {d.last_line}", markup=False,
                      highlight=False)
        console.print(f"log: {d.log}; report: fairtrial report {_q(study)}", markup=False, highlight=False)
        return
    console.print(f"started {d.study} in the background (pid {d.pid}); log: {d.log}", markup=False,
                  highlight=False)
    console.print(f"watch: fairtrial status {_q(d.study)} --watch    stop: fairtrial stop {_q(d.study)}",
                  markup=False, highlight=False)


def _run_foreground(spec, ws, cpus, memory_gb, quiet, as_json: bool = False, executor=None,
                    address=None) -> usecases.RunOutcome:
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
        outcome = usecases.run(spec, ws, cpus, memory_gb, on_event=on_event, executor=executor,
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

# ---------------------------------------------------------------- status
@app.command()
def status(study: str | None = typer.Argument(None, help="Study name or file (default: all)."),
           workspace: Path | None = WorkspaceOpt,
           as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
           watch: bool = typer.Option(False, "--watch", help="Refresh every 2 s until Ctrl-C."),
           verify: bool = typer.Option(False, "--verify", help="Re-hash every artifact file."),
           every: bool = typer.Option(False, "--all", help="List every cell, not only unfinished.")) -> None:
    """Status per arm x replicate x stage, derived from artifacts, records and process liveness."""
    query = usecases.status(workspace, study)
    if as_json:
        _emit_json({"studies": [s.to_dict() for s in query.read(verify)]})
        return
    if watch and not console.is_terminal:  # a pipe or a log: print a fresh view every 2 s
        try:
            while True:
                console.print(_status_view(query.read(), every))
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
                    live.update(_status_view(query.read(), every))
                    time.sleep(2)
        except KeyboardInterrupt:
            return
    if not query.names:
        console.print("no studies in this workspace yet")
        return
    console.print(_status_view(query.read(verify), every))

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
def stop(study: str | None = typer.Argument(None, help="Study name or file."),
         workspace: Path | None = WorkspaceOpt,
         timeout: float = typer.Option(60, help="Seconds to wait for a clean end."),
         as_json: bool = typer.Option(False, "--json", help="Print what was stopped as JSON.")) -> None:
    """End a background run cleanly (running stage runs are interrupted and resume later)."""
    def said(s: dict) -> None:
        if not as_json:
            console.print(f"stopped {s['study']} (supervisor pid {s['pid']}); `fairtrial run` resumes it",
                          markup=False, highlight=False)

    stopped = usecases.stop(workspace, study, timeout, on_stopped=said)
    if as_json:
        _emit_json({"stopped": stopped})


# ---------------------------------------------------------------- logs
@app.command()
def logs(stage_run: str = typer.Argument(..., help="A stage-run key (a prefix of 6+ characters) "
                                                   "or arm/seed/stage with --study."),
         study: str | None = typer.Option(None, "--study", "-s"),
         workspace: Path | None = WorkspaceOpt,
         tail: int = typer.Option(0, help="Only the last N lines."),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines.")) -> None:
    """Show a stage run's log."""
    path = usecases.stage_log(stage_run, study, workspace)
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


# ---------------------------------------------------------------- report
@app.command()
def report(study: Path = typer.Argument(..., help="The study file (TOML)."),
           workspace: Path | None = WorkspaceOpt,
           out: Path | None = typer.Option(None, help="Folder for report.md and report.html "
                                                        "(default: the study's folder in the workspace)."),
           seed: int = typer.Option(20240601, min=0, max=2**63 - 1,
                                    help="Seed of the bootstrap (reports are reproducible)."),
           resamples: int = typer.Option(10_000, min=1, help="Bootstrap resamples."),
           as_json: bool = typer.Option(False, "--json", help="Print the analysis as JSON.")) -> None:
    """Analyse a study's item scores and write report.md and a self-contained report.html.
    The first line is the verdict with its effect and interval; integrity findings come next."""
    spec = usecases.load(study)
    ws = usecases.open_workspace(workspace)
    done = usecases.report(spec, ws, out, seed=seed, resamples=resamples)
    result, folder = done.result, done.folder
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
            metric: str | None = typer.Option(None, help="Metric of every line without one."),
            eval_set: str | None = typer.Option(None, help="Eval set of every line without one."),
            outputs: bool = typer.Option(False, "--outputs",
                                         help="The file holds raw outputs (item_id or the exact "
                                              "prompt, and output), scored by the recipe's own "
                                              "scorer."),
            workspace: Path | None = WorkspaceOpt,
            as_json: bool = typer.Option(False, "--json")) -> None:
    """Add item scores produced elsewhere (e.g. a hosted API model) as an external arm."""
    spec = usecases.load(study)
    ws = usecases.open_workspace(workspace)
    out = usecases.import_scores(spec, ws, arm, scores, metric, eval_set, outputs=outputs)
    if as_json:
        _emit_json(out)
        return
    console.print(f"imported {out['rows']} item scores as arm {arm} ({', '.join(out['eval_sets'])}); "
                  f"stage run {out['key'][:12]}", highlight=False, markup=False)
    if out.get("outputs", {}).get("missing"):
        o = out["outputs"]
        console.print(f"  note: {o['missing']:,} of the {o['items']:,} evaluation items have no "
                      f"output (e.g. {', '.join(o['missing_ids'][:3])}): missing, compared on "
                      "shared items and shown counted as failures", highlight=False, markup=False)
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



# ---------------------------------------------------------------- data
data_app = typer.Typer(help="The public data sets the recipes use: list and fetch them.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("list")
def data_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List the known data sets and where each is found on this machine."""
    from fairtrial.app.datasets import list_datasets

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
               dest: Path | None = typer.Option(None, help="Folder to put it in."),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """Download a data set from its upstream addresses and verify every file's sha256."""
    from fairtrial.app.datasets import fetch

    def progress(k: int, n: int, path: str) -> None:
        if not as_json:
            console.print(f"  [{k}/{n}] {path} verified", highlight=False, markup=False)

    folder = fetch(name, dest, progress=progress)
    if as_json:
        _emit_json({"name": name, "path": str(folder)})
    else:
        console.print(f"{name}: {folder}", markup=False, highlight=False)


# ---------------------------------------------------------------- recipes
@app.command()
def recipes(as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")) -> None:
    """List the recipes and their stages and metrics."""
    rows = usecases.recipes()
    if as_json:
        _emit_json({"recipes": rows})
        return
    for r in rows:
        name = r["name"]
        if not r["available"]:
            console.print(f"[bold]{escape(name)}[/]: unavailable ({escape(r['error'])})")
            continue
        console.print(f"[bold]{escape(name)}[/]: {escape(r['description'])}")
        console.print("  stages: " + (" -> ".join(s["name"] for s in r["stages"])
                                      or "none (external arms only)"), markup=False)
        console.print("  metrics: " + (", ".join(f"{m['name']} ({m['direction']})" for m in r["metrics"])
                                       or "declared by the study file ([metrics])"), markup=False)


@app.command()
def version(as_json: bool = typer.Option(False, "--json",
                                         help="Also the code version and the main libraries'.")) -> None:
    """Print the version."""
    if not as_json:
        console.print(f"fairtrial {__version__}")
        return
    _emit_json(usecases.versions())


# ---------------------------------------------------------------- ui
@app.command()
def ui(workspace: Path | None = WorkspaceOpt,
       port: int = typer.Option(8765, min=0, max=65535, help="Port (0: any free one)."),
       host: str = typer.Option("127.0.0.1", help="Address to listen on. 0.0.0.0 listens on every "
                                "interface: anyone who can reach this machine and has the token "
                                "can read the workspace."),
       as_json: bool = typer.Option(False, "--json", help="Print the address as one JSON line.")) -> None:
    """A read-only web dashboard of the workspace: studies, live status, stage runs, reports and
    item-by-item comparisons. Every request needs the token in the printed address."""
    from fairtrial.web import serve

    def ready(info: dict) -> None:
        if as_json:
            _emit_json(info)
        else:
            console.print(f"fairtrial dashboard of {info['workspace']}", markup=False, highlight=False)
            if info["all_interfaces"]:
                console.print(f"listening on every interface ({host}, port {info['port']}): the token "
                              "is required on every request; share the address only with people "
                              "who may read this workspace", markup=False, highlight=False)
            console.print(f"open {info['url']}", markup=False, highlight=False, soft_wrap=True)
            console.print("(read-only; Ctrl-C stops it)", markup=False, highlight=False)
        sys.stdout.flush()

    serve(workspace, host=host, port=port, on_ready=ready)


# ---------------------------------------------------------------- recipe commands
_CORE_COMMANDS: frozenset[str] | None = None


def _mount_recipe_commands() -> None:
    """Add every recipe's own commands to `app` (once). A core command keeps its name: a recipe
    command of the same name is not mounted."""
    global _CORE_COMMANDS
    if _CORE_COMMANDS is not None:
        return
    from fairtrial.recipes import registry

    core = _command_names()
    _CORE_COMMANDS = frozenset(core)
    for sub in registry.command_apps():
        for info in sub.registered_commands:
            name = info.name or (info.callback.__name__.replace("_", "-") if info.callback else None)
            if name and name not in core:
                app.registered_commands.append(info)
                core.add(name)
        for group in sub.registered_groups:
            if group.name and group.name not in core:
                app.registered_groups.append(group)
                core.add(group.name)


def _command_names() -> set[str]:
    names = {(i.name or i.callback.__name__.replace("_", "-")) for i in app.registered_commands
             if i.name or i.callback}
    return names | {g.name for g in app.registered_groups if g.name}


def _needs_recipe_commands(argv: list[str]) -> bool:
    """Whether the command line names no core command (a recipe's, or none: the help)."""
    args = list(argv)
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt in ("-w", "--workspace") and args:
            args.pop(0)
    return not args or args[0] not in _command_names()


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
    return usecases.db_in_use()


def _crash_log(text: str) -> str | None:
    """Write a crash log under a name no other crash shares (pid and nanoseconds): in the
    workspace's logs/ folder when the command opened a workspace, else $FAIRTRIAL_CRASH_DIR,
    else the temp folder; None when no folder can take it (a full disk)."""
    import tempfile

    name = f"fairtrial-crash-{os.getpid()}-{time.time_ns()}.log"
    ws = usecases.workspace_in_use()
    for folder in (ws / "logs" if ws else None, os.environ.get("FAIRTRIAL_CRASH_DIR"),
                   tempfile.gettempdir()):
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


def _crash_text() -> str:
    """The crash log's text: versions (as `fairtrial version --json` shows them), the command
    line and the traceback."""
    tb = traceback.format_exc()  # first: nothing below may replace the exception being handled
    head = (f"fairtrial {__version__}, Python {platform.python_version()}, "
            f"{platform.platform()}\nargv: {sys.argv}\n")
    try:
        import json

        head += "versions: " + json.dumps(usecases.versions(), default=str) + "\n"
    except Exception:  # noqa: BLE001 - the crash log must be written even when this fails
        pass
    return f"{head}\n{tb}"


def main(argv: list[str] | None = None) -> int:
    try:
        if os.environ.get("FAIRTRIAL_TEST_RAISE"):  # a test hook: a deliberate bug, to test exit 70
            raise RuntimeError(f"deliberate internal error (FAIRTRIAL_TEST_RAISE="
                               f"{os.environ['FAIRTRIAL_TEST_RAISE']})")
        if isinstance(app, typer.Typer) and _needs_recipe_commands(
                sys.argv[1:] if argv is None else argv):
            _mount_recipe_commands()
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
        text = _crash_text()
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
