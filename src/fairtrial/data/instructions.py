"""Readers for instruction data: prompt/response pairs and chat conversations.

Every reader returns an `InstructionSet`: a list of `InstructionRow`s plus the rows it skipped.

    InstructionRow(id, source, prompt, response, system, turns, file, line, meta)
      id        stable across runs: "<source>:<id field>" when the data has an id field (an id
                repeated on an identical row: "~2", "~3", ..., meta["repeats_line"]), else
                "<source>:<digest>" with digest = the first 16 hex digits of sha256 over system,
                prompt and response (so two rows with the same prompt and different responses get
                different ids); a row repeated exactly gets "~2", "~3", ... in file order.
      source    the name the caller gave (default: "<folder>/<file stem>", e.g. "toolcall/train")
      prompt    the instruction (with its `input` appended after a blank line when there is one);
                for a conversation, the non-system turns before the first assistant turn, joined by
                a blank line
      response  the answer; for a conversation, the first assistant turn
      system    the system prompt ("" when none)
      turns     the whole conversation as a tuple of {"role", "content"} dicts, roles normalised to
                system / user / assistant / tool (ShareGPT "human" -> user, "gpt" -> assistant,
                "function_response"/"observation"/"tool" -> tool); the original name of a role is in
                "from" when it differed. A prompt/response row has [system,] user, assistant.
      file      the file it came from; line: its 1-based line number
      meta      the row's other scalar fields (e.g. hermes-fc "category", "task")

Malformed rows (not JSON, not an object, a missing or non-string field, an empty prompt or response,
non-UTF-8 bytes, a conversation without a user or assistant turn, an id repeated on a different
row) raise ValueError
naming the file and line with `on_error="raise"` (the default), or are skipped and recorded in
`InstructionSet.skipped` as `Skipped(file, line, reason)` with `on_error="skip"`. Whatever
`on_error` says, these raise ValueError: a missing file, an empty file, a field name that no row of
the file has (the message lists the fields the first row has), and a file whose every row is bad.

No torch, no pandas: plain library code. Recipes turn the ValueError into a StageError.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fairtrial.data.readers import _decode

ON_ERROR = ("raise", "skip")
FORMATS = ("instruction", "sharegpt", "gsm8k", "slm-swap", "hermes-fc")

ROLE_ALIASES = {
    "system": "system",
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant",
    "bard": "assistant", "model": "assistant",
    "tool": "tool", "function_response": "tool", "observation": "tool", "function": "tool",
    "ipython": "tool",
}


@dataclass(frozen=True)
class InstructionRow:
    id: str
    source: str
    prompt: str
    response: str
    system: str = ""
    turns: tuple = ()
    file: str = ""
    line: int = 0
    meta: dict = field(default_factory=dict, compare=False)

    def record(self) -> dict:
        """A flat dict for a table (turns and meta as JSON strings)."""
        return {"id": self.id, "source": self.source, "prompt": self.prompt,
                "response": self.response, "system": self.system,
                "turns": json.dumps(list(self.turns), ensure_ascii=False),
                "file": self.file, "line": self.line,
                "meta": json.dumps(self.meta, ensure_ascii=False, sort_keys=True)}


@dataclass(frozen=True)
class Skipped:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: line {self.line}: {self.reason}"


@dataclass
class InstructionSet:
    rows: list[InstructionRow] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def __iter__(self) -> Iterator[InstructionRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    def extend(self, other: InstructionSet) -> None:
        self.rows.extend(other.rows)
        self.skipped.extend(other.skipped)


class _RowError(ValueError):
    """A bad row: skipped or raised as the caller says."""


class _FieldMissing(_RowError):
    """A named field absent from a row; if no row of the file has it, the name is wrong."""

    def __init__(self, name: str, present: Sequence[str], what: str):
        super().__init__(f"no field {name!r} ({what}); the row has: "
                         f"{', '.join(map(repr, present)) or 'no fields'}")
        self.name = name


# ----------------------------------------------------------------------------- file plumbing

def _files(path: str | Path) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (".jsonl", ".ndjson"))
        if not files:
            raise ValueError(f"{path}: no .jsonl files in this folder")
        return files
    if path.is_file():
        return [path]
    raise ValueError(f"{path}: no such file or folder")


def _default_source(f: Path) -> str:
    return f"{f.parent.name}/{f.stem}" if f.parent.name else f.stem


def _json_lines(f: Path) -> Iterator[tuple[int, dict | _RowError]]:
    """(line, object) per non-blank line, or (line, _RowError) for a line that is not UTF-8, not
    JSON or not an object: the caller decides whether that is fatal."""
    with open(f, "rb") as fh:
        for i, raw in enumerate(fh, start=1):
            try:
                line = _decode(raw, f, i)
            except ValueError as e:
                yield i, _RowError(str(e).split(": ", 2)[-1])
                continue
            if i == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield i, _RowError(f"not valid JSON ({e.msg} at column {e.colno})")
                continue
            if not isinstance(obj, dict):
                yield i, _RowError(f"expected a JSON object, found {type(obj).__name__}")
                continue
            yield i, obj


def _text(obj: dict, name: str, what: str, *, required: bool = True) -> str:
    if name not in obj:
        if not required:
            return ""
        raise _FieldMissing(name, list(obj), what)
    v = obj[name]
    if v is None and not required:
        return ""
    if not isinstance(v, str):
        raise _RowError(f"field {name!r} ({what}) is {type(v).__name__}, expected a string")
    if required and not v.strip():
        raise _RowError(f"field {name!r} ({what}) is empty")
    return v


def _extras(obj: dict, taken: set[str]) -> dict:
    return {k: v for k, v in obj.items() if k not in taken and isinstance(v, (str, int, float, bool))}


def _raw_id(obj: dict, id_field: str | None) -> str | None:
    if not id_field:
        return None
    if id_field not in obj:
        raise _FieldMissing(id_field, list(obj), "the id")
    v = obj[id_field]
    if v is None or isinstance(v, (dict, list)) or not str(v).strip():
        raise _RowError(f"field {id_field!r} (the id) is empty or not a scalar")
    return str(v).strip()


def digest(*parts: str) -> str:
    """The first 16 hex digits of sha256 over the parts separated by NUL: the id of a row without one."""
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:16]


def _read(path: str | Path, parse: Callable[[dict], tuple[str, str, str, tuple, str | None, set]],
          *, source: str | None, on_error: str) -> InstructionSet:
    """The loop every reader shares: files, lines, skip-or-raise, ids, the file-level checks."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
    out = InstructionSet()
    for f in _files(path):
        src = source or _default_source(f)
        rows: list[InstructionRow] = []
        skipped: list[Skipped] = []
        missing: dict[str, Skipped] = {}
        seen_ids: dict = {}
        first_fields: list[str] | None = None
        all_fields: set[str] = set()
        n_lines = 0
        for i, obj in _json_lines(f):
            n_lines += 1
            try:
                if isinstance(obj, _RowError):
                    raise obj
                if first_fields is None:
                    first_fields = list(obj)
                all_fields.update(obj)
                prompt, response, system, turns, raw_id, taken = parse(obj)
                extra = {}
                if raw_id is not None:
                    # A repeated id on an identical row is an exact duplicate (hermes-fc has four):
                    # kept as "<id>~2" for dedup to find; on a different row it is a bad row.
                    same = digest(json.dumps(obj, sort_keys=True, ensure_ascii=False))
                    first = seen_ids.get(raw_id)
                    if first is None:
                        seen_ids[raw_id] = (i, same, 1)
                        key = raw_id
                    elif first[1] != same:
                        raise _RowError(f"id {raw_id!r} repeats line {first[0]} with different content")
                    else:
                        n = first[2] + 1
                        seen_ids[raw_id] = (first[0], same, n)
                        key = f"{raw_id}~{n}"
                        extra = {"repeats_line": first[0]}
                else:
                    base = digest(system, prompt, response)
                    n = seen_ids.get(base, 0) + 1
                    seen_ids[base] = n
                    key = base if n == 1 else f"{base}~{n}"
                rows.append(InstructionRow(id=f"{src}:{key}", source=src, prompt=prompt,
                                           response=response, system=system, turns=turns,
                                           file=str(f), line=i, meta={**_extras(obj, taken), **extra}))
            except _RowError as e:
                s = Skipped(str(f), i, str(e))
                if isinstance(e, _FieldMissing):
                    missing.setdefault(e.name, s)
                if on_error == "raise" and not isinstance(e, _FieldMissing):
                    raise ValueError(str(s)) from None
                skipped.append(s)
        if n_lines == 0:
            raise ValueError(f"{f}: empty file (no rows)")
        # A field no row has is a wrong name, not a bad row: always fatal, listing the fields there are.
        for name, s in missing.items():
            if name not in all_fields:
                raise ValueError(f"{f}: no row has the field {name!r}; the first row's fields are: "
                                 f"{', '.join(map(repr, first_fields or [])) or 'none'}")
            if on_error == "raise":
                raise ValueError(str(s))
        if not rows:
            first = skipped[0] if skipped else None
            raise ValueError(f"{f}: every row is bad ({len(skipped)} skipped); first: {first}")
        out.rows.extend(rows)
        out.skipped.extend(skipped)
    return out


