"""How the command line ends when something goes wrong: one line on stderr for a usage error, an
expected failure or an environment fault, and a crash log (versions, command line, traceback)
for a bug. Exit codes: see fairtrial.cli."""

from __future__ import annotations

import os
import platform
import sys
import time
import traceback
from pathlib import Path

from fairtrial import __version__
from fairtrial.app import resolve
from fairtrial.app import versions as app_versions
from fairtrial.cli.terminal import err_console


def say(prefix: str, style: str, message: str) -> None:
    """`prefix message` on stderr; the message is printed as it is (never read as markup)."""
    from rich.text import Text

    try:
        err_console.print(Text.assemble((prefix, style), " ", message), highlight=False, soft_wrap=True)
    except Exception:  # noqa: BLE001 - a broken terminal must not hide the message
        sys.stderr.write(f"{prefix} {message}\n")


def click_kind(exc: BaseException) -> str | None:
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


def usage_message(exc: BaseException) -> str:
    fmt = getattr(exc, "format_message", None)
    try:
        msg = fmt() if callable(fmt) else str(exc)
    except Exception:  # noqa: BLE001
        msg = str(exc)
    msg = "; ".join(line.strip() for line in str(msg).splitlines() if line.strip())
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or "fairtrial"
    return f"{msg} (see `{path} --help`)"


def db_name() -> str | None:
    return resolve.db_in_use()


def crash_log(text: str) -> str | None:
    """Write a crash log under a name no other crash shares (pid and nanoseconds): in the
    workspace's logs/ folder when the command opened a workspace, else $FAIRTRIAL_CRASH_DIR,
    else the temp folder; None when no folder can take it (a full disk)."""
    import tempfile

    name = f"fairtrial-crash-{os.getpid()}-{time.time_ns()}.log"
    ws = resolve.workspace_in_use()
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


def crash_text() -> str:
    """The crash log's text: versions (as `fairtrial version --json` shows them), the command
    line and the traceback."""
    tb = traceback.format_exc()  # first: nothing below may replace the exception being handled
    head = (f"fairtrial {__version__}, Python {platform.python_version()}, "
            f"{platform.platform()}\nargv: {sys.argv}\n")
    try:
        import json

        head += "versions: " + json.dumps(app_versions.versions(), default=str) + "\n"
    except Exception:  # noqa: BLE001 - the crash log must be written even when this fails
        pass
    return f"{head}\n{tb}"
