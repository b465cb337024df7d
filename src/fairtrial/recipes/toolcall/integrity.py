"""The report's hooks: integrity inputs from an arm's artifacts, and raw outputs of an external
system scored by the recipe's own scorer (`fairtrial import --outputs`). Pure functions over files
and params: no engine, no store."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fairtrial.recipes.toolcall.evaluate import item_rows, summarise
from fairtrial.base.jsonl import read_jsonl


_REQUEST = re.compile(r"^(?:Request|Query):[ \t]*(.+)$", re.M)


def request_text(prompt: str) -> str:
    """The user's request inside a prompt, what train/eval overlap is checked on: the
    "Request: ..." or "Query: ..." line of the slm-swap prompts, else the first paragraph (the
    slm-swap eval100 prompts start with the request, then the tools). Two prompts that render the
    same request with other tool descriptions are the same item for a contamination check."""
    m = _REQUEST.search(prompt)
    if m:
        return m.group(1).strip()
    return prompt.strip().split("\n\n", 1)[0].strip()


def integrity(paths: dict[str, Path], params: dict[str, Any]) -> dict[str, Any]:
    """What the arm trained on (the requests of its training items; a prompt-only arm trained on
    nothing), what each evaluation item is (its request, per track), and the splits."""
    out: dict[str, Any] = {}
    prep = paths.get("prepare")
    trained = True
    train_info = paths.get("train")
    if train_info is not None and (Path(train_info) / "train.json").is_file():
        trained = bool(json.loads((Path(train_info) / "train.json").read_text()).get("adapter"))
    if prep is not None and (Path(prep) / "items.jsonl").is_file():
        items = read_jsonl(Path(prep) / "items.jsonl")
        out["train_texts"] = [request_text(i["prompt"]) for i in items
                              if i["part"] == "train"] if trained else []
        ev: dict[str, dict[str, str]] = {}
        for i in items:
            if i["part"] == "eval":
                ev.setdefault(i["track"], {})[i["id"]] = request_text(i["prompt"])
        out["eval_texts"] = ev
        if (Path(prep) / "splits.json").is_file():
            out["splits"] = json.loads((Path(prep) / "splits.json").read_text())
    return out


def report_sections(paths: dict[str, Path], params: dict[str, Any]) -> list[dict[str, Any]]:
    """The recipe's report sections for one arm: a format gate let through or a quantised base
    (first), strict and tolerant scores side by side with the repair counts, and the error types
    under each parser, for the arm's model and the trivial baselines."""
    from fairtrial.recipes.toolcall.parsing import REPAIRS
    from fairtrial.recipes.toolcall.scoring import ERROR_TYPES, OK

    sections: list[dict[str, Any]] = []
    render = paths.get("render")
    if render is not None and (Path(render) / "gate.json").is_file():
        gate = json.loads((Path(render) / "gate.json").read_text())
        if not gate.get("passed", True):
            from fairtrial.recipes.toolcall.render import gate_message

            sections.append({"title": "Integrity: format gate failed (let through)",
                             "text": gate_message(gate).split(" (set ")[0]
                             + ". prompt.allow_format_mismatch = true let the study go on: the "
                             "trained arms learned a format the scorer does not read."})
    train_dir = paths.get("train")
    if train_dir is not None and (Path(train_dir) / "train.json").is_file():
        info = json.loads((Path(train_dir) / "train.json").read_text())
        if info.get("quantized_base"):
            sections.append({"title": "Integrity: quantised base",
                             "text": "The adapter was trained on a quantised base "
                                     "(model.allow_quantized = true)."})
    summary: dict[str, Any] = {}
    for stage in ("score", "baseline"):
        f = Path(paths[stage]) / "summary.json" if stage in paths else None
        if f is not None and f.is_file():
            summary.update(json.loads(f.read_text()))
    if not summary:
        return sections
    rows, err_rows = [], []
    for system, tracks in sorted(summary.items(), key=lambda kv: (kv[0] != "model", kv[0])):
        who = system if system == "model" else f"baseline:{system}"
        for track, s in sorted(tracks.items()):
            m = s["means"]
            endpoint = "args_f1" if track == "toolcall" else "field_f1"
            rows.append([who, track, s["items"], m.get("json_valid", 0),
                         m.get("json_valid_tolerant", 0), m.get(endpoint, 0),
                         m.get(endpoint + "_tolerant", 0), m.get("exact_match", 0),
                         m.get("exact_match_tolerant", 0), s["repaired_items"],
                         ", ".join(f"{k} {v}" for k, v in s["repairs"].items()) or "none"])
            for mode in ("strict", "tolerant"):
                e = s["errors"][mode]
                err_rows.append([who, track, mode] + [e.get(k, 0) for k in (OK,) + ERROR_TYPES])
    sections.append({
        "title": "Strict and tolerant parsing",
        "text": "Per track, the endpoint (Args F1 on toolcall, Field F1 on structured), JSON "
                "validity and exact match under the strict parser (the answer exactly in the "
                "track's format) and the tolerant one (fences, prose, single-element lists, "
                "Python literals repaired; " + ", ".join(REPAIRS) + "), with the items it "
                "repaired and the repairs by kind. First replicate of this arm; "
                "docs/recipes/toolcall.md states the rules.",
        "table": {"header": ["system", "track", "items", "valid strict", "valid tolerant",
                             "F1 strict", "F1 tolerant", "exact strict", "exact tolerant",
                             "items repaired", "repairs"], "rows": rows}})
    sections.append({
        "title": "Error types",
        "text": "Items by error type (the first that applies; ok = right) under each parser.",
        "table": {"header": ["system", "track", "parser", OK, *ERROR_TYPES], "rows": err_rows}})
    return sections


