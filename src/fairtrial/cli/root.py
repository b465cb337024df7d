"""The root of the command line: the global `--workspace` option and what the CLI hands the
recipes' own commands (`RecipeServices`, in typer's `ctx.obj`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from fairtrial.app import resolve
from fairtrial.cli.terminal import console, emit_json


@dataclass(frozen=True)
class RecipeServices:
    """What a recipe's own command (`recipes/<name>/commands.py`) gets from the CLI, as typer's
    `ctx.obj`: recipes never import the application layer or the CLI, so the CLI hands them the
    few things they need when it runs them. Duck-typed on the recipe's side (a recipe reads
    `ctx.obj.artifact_folder(...)`); add a field here when a recipe command needs more."""

    artifact_folder: Callable[[str, str | None, Path | None], Path]
    """(stage-run ref, study or None, workspace or None) -> the verified artifact folder of a
    finished stage run (a key prefix, or ARM/SEED/STAGE with a study); UserError otherwise."""
    print: Callable[[str], None]
    """Print a line as it is (never read as markup), on the CLI's console."""
    emit_json: Callable[[Any], None]
    """Print an object as one line of JSON."""


def _print(text: str) -> None:
    console.print(text, highlight=False, markup=False)


SERVICES = RecipeServices(artifact_folder=resolve.artifact_folder, print=_print,
                          emit_json=emit_json)


def global_options(ctx: typer.Context, workspace: Path | None = typer.Option(
        None, "--workspace", "-w", help="Workspace folder for the command that follows (as if given "
                                        "to it): `fairtrial -w DIR status`.")) -> None:
    """Run comparative ML training studies and turn them into honest verdicts."""
    # Every command reads $FAIRTRIAL_WORKSPACE as its --workspace default, and click parses the
    # command's options after this callback ran: so a global -w counts as the command's own
    # default, and a -w given to the command itself still wins.
    if workspace is not None:
        os.environ["FAIRTRIAL_WORKSPACE"] = str(workspace)
    if ctx.obj is None:  # the subcommand's context inherits it
        ctx.obj = SERVICES