# ----------------------------------------------------------------------------- instruction JSONL

def read_instruction_jsonl(path: str | Path, *, prompt_field: str = "instruction",
                           input_field: str | None = "input", response_field: str = "output",
                           id_field: str | None = None, system_field: str | None = None,
                           source: str | None = None, on_error: str = "raise") -> InstructionSet:
    """Instruction JSONL: one object a line with the named fields (Alpaca: instruction/input/output;
    prompt/completion: `prompt_field="prompt", input_field=None, response_field="completion"`).

    `input_field`: optional per row (absent, null or "" means none); when present it is appended to
    the instruction after a blank line. `id_field`: when given every row must have it (an id repeated
    on a different row is a bad row). `system_field`: an optional system prompt per row."""

    def parse(obj: dict):
        prompt = _text(obj, prompt_field, "the prompt")
        extra = _text(obj, input_field, "the input", required=False) if input_field else ""
        if extra.strip():
            prompt = f"{prompt}\n\n{extra}"
        response = _text(obj, response_field, "the response")
        system = _text(obj, system_field, "the system prompt", required=False) if system_field else ""
        raw_id = _raw_id(obj, id_field)
        turns = (([{"role": "system", "content": system}] if system else [])
                 + [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}])
        taken = {prompt_field, input_field, response_field, id_field, system_field}
        return prompt, response, system, tuple(turns), raw_id, taken

    return _read(path, parse, source=source, on_error=on_error)