def _items(params: dict[str, Any], base_dir: Path | None) -> list[dict[str, Any]]:
    from fairtrial.recipes.toolcall.data import read_items
    from fairtrial.recipes.toolcall.params import DataParams

    dp = DataParams.model_validate(params.get("data") or {},
                                   context={"base_dir": base_dir} if base_dir else None)
    items, _ = read_items(dp)
    return [i for i in items if i["part"] == "eval"]


def score_outputs(params: dict[str, Any], rows: list[tuple[int, dict[str, Any]]], source: str,
                  base_dir: Path | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Raw outputs of an external system (`rows`: (line, {"item_id" or "prompt", "output"})) as
    item-score rows, scored exactly like a trained arm's. Returns (rows, info) with info =
    {"items", "scored", "missing", "missing_ids"}. ValueError naming the file and line for a row
    that matches no item, an item given twice, or an empty output."""
    items = _items(params, base_dir)
    by_id = {i["id"]: i for i in items}
    by_prompt: dict[str, list[str]] = {}
    for i in items:
        by_prompt.setdefault(i["prompt"], []).append(i["id"])
    answers: dict[str, str] = {}
    for n, obj in rows:
        where = f"{source}:{n}"
        out = obj.get("output", obj.get("completion", obj.get("text")))
        if not isinstance(out, str):
            raise ValueError(f"{where}: no output text; give \"output\": \"...\"")
        if not out.strip():
            raise ValueError(f"{where}: the output is empty (an item a system did not answer is "
                             "left out of the file: it is then counted as missing)")
        if obj.get("item_id") is not None:
            iid = str(obj["item_id"])
            if iid not in by_id:
                raise ValueError(f"{where}: item_id {iid!r} is no evaluation item of this study "
                                 f"(ids look like {next(iter(by_id), '?')!r})")
        elif isinstance(obj.get("prompt"), str):
            ids = by_prompt.get(obj["prompt"])
            if not ids:
                raise ValueError(f"{where}: the prompt matches no evaluation item exactly")
            if len(ids) > 1:
                raise ValueError(f"{where}: the prompt matches {len(ids)} items "
                                 f"({', '.join(ids[:3])}); give item_id")
            iid = ids[0]
        else:
            raise ValueError(f"{where}: give \"item_id\" or the exact \"prompt\"")
        if iid in answers:
            raise ValueError(f"{where}: item {iid} has a second output")
        answers[iid] = out
    if not answers:
        raise ValueError(f"{source}: no outputs in the file")
    scored = item_rows(items, answers)
    missing = sorted(set(by_id) - set(answers))
    return scored, {"items": len(items), "scored": len(answers), "missing": len(missing),
                    "missing_ids": missing[:10], "summary": summarise(scored)}
