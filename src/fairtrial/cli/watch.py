"""`fairtrial status` (once, or `--watch`) and `fairtrial logs` (once, or `--follow`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from fairtrial.app import logs as app_logs
from fairtrial.app import status as app_status
from fairtrial.cli.terminal import WorkspaceOpt, console, emit_json, fmt_s


def status(study: str | None = typer.Argument(None, help="Study name or file (default: all)."),
           workspace: Path | None = WorkspaceOpt,
           as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
           watch: bool = typer.Option(False, "--watch", help="Refresh every 2 s until Ctrl-C."),
           verify: bool = typer.Option(False, "--verify", help="Re-hash every artifact file."),
           every: bool = typer.Option(False, "--all", help="List every cell, not only unfinished.")) -> None:
    """Status per arm x replicate x stage, derived from artifacts, records and process liveness."""
    query = app_status.status(workspace, study)
    if as_json:
        emit_json({"studies": [s.to_dict() for s in query.read(verify)]})
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
            head += f"   ETA {fmt_s(st.eta_s)}"
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
                             f"{', ETA ' + fmt_s(r.eta_s) if r.eta_s is not None else ''}"
                             f"{' - ' + escape(r.message) if r.message else ''}")
            elif r.state in ("failed", "lost"):
                parts.append(f"  [{STATE_STYLE[r.state]}]{r.state}[/] {escape(r.stage)} {escape('[' + who + ']')} "
                             f"{r.key[:12]}: {escape(r.error or '')}  (fairtrial logs {r.key[:12]})")
    return Group(*parts)


def logs(stage_run: str = typer.Argument(..., help="A stage-run key (a prefix of 6+ characters) "
                                                   "or arm/seed/stage with --study."),
         study: str | None = typer.Option(None, "--study", "-s"),
         workspace: Path | None = WorkspaceOpt,
         tail: int = typer.Option(0, help="Only the last N lines."),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines.")) -> None:
    """Show a stage run's log."""
    path = app_logs.stage_log(stage_run, study, workspace)
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
