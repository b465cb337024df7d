"""Documents in, sentence units out.

The readers are fairtrial.data.readers' (one Document type for every recipe, strict UTF-8, BOM
stripped, an empty text is an error naming the row); this module maps the lvm data formats (a
data set name, a folder of .txt files, CSV, JSONL) onto them and turns a document into units of
`unit_sentences` sentences. Library code: raises ValueError naming the file, row or parameter;
the stage turns it into a StageError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fairtrial.data import readers as R
from fairtrial.data.readers import Document

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


def split_documents(keys: list[str], groups: list[str], sp) -> tuple[list[str], list[int]]:
    """Each document's split ("train", "valid" or "test") and training-order rank, from its group
    key and duplicate anchor (fairtrial.data.split.split_joined, whose labels say "val"; the
    recipes' word is "valid"). `sp`: the SplitParams."""
    from fairtrial.data.split import split_joined

    split_of, rank = split_joined(keys, groups, sp.seed, sp.valid, sp.test)
    return ["valid" if s == "val" else s for s in split_of], rank


def input_files(params: dict[str, Any]) -> list[Path]:
    """The planner's hook (before any stage runs): the data path, whose content digest enters the
    prepare key. A missing data set is bad input."""
    from fairtrial.errors import UserError
    from fairtrial.recipes.lvm.params import LvmParams

    try:
        return [resolve_source(LvmParams.model_validate(params).data.source)]
    except ValueError as e:
        raise UserError(f"params.data: {e}") from e


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


# -- readers (fairtrial.data.readers: one Document type, one set of rules) --------------------

def read_documents(path: Path, fmt: str, text_field: str = "text",
                   id_field: str = "id") -> list[Document]:
    """The lvm data formats, read by fairtrial.data.readers. Documents have no level except in
    OneStopEnglish (Ele/Int/Adv) or where a CSV/JSONL row has a "level" column (meta["level"]);
    other CSV/JSONL columns go into meta (split.group_by may name one)."""
    fmt = detect_format(path, fmt)
    if fmt == "onestopenglish":
        return R.read_onestopenglish(path)
    if fmt == "text":
        if not any(path.rglob("*.txt")):
            raise ValueError(f"{path}: no .txt files found (one document per file expected)")
        return R.read_text_folder(path, level_pattern=None)
    if fmt in ("csv", "jsonl"):
        try:
            return R.read_table(path, text_column=text_field, level_column=None,
                                id_column=id_field, id_optional=True, keep_columns=True)
        except ValueError as e:
            if "missing column" in str(e):
                raise ValueError(f"{e}; set data.text_field to the text column") from None
            raise
    raise ValueError(f"unknown data.format {fmt!r}")


def field_of(d: Document, name: str) -> str | None:
    """A document's value for `name` (split.group_by, the level filter): its level for "level"
    when it has one, else its metadata."""
    if name == "level" and d.level:
        return d.level
    v = d.meta.get(name)
    return None if v in (None, "") else str(v)


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
