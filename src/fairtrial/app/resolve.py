"""Resolve what a person names: the workspace (and its record store), a study (a study file, a
name in the workspace, or all of them) and a stage run (a key prefix or ARM/SEED/STAGE) with its
verified artifact folder. Every other use case starts here.

Expected failures raise `fairtrial.errors.UserError` (and its kinds) with the message the user
sees. Heavy modules (the spec's pydantic, the store's SQLAlchemy) are imported inside the
functions: the CLI imports this module on every command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairtrial.errors import EnvironmentFault, UserError, environment_fault

if TYPE_CHECKING:
    from fairtrial.plan import Plan
    from fairtrial.spec import Spec
    from fairtrial.store.db import Store
    from fairtrial.workspace import Workspace

_IN_USE: dict[str, Any] = {}
"""The workspace and record store the running command opened: named in environment-fault
messages and where the crash log goes."""


# ---------------------------------------------------------------- workspace and store
def open_workspace(path: str | Path | None) -> Workspace:
    """The workspace at `path` (None: $FAIRTRIAL_WORKSPACE or ./.fairtrial), created when missing."""
    from fairtrial.workspace import Workspace

    ws = Workspace.find(path)
    if ws.root.exists() and not ws.root.is_dir():
        raise UserError(f"workspace {ws.root} is a file, not a folder; give a folder with "
                        "--workspace (it is created when missing)")
    try:
        ws = ws.ensure()
    except (NotADirectoryError, FileExistsError):  # a file where a folder of it should be
        raise UserError(f"workspace {ws.root} cannot be made: a part of its path is a file, not a "
                        "folder; give another --workspace") from None
    except OSError as e:
        fault = environment_fault(e)
        if fault is not None and str(fault).startswith("disk full"):
            raise fault from None
        raise EnvironmentFault(f"workspace {ws.root} cannot be created or written: "
                               f"{e.strerror or e}" + (f" ({e.filename})" if e.filename else "")) from None
    _IN_USE["workspace"] = ws.root
    return ws


def open_store(ws: Workspace) -> Store:
    from fairtrial.store.db import Store

    _IN_USE["db_url"] = ws.db_url
    return Store(ws.db_url)


def workspace_in_use() -> Path | None:
    """The workspace this process opened, if any (the crash log goes there)."""
    return _IN_USE.get("workspace")


def db_in_use() -> str | None:
    """The record store this process opened, for messages: a SQLite file's path, or the URL
    without its password."""
    import re

    url = _IN_USE.get("db_url")
    if not url:
        return None
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///"):]
    return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)  # never print a password


# ---------------------------------------------------------------- the study
def load(study: str | Path) -> Spec:
    """The validated study file (every error at once, as a SpecError)."""
    from fairtrial.spec import load_spec

    return load_spec(study)


def plan(spec: Spec, ws: Workspace) -> Plan:
    """The study's plan, with input-file digests cached in the workspace."""
    from fairtrial.plan import plan_for
    from fairtrial.recipes.api import StageError
    from fairtrial.base.digests import DigestCache

    digests = DigestCache(ws.root / "digests.json")
    try:
        p = plan_for(spec, digests)
    except FileNotFoundError as e:
        raise UserError(f"{spec.path.name}: input file {e} does not exist") from None
    except StageError as e:  # a recipe naming its input files found bad params (a missing data path)
        raise UserError(f"{spec.path.name}: {e}") from None
    digests.save()
    return p


def resolve_study(arg: str | None, store) -> list[str]:
    """Study names: all in the workspace (None), the one a study file names, or `arg` itself."""
    if arg is None:
        return [s["name"] for s in store.list_studies()]
    p = Path(arg)
    if p.suffix == ".toml" and p.exists():
        return [load(p).name]
    if store.get_study(arg):
        return [arg]
    known = [s["name"] for s in store.list_studies()]
    raise UserError(f'unknown study "{arg}"; known in this workspace: {", ".join(known) or "none"}')


# ---------------------------------------------------------------- a stage run
def find_key(ref: str, study: str | None, ws: Workspace, store) -> str:
    """A stage run's key from a key prefix (6+ characters) or ARM/SEED/STAGE with a study."""
    if "/" in ref:
        parts = ref.split("/")
        if len(parts) != 3 or not study:
            raise UserError("give arm/seed/stage together with --study NAME")
        names = resolve_study(study, store)
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


def artifact_folder(ref: str, study: str | None, workspace: str | Path | None) -> Path:
    """The verified artifact folder of a finished stage run (the CLI hands it to recipe commands
    such as ilm's `infill`); UserError when the run has no verified artifact."""
    from fairtrial.store import artifacts

    ws = open_workspace(workspace)
    store = open_store(ws)
    key = find_key(ref, study, ws, store)
    if not artifacts.verify(ws, key).ok:
        raise UserError(f"stage run {key[:12]} has no verified artifact (is it done?)")
    return ws.artifact(key)
