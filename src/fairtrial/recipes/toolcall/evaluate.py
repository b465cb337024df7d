"""From answers to item scores: one function for the trained arms, the trivial baselines and
imported outputs of external systems, so every system is scored by the same rules.

Item-score rows: one per item, metric and parser. The strict parser's metrics keep their names
(`args_f1`), the tolerant parser's get `_tolerant` (`args_f1_tolerant`); `repairs` is the number of
repairs the tolerant parser made. Extra columns: `track`, `error` (the item's error type under that
row's parser; "ok" when it is right).
"""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping
from typing import Any

from fairtrial.recipes.toolcall.parsing import REPAIRS, render_calls
from fairtrial.recipes.toolcall.scoring import (ERROR_TYPES, OK, declared_tools, reference_of,
                                                score_answer)
from fairtrial.scores import eval_set_digest

ENDPOINT = {"toolcall": "args_f1", "structured": "field_f1"}




def eval_digests(items: list[dict[str, Any]]) -> dict[str, str]:
    """track -> digest of its evaluation items (ids, prompts and references)."""
    by: dict[str, list] = collections.defaultdict(list)
    for it in items:
        if it["part"] == "eval":
            by[it["track"]].append(it)
    return {t: eval_set_digest([i["id"] for i in its],
                               [[i["prompt"], i["completion"]] for i in its])
            for t, its in by.items()}


def item_rows(items: list[dict[str, Any]], answers: Mapping[str, str], system: str = "model"
              ) -> list[dict[str, Any]]:
    """Item-score rows of the evaluation items that have an answer (`answers`: id -> text)."""
    digests = eval_digests(items)
    rows = []
    for it in items:
        if it["part"] != "eval" or it["id"] not in answers:
            continue
        track = it["track"]
        ref = reference_of(track, it["completion"])
        scored = score_answer(track, answers[it["id"]], ref, declared_tools(it["prompt"]))
        base = {"item_id": it["id"], "eval_set": track, "eval_set_digest": digests[track],
                "system": system, "track": track}
        for mode, suffix in (("strict", ""), ("tolerant", "_tolerant")):
            s = scored[mode]
            values = {"f1": s.metrics[ENDPOINT[track]], **s.metrics}
            for name, value in values.items():
                rows.append({**base, "metric": name + suffix, "value": value,
                             "error": s.error, "repairs": ",".join(s.repairs)})
        t = scored["tolerant"]
        rows.append({**base, "metric": "repairs", "value": float(len(t.repairs)),
                     "error": t.error, "repairs": ",".join(t.repairs)})
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per system and track: the mean of every metric, the tolerant parser's repair counts, and the
    error-type table of each parser (counts of items)."""
    out: dict[str, Any] = {}
    groups: dict[tuple, list] = collections.defaultdict(list)
    for r in rows:
        groups[(r["system"], r["track"])].append(r)
    for (system, track), rs in sorted(groups.items()):
        means = {}
        for name in sorted({r["metric"] for r in rs}):
            vals = [r["value"] for r in rs if r["metric"] == name]
            means[name] = sum(vals) / len(vals)
        strict = [r for r in rs if r["metric"] == "f1"]
        tolerant = [r for r in rs if r["metric"] == "repairs"]
        repairs = collections.Counter(x for r in tolerant for x in r["repairs"].split(",") if x)
        errors = {}
        for mode, part in (("strict", strict), ("tolerant", tolerant)):
            c = collections.Counter(r["error"] for r in part)
            errors[mode] = {e: c.get(e, 0) for e in (OK,) + ERROR_TYPES if c.get(e)}
        out.setdefault(system, {})[track] = {
            "items": len(strict), "means": means,
            "repairs": {k: repairs.get(k, 0) for k in REPAIRS if repairs.get(k)},
            "repaired_items": sum(1 for r in tolerant if r["value"] > 0),
            "errors": errors}
    return out


# ---------------------------------------------------------------- trivial systems
_QUERY = re.compile(r"^Query:\s*(.*)$", re.M)
_CHOSEN = re.compile(r"^Chosen tool:\s*(\S+)\s*$", re.M)


def trivial_answer(item: dict[str, Any]) -> tuple[str, str]:
    """(system name, answer) of the trivial baseline of an item's track: structured, the query
    and the tool name copied from the prompt with empty arguments ("copy_prompt"); toolcall, the
    tool the prompt names, with no arguments ("name_only")."""
    prompt = item["prompt"]
    if item["track"] == "structured":
        import json

        q = _QUERY.search(prompt)
        t = _CHOSEN.search(prompt)
        return "copy_prompt", json.dumps({"query": q.group(1).strip() if q else "",
                                          "tool_name": t.group(1) if t else "",
                                          "arguments": {}})
    from fairtrial.recipes.toolcall.parsing import Call

    tools = declared_tools(prompt) or {}
    name = next(iter(tools), "")
    return "name_only", render_calls([Call(name, {})]) if name else ""
