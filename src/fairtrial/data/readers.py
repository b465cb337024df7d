"""Readers for the text corpora the recipes train and evaluate on.

Every reader returns a list of `Document(id, text, level, meta)`:
  id     stable across runs (built from file names and row numbers, never from order of a dict)
  text   the document text, UTF-8, BOM stripped, never empty
  level  the label the study compares on (CEFR "A1".."C2", OneStop "Ele"/"Int"/"Adv", ...)
  meta   free extras; two keys have a meaning downstream:
         meta["strata"]: dict of stratum columns (e.g. {"l1": "Arabic"}) the split stratifies on
         meta["group"]:  documents sharing a group never straddle train/valid/test (a OneStop topic's
                         three versions)

Bad input raises ValueError naming the file and the row (or line) and what was expected. The readers
are plain library code: stage code turns their ValueError into a StageError.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

CEFR_LEVELS = ("A1", "A2", "B1", "B2", "C1", "C2")
ONESTOP_LEVELS = ("Ele", "Int", "Adv")
CEFR_SP_RULES = ("A", "B", "min", "max", "mean")


@dataclass
class Document:
    id: str
    text: str
    level: str
    meta: dict = field(default_factory=dict)

    @property
    def strata(self) -> dict:
        return self.meta.get("strata", {})


# ----------------------------------------------------------------------------- decoding helpers

def _decode(raw: bytes, path: Path, line_no: int | None = None) -> str:
    """Strict UTF-8 with a message that names the file, the line and the byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if line_no is None:
            line_no = raw[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{path}: line {line_no}: not UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start}"
            f"{' of the line' if line_no is not None else ''}); re-save the file as UTF-8"
        ) from None


def read_text_file(path: Path) -> str:
    """A whole text file as str: strict UTF-8, BOM stripped, newlines normalised to \\n."""
    path = Path(path)
    text = _decode(path.read_bytes(), path)
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _lines(path: Path) -> Iterator[str]:
    """Stream the decoded lines of a file (keeps memory flat for a large CSV); the first line's BOM
    is dropped. A bad byte is reported with its line number."""
    with open(path, "rb") as f:
        for i, raw in enumerate(f, start=1):
            line = _decode(raw, path, i)
            if i == 1:
                line = line.lstrip("\ufeff")
            yield line


def _check_text(text: str | None, path: Path, where: str) -> str:
    if text is None or not str(text).strip():
        raise ValueError(f"{path}: {where}: empty text; remove the row or fill in its text")
    return str(text).strip()


# ----------------------------------------------------------------------------- CEFR-SP

def cefr_sp_level(a: int, b: int, rule: str = "mean") -> str:
    """Combine the two annotators' levels (1..6) into one CEFR label.

    rule: "A" or "B" (one annotator), "min", "max", or "mean" (rounded half up: 1.5 -> 2, so a
    disagreement resolves towards the harder level, a fixed and documented choice)."""
    if rule == "A":
        v = a
    elif rule == "B":
        v = b
    elif rule == "min":
        v = min(a, b)
    elif rule == "max":
        v = max(a, b)
    elif rule == "mean":
        v = math.floor((a + b) / 2 + 0.5)
    else:
        raise ValueError(f'unknown CEFR-SP level rule "{rule}"; known: {", ".join(CEFR_SP_RULES)}')
    return CEFR_LEVELS[v - 1]


