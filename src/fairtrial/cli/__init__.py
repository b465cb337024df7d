"""The command line: thin. It parses input and renders output; the use cases (check, run,
report, import, status, stop, logs, the dashboard's reads) live in the application layer
(`fairtrial.app`), and every number shown comes from there. One module per group of commands:
check.py, run.py (run, resume, stop), watch.py (status, logs), report.py (report, import),
about.py (data, recipes, version, ui); the commands are registered below, in the order the help
lists them. failures.py turns what goes wrong into one line (or a crash log).

Exit codes: 0 ok; 1 a study or check failed; 2 bad input (a usage error included); 3 refused
(locked, nothing to stop); 74 environment fault (disk full, unwritable workspace, damaged record
store); 70 internal error (the traceback is in the log file named on screen). See errors.py.

Every text a user or a stage wrote (names, questions, paths, error messages) is printed with its
square brackets escaped or with markup off: rich would read "[/INST]" or "[[arms]]" as markup.

Recipes may add commands of their own (`recipes/<name>/commands.py`, or `Recipe.commands`); they
are mounted next to the core commands when the command line names one of them (or asks for help),
so the core commands never pay for importing every recipe. They get what they need from the
application layer through `ctx.obj` (`root.RecipeServices`), never by importing it.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

from fairtrial.app import recipes as app_recipes
from fairtrial.cli import about, check, report, run, watch
from fairtrial.cli.failures import click_kind, crash_log, crash_text, db_name, say, usage_message
from fairtrial.cli.root import global_options
from fairtrial.cli.terminal import WorkspaceOpt, console, err_console
from fairtrial.cli.watch import status  # the core `status` (a recipe's command of that name is not mounted)
from fairtrial.errors import UserError, environment_fault

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Run comparative ML training studies and turn them into honest verdicts.")
app.callback()(global_options)
for _command in (check.check, run.run, run.resume, status, run.stop, watch.logs, report.report):
    app.command()(_command)
app.command("import")(report.import_)
app.add_typer(about.data_app, name="data")
for _command in (about.recipes, about.version, about.ui):
    app.command()(_command)

__all__ = ["WorkspaceOpt", "app", "console", "err_console", "main"]


# ---------------------------------------------------------------- recipe commands
_CORE_COMMANDS: frozenset[str] | None = None


def _mount_recipe_commands() -> None:
    """Add every recipe's own commands to `app` (once). A core command keeps its name: a recipe
    command of the same name is not mounted."""
    global _CORE_COMMANDS
    if _CORE_COMMANDS is not None:
        return
    core = _command_names()
    _CORE_COMMANDS = frozenset(core)
    for sub in app_recipes.command_apps():
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
        say("error:", "red", str(e))
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
        kind = click_kind(e)
        if kind == "exit":
            return getattr(e, "exit_code", 0) or 0
        if kind == "abort":
            say("aborted", "yellow", "")
            return 130
        if kind == "help":  # the help is printed already (stdout)
            say("error:", "red", "give a command (the list is above; `fairtrial COMMAND --help` "
                                  "explains one)")
            return 2
        if kind == "usage":
            say("error:", "red", usage_message(e))
            return 2
        fault = environment_fault(e, db_name())
        if fault is not None:
            say("error:", "red", str(fault))
            return fault.exit_code
        text = crash_text()
        log = crash_log(text)
        what = traceback.format_exception_only(type(e), e)[-1].strip()
        if log:
            say("internal error", "red", f"(a bug in fairtrial): {what}\nthe traceback and versions "
                                          f"are in {log}; please include it in a report")
        else:
            try:
                sys.stderr.write(text)
            except OSError:
                pass
            say("internal error", "red", f"(a bug in fairtrial): {what}\nno folder could take a "
                                          "crash log; the traceback and versions are above")
        return 70


if __name__ == "__main__":
    sys.exit(main())
