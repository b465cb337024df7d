"""Map a key path inside a TOML document to the line that defines it.

Written by hand because neither tomllib nor tomlkit exposes source positions. It understands
what study files use: `[table]`, `[[array.of.tables]]`, `key = value` and dotted keys; anything it
cannot place falls back to the closest enclosing key or table it can.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r'^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\'))*)\s*=')


def _split_dotted(s: str) -> list[str]:
    parts = re.findall(r'"[^"]*"|\'[^\']*\'|[^.\s]+', s)
    return [p.strip("\"'") for p in parts]


def key_lines(text: str) -> dict[tuple, int]:
    """Every table header and key in `text` -> its 1-based line number."""
    lines: dict[tuple, int] = {}
    table: tuple = ()
    array_counts: dict[tuple, int] = {}
    in_multiline = None
    for n, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if in_multiline in line:
                in_multiline = None
            continue
        m = _HEADER.match(line)
        if m and not _KEY.match(line):
            path = tuple(_split_dotted(m.group(2)))
            if m.group(1) == "[[":
                idx = array_counts.get(path, 0)
                array_counts[path] = idx + 1
                table = path + (idx,)
                lines.setdefault(path, n)
            else:
                table = path
            lines.setdefault(table, n)
            continue
        m = _KEY.match(line)
        if m:
            path = table + tuple(_split_dotted(m.group(1)))
            for i in range(len(table) + 1, len(path) + 1):
                lines.setdefault(path[:i], n)
            for q in ('"""', "'''"):
                if line.count(q) == 1:
                    in_multiline = q
    return lines


def line_of(text: str, loc: tuple, _cache: dict = {}) -> int | None:
    """Line of the longest prefix of `loc` that the document defines (None if none)."""
    key = hash(text)
    if key not in _cache:
        _cache.clear()
        _cache[key] = key_lines(text)
    table = _cache[key]
    loc = tuple(loc)
    for i in range(len(loc), 0, -1):
        if loc[:i] in table:
            return table[loc[:i]]
    return None


def format_loc(loc: tuple) -> str:
    """("arms", 2, "data") -> "arms[2].data"."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
