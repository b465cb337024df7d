"""Documents in, sentence units out.

Readers for named data sets live in fairtrial.data (shared with the other recipes); this module
adds the generic formats the lvm recipe accepts (a folder of .txt files, CSV, JSONL) and turns a
document into units of `unit_sentences` sentences. Library code: raises ValueError naming the file,
row or parameter; the stage turns it into a StageError.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Doc:
    id: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


# -- locating data ---------------------------------------------------------------------------

def resolve_source(source: str) -> Path:
    """A data set name ("onestopenglish") or a path -> an existing path (fairtrial.data.resolve)."""
    from fairtrial.data import resolve
    from fairtrial.errors import UserError

    try:
        return Path(resolve(source))
    except UserError as e:
        raise ValueError(f"{e}. Give a data set name, a folder of .txt files, or a .csv or "
                         ".jsonl file") from e


def detect_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    if path.is_dir():
        if (path / "Texts-SeparatedByReadingLevel").is_dir() or any(
                p.name.endswith("-Txt") for p in path.iterdir() if p.is_dir()):
            return "onestopenglish"
        return "text"
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    raise ValueError(f"{path}: cannot tell the format from the name; set data.format to one of "
                     "onestopenglish, text, csv, jsonl")


# -- readers ---------------------------------------------------------------------------------

def read_documents(path: Path, fmt: str, text_field: str = "text",
                   id_field: str = "id") -> list[Doc]:
    fmt = detect_format(path, fmt)
    if fmt == "onestopenglish":
        return _read_onestopenglish(path)
    if fmt == "text":
        return _read_text_folder(path)
    if fmt == "csv":
        return _read_rows(path, _csv_rows(path), text_field, id_field)
    if fmt == "jsonl":
        return _read_rows(path, _jsonl_rows(path), text_field, id_field)
    raise ValueError(f"unknown data.format {fmt!r}")


def _read_onestopenglish(path: Path) -> list[Doc]:
    from fairtrial.data.readers import read_onestopenglish

    docs = []
    for d in read_onestopenglish(path):
        meta = dict(getattr(d, "meta", None) or {})
        level = getattr(d, "level", None)
        if level is not None:
            meta.setdefault("level", str(level))
        docs.append(Doc(id=str(d.id), text=d.text, meta=meta))
    return docs


def _read_text_folder(path: Path) -> list[Doc]:
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise ValueError(f"{path}: no .txt files found (one document per file expected)")
    docs = []
    for f in files:
        rel = f.relative_to(path)
        meta = {"folder": str(rel.parent)} if str(rel.parent) != "." else {}
        docs.append(Doc(id=str(rel.with_suffix("")), text=f.read_text(encoding="utf-8-sig"),
                        meta=meta))
    return docs


def _csv_rows(path: Path):
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(newline="", encoding="utf-8-sig") as f:
        for i, row in enumerate(csv.DictReader(f, delimiter=delim), start=2):
            yield i, row


def _jsonl_rows(path: Path):
    from fairtrial.data.readers import iter_jsonl

    return iter_jsonl(path)


def _read_rows(path: Path, rows, text_field: str, id_field: str) -> list[Doc]:
    docs, seen = [], set()
    for line, row in rows:
        if text_field not in row:
            raise ValueError(f"{path}:{line}: no {text_field!r} field (columns: "
                             f"{', '.join(map(str, row))}); set data.text_field")
        text = row[text_field]
        if not isinstance(text, str):
            raise ValueError(f"{path}:{line}: {text_field!r} is not a string")
        doc_id = str(row.get(id_field, f"row{line}"))
        if doc_id in seen:
            raise ValueError(f"{path}:{line}: duplicate document id {doc_id!r} in {id_field!r}")
        seen.add(doc_id)
        meta = {k: v for k, v in row.items() if k not in (text_field, id_field)
                and isinstance(v, (str, int, float, bool))}
        docs.append(Doc(id=doc_id, text=text, meta=meta))
    if not docs:
        raise ValueError(f"{path}: no documents")
    return docs


# -- units -----------------------------------------------------------------------------------

def split_sentences(text: str) -> list[str]:
    from fairtrial.data.textsplit import split_sentences as shared_split

    return shared_split(text)


def units(text: str, unit_sentences: int = 1, min_chars: int = 2) -> list[str]:
    """A document's ordered units: sentences, or chunks of `unit_sentences` sentences."""
    sents = [s.strip() for s in split_sentences(text)]
    sents = [s for s in sents if len(s) >= min_chars]
    if unit_sentences == 1:
        return sents
    return [" ".join(sents[i:i + unit_sentences]) for i in range(0, len(sents), unit_sentences)]
