"""`fairtrial data list|fetch`, `recipes`, `version` and `ui`: the data sets, the recipes, the
versions and the dashboard."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from fairtrial import __version__
from fairtrial.app import recipes as app_recipes
from fairtrial.app import versions as app_versions
from fairtrial.cli.terminal import WorkspaceOpt, console, emit_json, q

data_app = typer.Typer(help="The public data sets the recipes use: list and fetch them.",
                       no_args_is_help=True)


@data_app.command("list")
def data_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List the known data sets and where each is found on this machine."""
    from fairtrial.app import datasets

    rows = datasets.list_datasets()
    if as_json:
        emit_json(rows)
        return
    t = Table("name", "files", "size", "licence", "found at")
    for r in rows:
        t.add_row(escape(r["name"]), str(r["n_files"]), f"{r['bytes'] / 1e6:.1f} MB", escape(r["licence"]),
                  escape(str(r["location"])) if r["location"] else
                  "[yellow]not here[/] " + escape(f"(fairtrial data fetch {q(r['name'])})"))
    console.print(t)


@data_app.command("fetch")
def data_fetch(name: str = typer.Argument(..., help="A data set name (see `fairtrial data list`)."),
               dest: Path | None = typer.Option(None, help="Folder to put it in."),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """Download a data set from its upstream addresses and verify every file's sha256."""
    from fairtrial.app import datasets

    def progress(k: int, n: int, path: str) -> None:
        if not as_json:
            console.print(f"  [{k}/{n}] {path} verified", highlight=False, markup=False)

    folder = datasets.fetch(name, dest, progress=progress)
    if as_json:
        emit_json({"name": name, "path": str(folder)})
    else:
        console.print(f"{name}: {folder}", markup=False, highlight=False)


def recipes(as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")) -> None:
    """List the recipes and their stages and metrics."""
    rows = app_recipes.recipes()
    if as_json:
        emit_json({"recipes": rows})
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


def version(as_json: bool = typer.Option(False, "--json",
                                         help="Also the code version and the main libraries'.")) -> None:
    """Print the version."""
    if not as_json:
        console.print(f"fairtrial {__version__}")
        return
    emit_json(app_versions.versions())


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
            emit_json(info)
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
