"""The one message for a name that no registry knows (a recipe, a data set): what was asked, the
closest known name when there is one (difflib), and every known name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def unknown_name(kind: str, name: str, known: Iterable[str],
                 candidates: Iterable[str] | None = None) -> str:
    """'unknown data set "cefr"; did you mean "cefr-sp"? known: cefr-sp, onestopenglish'.
    `candidates`: the names a suggestion may come from, when more than the listed ones (hidden
    internal recipes such as "_test" are suggested but not listed)."""
    known = sorted(known)
    close = difflib.get_close_matches(name, list(candidates or known), n=1)
    hint = f'; did you mean "{close[0]}"?' if close else ""
    return f'unknown {kind} "{name}"{hint} known: {", ".join(known)}'