def read_cefr_sp(path: str | Path, rule: str = "mean") -> list[Document]:
    """CEFR-SP: `sentence<TAB>level A<TAB>level B`, levels 1..6 = A1..C2.

    `path` is one file or a folder (every *.tsv and *.txt in it, sorted by name). Ids are
    "<file stem>:<line>". meta holds both annotators' levels ("level_a", "level_b")."""
    if rule not in CEFR_SP_RULES:
        raise ValueError(f'unknown CEFR-SP level rule "{rule}"; known: {", ".join(CEFR_SP_RULES)}')
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".tsv", ".txt") and p.is_file())
        if not files:
            raise ValueError(f"{path}: no CEFR-SP files (*.tsv, *.txt) in this folder")
    elif path.is_file():
        files = [path]
    else:
        raise ValueError(f"{path}: no such file or folder")
    docs: list[Document] = []
    for f in files:
        for i, line in enumerate(_lines(f), start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            cols = line.split("\t")
            if len(cols) != 3:
                raise ValueError(f"{f}: line {i}: expected 3 tab-separated columns "
                                 f"(sentence, level A, level B), found {len(cols)}")
            text = _check_text(cols[0], f, f"line {i}")
            try:
                a, b = int(cols[1]), int(cols[2])
                if not (1 <= a <= 6 and 1 <= b <= 6):
                    raise ValueError
            except ValueError:
                raise ValueError(f"{f}: line {i}: unknown level values {cols[1]!r}, {cols[2]!r}; "
                                 f"expected integers 1..6 (A1..C2)") from None
            docs.append(Document(id=f"{f.stem}:{i}", text=text, level=cefr_sp_level(a, b, rule),
                                 meta={"level_a": CEFR_LEVELS[a - 1], "level_b": CEFR_LEVELS[b - 1],
                                       "source": f.name}))
    return docs


# ----------------------------------------------------------------------------- OneStopEnglish

_LEVEL_HEADERS = {"elementary", "intermediate", "advanced"}
_TOPIC_SUFFIX = re.compile(r"\s*-\s*(ele|int|adv)\s*$", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?\"'”’):;]\s*$")


def _split_title(text: str) -> tuple[str, str | None]:
    """Drop a leading level header ("Intermediate") and split off a title line: a first line with at
    most 12 words and no sentence-final punctuation, followed by more text."""
    lines = text.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    if lines and lines[0].strip().lower() in _LEVEL_HEADERS:
        lines.pop(0)
    title = None
    if len(lines) > 1:
        first = lines[0].strip()
        if first and len(first.split()) <= 12 and not _SENTENCE_END.search(first):
            title = first
            lines.pop(0)
    return "\n".join(lines).strip(), title


def _onestop_level(folder_name: str) -> str | None:
    for lv in ONESTOP_LEVELS:
        if folder_name.lower().startswith(lv.lower()):
            return lv
    return None


def read_onestopenglish(path: str | Path, keep_title: bool = False) -> list[Document]:
    """OneStopEnglish `Texts-SeparatedByReadingLevel` (or the repository root holding it).

    Level from the folder (Ele-Txt / Int-Txt / Adv-Txt). The file stem without its -ele/-int/-adv
    suffix is the topic (meta["topic"], also meta["group"] so a topic's three versions stay in one
    split). Stray files (.DS_Store, anything not *.txt) are skipped; BOMs stripped; a leading level
    header line ("Intermediate") is dropped and a title line moved to meta["title"] (kept in the text
    when keep_title).

    The upstream Int-Txt folder holds a nested Int-Txt/ copy: the outer files lost their non-ASCII
    characters, the nested ones are intact. When a file name occurs more than once under a level
    folder, the deepest copy that is valid UTF-8 wins (the others are recorded in meta["shadowed"]);
    a non-UTF-8 file with no valid copy is an error."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder; expected the OneStopEnglish corpus folder "
                         f"(Texts-SeparatedByReadingLevel)")
    if (root / "Texts-SeparatedByReadingLevel").is_dir():
        root = root / "Texts-SeparatedByReadingLevel"
    level_dirs = sorted((d, _onestop_level(d.name)) for d in root.iterdir() if d.is_dir())
    level_dirs = [(d, lv) for d, lv in level_dirs if lv is not None]
    if not level_dirs:
        raise ValueError(f"{root}: no level folders (Ele-Txt, Int-Txt, Adv-Txt) found")
    docs: list[Document] = []
    for d, level in level_dirs:
        by_name: dict[str, list[Path]] = {}
        for p in d.rglob("*"):
            if p.is_file() and p.suffix.lower() == ".txt" and not p.name.startswith("."):
                by_name.setdefault(p.name, []).append(p)
        for name in sorted(by_name):
            copies = sorted(by_name[name], key=lambda p: (-len(p.parts), str(p)))
            text, chosen, first_error = None, None, None
            for p in copies:
                try:
                    text = read_text_file(p)
                    chosen = p
                    break
                except ValueError as e:
                    first_error = first_error or e
            if chosen is None:
                raise first_error  # type: ignore[misc]
            body, title = _split_title(text)
            if keep_title and title:
                body = title + "\n" + body
            rel = chosen.relative_to(root).as_posix()
            _check_text(body, chosen, "whole file")
            topic = _TOPIC_SUFFIX.sub("", Path(name).stem).strip()
            meta = {"topic": topic, "group": topic, "title": title, "file": rel}
            shadowed = [c.relative_to(root).as_posix() for c in copies if c != chosen]
            if shadowed:
                meta["shadowed"] = shadowed
            docs.append(Document(id=f"{level}/{topic}", text=body, level=level, meta=meta))
    return docs


# ----------------------------------------------------------------------------- EFCAMDAT

def read_efcamdat(path: str | Path) -> list[Document]:
    """EFCAMDAT, normalised CSV with columns `writing_id, l1, cefr_level, text` (stratum: l1)."""
    return read_table(path, text_column="text", level_column="cefr_level", id_column="writing_id",
                      strata_columns=("l1",), levels=CEFR_LEVELS)


# ----------------------------------------------------------------------------- generic tables

def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-empty line of a JSONL file; a bad line or byte raises
    ValueError naming `path:line`. Shared by every JSONL reader of the project."""
    path = Path(path)
    for i, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {i}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: line {i}: expected a JSON object per line")
        yield i, obj


def _table_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(row number, dict) for CSV, TSV or JSONL; row numbers count data rows from 1 (CSV/TSV: line 2
    of the file is row 1); JSONL rows are line numbers."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        yield from iter_jsonl(path)
        return
    if suffix not in (".csv", ".tsv", ".tab", ".txt"):
        raise ValueError(f"{path}: unknown table format {suffix!r}; expected .csv, .tsv or .jsonl")
    delimiter = "," if suffix == ".csv" else "\t"
    reader = csv.DictReader(_lines(path), delimiter=delimiter)
    for i, row in enumerate(reader, start=1):
        yield i, row


def read_table(path: str | Path, text_column: str = "text", level_column: str | None = "level",
               strata_columns: Sequence[str] = (), id_column: str | None = None,
               levels: Iterable[str] | None = None, *, id_optional: bool = False,
               keep_columns: bool = False) -> list[Document]:
    """A CSV, TSV or JSONL file (or a folder of them) with named text and level columns.

    Ids: the id column when given, else "<file stem>:<row>" (also when `id_optional` and the file
    has no such column). `levels`, when given, is the closed set of allowed level values; anything
    else is an error naming the row. `level_column` None: documents without a level (level "").
    `keep_columns`: the row's other scalar columns go into meta (e.g. a column to group by)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in
                       (".csv", ".tsv", ".tab", ".jsonl", ".ndjson"))
        if not files:
            raise ValueError(f"{path}: no .csv, .tsv or .jsonl files in this folder")
    elif path.is_file():
        files = [path]
    else:
        raise ValueError(f"{path}: no such file or folder")
    allowed = tuple(levels) if levels is not None else None
    docs: list[Document] = []
    for f in files:
        checked_columns = False
        file_id = id_column
        for i, row in _table_rows(f):
            if not checked_columns:
                if id_optional and file_id is not None and file_id not in row:
                    file_id = None
                need = [text_column, *([level_column] if level_column else []), *strata_columns,
                        *([file_id] if file_id else [])]
                missing = [c for c in need if c not in row]
                if missing:
                    raise ValueError(f"{f}: missing column(s) {', '.join(map(repr, missing))}; "
                                     f"found: {', '.join(map(repr, row))}")
                checked_columns = True
            where = f"row {i}"
            text = _check_text(row.get(text_column), f, where)
            level = row.get(level_column) if level_column else ""
            level = "" if level is None else str(level).strip()
            if level_column and not level:
                raise ValueError(f"{f}: {where}: empty {level_column!r}")
            if allowed is not None and level not in allowed:
                raise ValueError(f"{f}: {where}: unknown level value {level!r} in column "
                                 f"{level_column!r}; known: {', '.join(allowed)}")
            strata = {c: str(row.get(c) if row.get(c) is not None else "").strip()
                      for c in strata_columns}
            doc_id = str(row[file_id]).strip() if file_id else f"{f.stem}:{i}"
            meta: dict = {"strata": strata} if strata else {}
            if keep_columns:
                taken = {text_column, level_column, file_id, *strata_columns}
                meta.update({k: v for k, v in row.items() if k not in taken and k is not None
                             and isinstance(v, (str, int, float, bool))})
            docs.append(Document(id=doc_id, text=text, level=level, meta=meta))
        if not checked_columns:
            raise ValueError(f"{f}: no data rows")
    ids = [d.id for d in docs]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise ValueError(f"{path}: id {dup!r} occurs more than once in column {id_column!r}")
    return docs


# ----------------------------------------------------------------------------- folders of text files

def read_text_folder(path: str | Path, level_pattern: str | None = r"^(?P<level>[^/]+)/",
                     glob: str = "**/*.txt", levels: Iterable[str] | None = None) -> list[Document]:
    """One document per text file; the level is the named group `level` of `level_pattern` searched
    in the file's path relative to `path` (default: the first folder; None: no level, ""). Ids are
    the relative paths; meta["file"] is that path, meta["folder"] its folder ("" at the top)."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    try:
        pattern = re.compile(level_pattern) if level_pattern is not None else None
    except re.error as e:
        raise ValueError(f"level_pattern {level_pattern!r} is not a valid regex: {e}") from None
    if pattern is not None and "level" not in pattern.groupindex:
        raise ValueError(f"level_pattern {level_pattern!r} needs a named group (?P<level>...)")
    allowed = tuple(levels) if levels is not None else None
    docs = []
    for p in sorted(root.glob(glob)):
        if not p.is_file() or p.name.startswith("."):
            continue
        rel = p.relative_to(root).as_posix()
        m = pattern.search(rel) if pattern is not None else None
        if pattern is not None and not m:
            raise ValueError(f"{p}: level_pattern {level_pattern!r} does not match {rel!r}")
        level = m.group("level") if m else ""
        if allowed is not None and level not in allowed:
            raise ValueError(f"{p}: unknown level value {level!r}; known: {', '.join(allowed)}")
        text = _check_text(read_text_file(p), p, "whole file")
        folder = p.parent.relative_to(root).as_posix()
        docs.append(Document(id=rel, text=text, level=level,
                             meta={"file": rel, "folder": "" if folder == "." else folder}))
    if not docs:
        raise ValueError(f"{root}: no files match {glob!r}")
    return docs
