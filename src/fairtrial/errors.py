"""One error type for expected failures (bad input, a refused action, a fault of the machine),
printed as one line without a traceback; anything else is a bug.

Exit codes (docs/cli.md):
  0   ok
  1   a check or study failed (a stage run failed)
  2   bad input (UserError): a bad study file, option or argument, a usage error of the command line
  3   refused (Refused): the study is already running, nothing to stop
  74  environment fault (EnvironmentFault; EX_IOERR of sysexits.h): the disk is full, the workspace
      cannot be written, the record store is damaged or unreadable; the input was fine, the
      machine was not. Fix the machine and run the same command again.
  70  internal error, a bug (EX_SOFTWARE): the traceback and versions go to a crash log whose path
      is printed (or to stderr when no folder for it can be written)
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a refused action. `str(err)` is the whole message the user sees."""

    exit_code = 2


class Refused(UserError):
    """The action cannot be done now (another run holds the lock, nothing to stop)."""

    exit_code = 3


class EnvironmentFault(UserError):
    """The machine, not the input: a full disk, an unwritable workspace, a damaged record store."""

    exit_code = 74


def environment_fault(exc: BaseException, db: str | None = None) -> EnvironmentFault | None:
    """The one-line EnvironmentFault for an exception that is a fault of the machine, else None.

    OSError of the machine (a full disk or quota, a permission on a named file, a read-only file
    system, an I/O error, too many open files; not a missing file, which is more likely a bug) and a damaged,
    truncated, locked or unreadable database (sqlite3's or SQLAlchemy's DatabaseError, found by
    class name so that this module imports neither) are faults of the machine; everything else,
    an IntegrityError or a ProgrammingError included, may be a bug and is not classified here.
    `db` names the record store for the message.
    """
    import errno

    if isinstance(exc, OSError):
        where = exc.filename or ""
        if exc.filename2:
            where += f" -> {exc.filename2}"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return EnvironmentFault(f"disk full: no space left on the device writing {where or 'the workspace'}; "
                                    "free some space and run the same command again "
                                    "(`fairtrial run` resumes where it stopped)")
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and where:
            return EnvironmentFault(f"{exc.strerror or 'permission denied'}: {where} cannot be "
                                    "written or read; check its permissions, or give another "
                                    "workspace with --workspace")
        if exc.errno in (errno.EIO, errno.EFBIG, errno.EMFILE, errno.ENFILE, errno.ENOMEM,
                         errno.ESTALE, errno.EROFS):
            return EnvironmentFault(f"{exc.strerror or type(exc).__name__}: {where or exc}; the "
                                    "machine refused it, not the input: fix that and run again")
        return None  # a missing or misplaced file is more likely a bug than the machine
    names = [c.__name__ for c in type(exc).__mro__]
    if "DatabaseError" in names and not {"IntegrityError", "ProgrammingError"} & set(names):
        orig = getattr(exc, "orig", None) or exc
        text = " ".join(str(orig).split()) or type(orig).__name__
        if "full" in text.lower() or ("I/O error" in text and _disk_full_at(db)):
            return EnvironmentFault(f"disk full: the record store {db or ''} cannot grow ({text}); "
                                    "free some space and run the same command again")
        damaged = any(t in text for t in ("not a database", "malformed", "no such table"))
        hint = ("it is damaged or truncated: move it aside and run the same command again (a new "
                "one is made; verified artifacts are found and reused)") if damaged else \
            ("its folder may be read-only: SQLite in WAL mode writes beside the file even to "
             "read it; make the workspace writable") if ("unable to open" in text or "readonly" in text) else \
            "check the file, its permissions and the disk"
        return EnvironmentFault(f"the record store {db or ''} cannot be used: {text}; {hint}".replace("  ", " "))
    return None


def _disk_full_at(path: str | None) -> bool:
    """SQLite says "disk I/O error" when a write of its WAL meets a full disk: look."""
    import shutil
    from pathlib import Path

    if not path or "://" in path:
        return False
    try:
        return shutil.disk_usage(Path(path).parent).free < 2**20
    except OSError:
        return False
