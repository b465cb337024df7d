"""What every command-line module shares: the consoles, the --workspace option, JSON output, shell
quoting and durations. The recipes' own commands (`recipes/<name>/commands.py`) print through the
same consoles: the CLI hands them a printer (`fairtrial.cli.root.RecipeServices`)."""

from __future__ import annotations

import json
import shlex
import sys

import typer
from rich.console import Console

# not a terminal (a pipe, a log file, CI): no wrapping, so every message stays on one line
console = Console(soft_wrap=not sys.stdout.isatty(), width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=not sys.stderr.isatty())

WorkspaceOpt = typer.Option(None, "--workspace", "-w", envvar="FAIRTRIAL_WORKSPACE",
                            help="Workspace folder (default: .fairtrial in the current directory).")


def q(text) -> str:
    """A path or name as one shell word, for hint commands a user copies."""
    return shlex.quote(str(text))


def emit_json(obj) -> None:
    # no indent: json's C encoder only runs without one (status --json on 10,000 runs)
    sys.stdout.write(json.dumps(obj, default=str) + "\n")


def fmt_s(s: float | None) -> str:
    """A duration in seconds as 42s, 3m05s or 2h07m ("?" when unknown)."""
    if s is None:
        return "?"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
