"""The recipe's items: read through `fairtrial.data.instructions` (one set of readers for every
recipe), given splits kept, else a seeded split in which equal prompts never straddle parts.

An item: {"id", "part" (train | valid | eval), "prompt", "completion", "system", "file", "line"}.
Ids are the reader's: "<folder>/<file stem>:<id field>" when the data has ids, else
"<folder>/<file stem>:<digest of system, prompt and completion>": stable across runs.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from fairtrial.data.instructions import read_instructions
from fairtrial.data.split import split_groups
from fairtrial.recipes.toolcall.params import DataParams, TrackData
from fairtrial.recipes.toolcall.scoring import reference_of

PARTS = ("train", "valid", "eval")


def _read(path: Path, fmt: str, dp: DataParams):
    fields = {}
    if fmt == "instruction":
        fields = {"prompt_field": dp.prompt_field, "input_field": None,
                  "response_field": dp.completion_field, "id_field": dp.id_field}
    return read_instructions(path, fmt, **fields)


def _rows(rows, track: str, part: str, limit: int | None) -> list[dict[str, Any]]:
    out = [{"id": r.id, "track": track, "part": part, "prompt": r.prompt,
            "completion": r.response, "system": r.system, "file": r.file, "line": r.line}
           for r in rows]
    return out[:limit] if limit else out


def _file(folder: Path, stem: str, what: str) -> Path:
    f = folder / f"{stem}.jsonl"
    if not f.is_file():
        have = ", ".join(sorted(p.stem for p in folder.glob("*.jsonl"))) or "none"
        raise ValueError(f"data.{what} = {stem!r}: no {f} (the folder's .jsonl files: {have})")
    return f


def normalise(text: str) -> str:
    """Case-folded, whitespace collapsed: the normalised duplicate check's form."""
    return re.sub(r"\s+", " ", text).strip().casefold()


def read_track(track: str, td: TrackData, dp: DataParams
               ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One track's (items, split description). ValueError naming the file and line on bad data."""
    path = Path(td.path)
    if path.is_dir():
        items = _rows(_read(_file(path, dp.train_file, "train_file"), td.format, dp), track,
                      "train", dp.max_train)
        if dp.valid_file:
            items += _rows(_read(_file(path, dp.valid_file, "valid_file"), td.format, dp), track,
                           "valid", None)
        if td.eval_path is None:
            items += _rows(_read(_file(path, dp.eval_file, "eval_file"), td.format, dp), track,
                           "eval", dp.max_eval)
        split = {"name": f"{track}: given", "seed": None, "reproducible": True,
                 "details": f"files {dp.train_file}/{dp.valid_file}/{dp.eval_file} of {path}"}
    else:
        rows = _rows(_read(path, td.format, dp), track, "", None)
        # equal prompts share a group, so a duplicate never lands in both train and eval
        groups = [hashlib.sha256(normalise(r["prompt"]).encode()).hexdigest()[:16] for r in rows]
        part_of = split_groups(groups, dp.split_seed, dp.split_valid, dp.split_eval)
        name = {"train": "train", "val": "valid", "test": "eval"}
        for r, g in zip(rows, groups):
            r["part"] = name[part_of[g]]
        items = ([r for r in rows if r["part"] == "train"][:dp.max_train or None]
                 + [r for r in rows if r["part"] == "valid"]
                 + ([r for r in rows if r["part"] == "eval"][:dp.max_eval or None]
                    if td.eval_path is None else []))
        split = {"name": f"{track}: seeded", "seed": dp.split_seed, "reproducible": True,
                 "details": f"valid {dp.split_valid:g}, eval {dp.split_eval:g} of {path}, "
                            "grouped by normalised prompt"}
    if td.eval_path is not None:
        ep = Path(td.eval_path)
        f = _file(ep, dp.eval_file, "eval_file") if ep.is_dir() else ep
        items += _rows(_read(f, td.eval_format or td.format, dp), track, "eval", dp.max_eval)
    for part in ("train", "eval"):
        if not any(r["part"] == part for r in items):
            raise ValueError(f"data.{track}: no {part} items in {td.path}")
    for r in items:
        if r["part"] != "eval":
            continue
        try:
            reference_of(track, r["completion"])
        except ValueError as e:
            raise ValueError(f"{r['file']}:{r['line']}: the reference completion is not in the "
                             f"{track} track's format ({e}); evaluation references must "
                             "parse under the strict parser") from None
    return items, split


def read_items(dp: DataParams) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every track's items and split descriptions."""
    items: list[dict[str, Any]] = []
    splits = []
    for track, td in dp.tracks().items():
        got, split = read_track(track, td, dp)
        items += got
        splits.append(split)
    return items, splits


def input_files(params: dict) -> list[Path]:
    """The planner's hook: the data paths, whose content digests enter the prepare key."""
    out = []
    for track in ("toolcall", "structured"):
        td = (params.get("data") or {}).get(track)
        td = {"path": td} if isinstance(td, str) else td or {}
        out += [Path(p) for p in (td.get("path"), td.get("eval_path")) if p]
    return out
