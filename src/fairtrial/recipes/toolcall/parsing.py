"""Parsers of the two tracks' answers, strict and tolerant (docs/recipes/toolcall.md states every
rule).

- toolcall: one or more `<tool_call name="F">{json object of arguments}</tool_call>` wrappers.
- structured: one JSON object `{"query": str, "tool_name": str, "arguments": object}`.

The strict parser takes the answer exactly in the track's format (surrounding whitespace aside).
The tolerant parser applies named repairs and counts each one: markdown fences stripped, prose
before, between or after the answer ignored, a single-element list unwrapped, a Python-literal dict
read with `ast.literal_eval`, a wrapper without `name=` whose body holds `{"name", "arguments"}`
(the Hermes shape), a name attribute in single quotes, a wrapper left unclosed at the end of the text.

Plain functions; nothing here imports torch or the engine.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

TRACKS = ("toolcall", "structured")
STRUCTURED_KEYS = ("query", "tool_name", "arguments")

# repair names (the report's repair counts use them)
FENCE = "fence"
PROSE = "prose"
UNWRAP_LIST = "unwrap_list"
PYTHON_LITERAL = "python_literal"
NAME_IN_BODY = "name_in_body"
NAME_QUOTES = "name_quotes"
UNCLOSED = "unclosed"
REPAIRS = (FENCE, PROSE, UNWRAP_LIST, PYTHON_LITERAL, NAME_IN_BODY, NAME_QUOTES, UNCLOSED)


@dataclass(frozen=True)
class Call:
    name: str
    arguments: dict[str, Any]


@dataclass
class Parsed:
    """What a parser read from one answer: `value` is a list of Calls (toolcall) or the JSON object
    (structured); None when the answer could not be read, with `error` saying why."""
    value: Any = None
    repairs: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.value is not None


_DECODER = json.JSONDecoder()
_OPEN_STRICT = re.compile(r'<tool_call name="([^"<>]+)">')
_OPEN_ANY = re.compile(r'<tool_call(?:\s+name\s*=\s*'
                       r'(?:"([^"<>]*)"|\'([^\'<>]*)\'|([^\s>"\']+)))?\s*>')
_CLOSE = "</tool_call>"
_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n?(.*?)(?:```|\Z)", re.S)


# ---------------------------------------------------------------- strict
def parse_strict(track: str, text: str) -> Parsed:
    if track == "toolcall":
        return _toolcall_strict(text)
    if track == "structured":
        return _structured_strict(text)
    raise ValueError(f'unknown track "{track}"; known: {", ".join(TRACKS)}')


def _toolcall_strict(text: str) -> Parsed:
    s = text.strip()
    if not s:
        return Parsed(error="empty answer")
    calls = []
    pos = 0
    while pos < len(s):
        m = _OPEN_STRICT.match(s, pos)
        if not m:
            what = "no <tool_call name=\"...\"> wrapper" if pos == 0 else \
                "text after a </tool_call> that is not another wrapper"
            return Parsed(error=f"{what} at character {pos}")
        try:
            body, end = _DECODER.raw_decode(s, m.end())
        except json.JSONDecodeError as e:
            return Parsed(error=f"the body of the wrapper is not JSON ({e.msg})")
        if not isinstance(body, dict):
            return Parsed(error=f"the body of the wrapper is a JSON {_kind(body)}, not an object")
        if not s.startswith(_CLOSE, end):
            return Parsed(error=f"no </tool_call> right after the JSON body (character {end})")
        calls.append(Call(m.group(1), body))
        pos = end + len(_CLOSE)
        while pos < len(s) and s[pos].isspace():
            pos += 1
    return Parsed(value=calls)


def _structured_strict(text: str) -> Parsed:
    s = text.strip()
    if not s:
        return Parsed(error="empty answer")
    try:
        obj = json.loads(s)
    except json.JSONDecodeError as e:
        return Parsed(error=f"not JSON ({e.msg} at character {e.pos})")
    if not isinstance(obj, dict):
        return Parsed(error=f"a JSON {_kind(obj)}, not an object")
    return Parsed(value=obj)


# ---------------------------------------------------------------- tolerant
def parse_tolerant(track: str, text: str) -> Parsed:
    strict = parse_strict(track, text)
    if strict.ok:
        return strict
    repairs: list[str] = []
    s = _strip_fences(text, repairs)
    if track == "toolcall":
        out = _toolcall_tolerant(s, repairs)
    else:
        out = _structured_tolerant(s, repairs)
    if out.ok:
        return out
    return Parsed(error=strict.error, repairs=out.repairs)


def _strip_fences(text: str, repairs: list[str]) -> str:
    """The content of markdown code fences (an unclosed fence runs to the end); text outside the
    fences is prose (a repair of its own when it is not blank)."""
    if "```" not in text:
        return text
    blocks = _FENCE.findall(text)
    if not blocks:
        return text
    repairs.append(FENCE)
    outside = _FENCE.sub("", text)
    if outside.strip():
        repairs.append(PROSE)
    return "\n".join(blocks)


def _loads_lenient(s: str, start: int, repairs: list[str]) -> tuple[Any, int] | None:
    """A JSON value starting at s[start]; else a Python literal (single quotes, True/None) spanning
    a balanced bracket run. Returns (value, end) or None."""
    try:
        return _DECODER.raw_decode(s, start)
    except json.JSONDecodeError:
        pass
    end = _balanced_end(s, start)
    if end is None:
        return None
    try:
        # a model's text is no source code: Python's warnings about it (an invalid escape such as
        # "\d" is a DeprecationWarning, a SyntaxWarning from 3.12) would be printed to the user
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = _jsonable(ast.literal_eval(s[start:end]))
        json.dumps(value)  # a set, bytes or complex number has no JSON form: not an answer
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    repairs.append(PYTHON_LITERAL)
    return value, end


def _balanced_end(s: str, start: int) -> int | None:
    """End of the bracketed run opening at s[start] ('{' or '['), skipping quoted strings."""
    if start >= len(s) or s[start] not in "{[":
        return None
    depth = 0
    quote = None
    i = start
    while i < len(s):
        c = s[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _jsonable(v: Any) -> Any:
    """A Python literal as the JSON value it stands for (tuples are lists; other values are kept,
    and a set or bytes is refused by the caller's type checks)."""
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def _unwrap(value: Any, repairs: list[str]) -> Any:
    if isinstance(value, list) and len(value) == 1:
        repairs.append(UNWRAP_LIST)
        return value[0]
    return value


def _toolcall_tolerant(s: str, repairs: list[str]) -> Parsed:
    calls = []
    pos = 0
    prose = False
    for m in _OPEN_ANY.finditer(s):
        if m.start() < pos:
            continue
        if s[pos:m.start()].strip():
            prose = True
        name = m.group(1) if m.group(1) is not None else m.group(2) or m.group(3)
        if m.group(1) is None and (m.group(2) or m.group(3)):
            repairs.append(NAME_QUOTES)
        i = m.end()
        while i < len(s) and s[i].isspace():
            i += 1
        got = _loads_lenient(s, i, repairs)
        if got is None:
            return Parsed(repairs=repairs, error="a wrapper's body is neither JSON nor a literal")
        body, end = got
        body = _unwrap(body, repairs)
        if not isinstance(body, dict):
            return Parsed(repairs=repairs, error=f"a wrapper's body is a {_kind(body)}")
        if not name:
            if isinstance(body.get("name"), str) and isinstance(body.get("arguments"), dict) \
                    and set(body) <= {"name", "arguments"}:
                repairs.append(NAME_IN_BODY)
                name, body = body["name"], body["arguments"]
            else:
                return Parsed(repairs=repairs, error="a wrapper without a tool name")
        while end < len(s) and s[end].isspace():
            end += 1
        if s.startswith(_CLOSE, end):
            pos = end + len(_CLOSE)
        else:
            nxt = s.find(_CLOSE, end)
            if nxt < 0:
                repairs.append(UNCLOSED)
                pos = end
            else:
                prose = prose or bool(s[end:nxt].strip())
                pos = nxt + len(_CLOSE)
        calls.append(Call(name, body))
    if not calls:
        return Parsed(repairs=repairs, error="no <tool_call> wrapper")
    if s[pos:].strip():
        prose = True
    if prose and PROSE not in repairs:
        repairs.append(PROSE)
    return Parsed(value=calls, repairs=repairs)


def _structured_tolerant(s: str, repairs: list[str]) -> Parsed:
    i = 0
    while i < len(s):
        if s[i] not in "{[":
            i += 1
            continue
        local: list[str] = []
        got = _loads_lenient(s, i, local)
        if got is None:
            # a broken object is not searched for a smaller one inside it (its "arguments")
            i = _balanced_end(s, i) or i + 1
            continue
        value, end = got
        value = _unwrap(value, local)
        if not isinstance(value, dict):
            i = end
            continue
        repairs.extend(local)
        if (s[:i].strip() or s[end:].strip()) and PROSE not in repairs:
            repairs.append(PROSE)
        return Parsed(value=value, repairs=repairs)
    return Parsed(repairs=repairs, error="no JSON object")


# ---------------------------------------------------------------- helpers
def parse(track: str, text: str, mode: str) -> Parsed:
    if mode == "strict":
        return parse_strict(track, text)
    if mode == "tolerant":
        return parse_tolerant(track, text)
    raise ValueError(f'unknown parser "{mode}"; known: strict, tolerant')


def schema_valid(obj: Any) -> bool:
    """The structured track's schema: exactly the keys query (string), tool_name (non-empty
    string) and arguments (object)."""
    return (isinstance(obj, dict) and set(obj) == set(STRUCTURED_KEYS)
            and isinstance(obj["query"], str) and isinstance(obj["tool_name"], str)
            and bool(obj["tool_name"]) and isinstance(obj["arguments"], dict))


def as_calls(track: str, value: Any) -> list[Call] | None:
    """A parsed answer as a list of calls (a structured object is one call), or None when it does
    not have the shape of one."""
    if track == "toolcall":
        return list(value) if value is not None else None
    if isinstance(value, dict) and isinstance(value.get("tool_name"), str) \
            and isinstance(value.get("arguments"), dict):
        return [Call(value["tool_name"], value["arguments"])]
    return None


def render_calls(calls: list[Call]) -> str:
    """Calls in the wrapper format (compact JSON, keys as given)."""
    return "".join(f'<tool_call name="{c.name}">{json.dumps(c.arguments, ensure_ascii=False)}'
                   f"</tool_call>" for c in calls)


def _kind(v: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number"}.get(type(v), type(v).__name__)