def read_gsm8k(path: str | Path, *, source: str | None = None, on_error: str = "raise") -> InstructionSet:
    """GSM8K `{"question", "answer"}` (the final answer after "####" stays in the response)."""
    return read_instruction_jsonl(path, prompt_field="question", input_field=None,
                                  response_field="answer", source=source, on_error=on_error)


def read_slm_swap(path: str | Path, *, source: str | None = None, on_error: str = "raise") -> InstructionSet:
    """slm-swap `{"prompt", "completion"}` (toolcall: `<tool_call name="F">{json}</tool_call>`;
    structured: a JSON object). `path`: a file or a track folder (toolcall/, structured/)."""
    return read_instruction_jsonl(path, prompt_field="prompt", input_field=None,
                                  response_field="completion", source=source, on_error=on_error)


# ----------------------------------------------------------------------------- ShareGPT

def read_sharegpt(path: str | Path, *, conversations_field: str = "conversations",
                  id_field: str | None = None, role_key: str | None = None,
                  content_key: str | None = None, source: str | None = None,
                  on_error: str = "raise") -> InstructionSet:
    """ShareGPT: `{"conversations": [{"from": "system"|"human"|"gpt"|..., "value": ...}, ...]}`.

    Turns may also use "role"/"content" (found per turn unless `role_key`/`content_key` are given).
    prompt = the non-system turns before the first assistant turn (joined by a blank line),
    response = that assistant turn, system = the system turns before it; every turn (tool
    definitions in the system turn, tool calls and tool responses later) is kept in `turns`."""

    def parse(obj: dict):
        if conversations_field not in obj:
            raise _FieldMissing(conversations_field, list(obj), "the conversation")
        conv = obj[conversations_field]
        if not isinstance(conv, list) or not conv:
            raise _RowError(f"field {conversations_field!r} is not a non-empty list of turns")
        turns = []
        for k, t in enumerate(conv, start=1):
            if not isinstance(t, dict):
                raise _RowError(f"turn {k} is {type(t).__name__}, expected an object")
            rk = role_key or ("from" if "from" in t else "role")
            ck = content_key or ("value" if "value" in t else "content")
            if rk not in t or ck not in t:
                raise _RowError(f"turn {k} lacks {rk!r} or {ck!r}; it has: {', '.join(map(repr, t))}")
            raw_role, content = t[rk], t[ck]
            if not isinstance(content, str):
                raise _RowError(f"turn {k}: {ck!r} is {type(content).__name__}, expected a string")
            role = ROLE_ALIASES.get(str(raw_role).strip().lower())
            if role is None:
                raise _RowError(f"turn {k}: unknown role {raw_role!r}; known: "
                                f"{', '.join(sorted(ROLE_ALIASES))}")
            turn = {"role": role, "content": content}
            if raw_role != role:
                turn["from"] = raw_role
            turns.append(turn)
        first_a = next((k for k, t in enumerate(turns) if t["role"] == "assistant"), None)
        if first_a is None:
            raise _RowError("the conversation has no assistant turn")
        before = turns[:first_a]
        system = "\n\n".join(t["content"] for t in before if t["role"] == "system")
        prompt = "\n\n".join(t["content"] for t in before if t["role"] != "system")
        if not any(t["role"] == "user" for t in before) or not prompt.strip():
            raise _RowError("the conversation has no user turn before its first assistant turn")
        response = turns[first_a]["content"]
        if not response.strip():
            raise _RowError(f"the first assistant turn (turn {first_a + 1}) is empty")
        raw_id = _raw_id(obj, id_field)
        return prompt, response, system, tuple(turns), raw_id, {conversations_field, id_field}

    return _read(path, parse, source=source, on_error=on_error)


