"""One error type for expected failures (bad input, a refused action), printed without a traceback.

Exit codes: 0 ok, 1 a check or study failed, 2 bad input (UserError), 3 refused (locked, already
running), 70 internal bug (traceback written to a log file).
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a refused action. `str(err)` is the whole message the user sees."""

    exit_code = 2


class Refused(UserError):
    """The action cannot be done now (another run holds the lock, nothing to stop)."""

    exit_code = 3