def read_hermes_fc(path: str | Path, *, source: str | None = None, on_error: str = "raise") -> InstructionSet:
    """hermes-fc: ShareGPT with an "id" per row; the system turn holds `<tools>` (Python-literal
    dicts, not JSON) and the assistant turn `<tool_call>` blocks; parse them from `turns`."""
    return read_sharegpt(path, id_field="id", source=source, on_error=on_error)


# ----------------------------------------------------------------------------- by name

def read_instructions(path: str | Path, format: str, *, on_error: str = "raise",
                      source: str | None = None, **fields) -> InstructionSet:
    """One entry point by format name (a study file's `format = "..."`): "instruction" (with
    prompt_field / input_field / response_field / id_field / system_field), "sharegpt" (with
    conversations_field / id_field / role_key / content_key), "gsm8k", "slm-swap", "hermes-fc"."""
    readers = {"instruction": read_instruction_jsonl, "sharegpt": read_sharegpt, "gsm8k": read_gsm8k,
               "slm-swap": read_slm_swap, "hermes-fc": read_hermes_fc}
    if format not in readers:
        raise ValueError(f"unknown instruction format {format!r}; known: {', '.join(FORMATS)}")
    if fields and format not in ("instruction", "sharegpt"):
        raise ValueError(f"format {format!r} takes no field names (got {', '.join(sorted(fields))}); "
                         f"use format \"instruction\" or \"sharegpt\" to name fields")
    try:
        return readers[format](path, source=source, on_error=on_error, **fields)
    except TypeError as e:
        raise ValueError(f"format {format!r}: {e}") from None
