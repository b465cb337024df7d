"""Scoring one answer against its reference (docs/recipes/toolcall.md states every rule with
examples).

Values are compared after a documented coercion (`equal`):
- numbers: an int equals the float of the same value (5 == 5.0), at every depth of nested objects
  and arrays; a boolean is never a number (true != 1);
- `strings=True` (the F1 metrics): a string spelling a number equals that number ("5" == 5 == 5.0);
- objects: the same keys, each value equal; arrays: the same length, element by element, in order;
- strings otherwise exactly (case and whitespace count), null equals only null.

Parallel calls are matched optimally (scipy's `linear_sum_assignment`, maximising first the number
of pairs with the same tool name, then the arguments they agree on), never first-fit.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from fairtrial.recipes.toolcall.parsing import (Call, Parsed, as_calls, parse_strict,
                                                parse_tolerant, schema_valid)

_NUMBER = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*")

# error types, in the order they are checked (the first that applies is the item's)
OK = "ok"
UNPARSEABLE = "unparseable"
SCHEMA = "schema_invalid"
CALL_COUNT = "wrong_call_count"
WRONG_NAME = "wrong_name"
WRONG_QUERY = "wrong_query"
MISSING_ARG = "missing_argument"
EXTRA_ARG = "extra_argument"
WRONG_TYPE = "wrong_type"
WRONG_VALUE = "wrong_value"
ERROR_TYPES = (UNPARSEABLE, SCHEMA, CALL_COUNT, WRONG_NAME, WRONG_QUERY, MISSING_ARG, EXTRA_ARG,
               WRONG_TYPE, WRONG_VALUE)


def _as_number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    return None


def equal(a: Any, b: Any, *, strings: bool = False) -> bool:
    """`a` equals `b` under the coercion rules above (symmetric)."""
    na, nb = _as_number(a), _as_number(b)
    if na is not None and nb is not None:
        return na == nb or (math.isnan(na) and math.isnan(nb))
    if strings:
        if na is not None and isinstance(b, str) and _NUMBER.fullmatch(b):
            return na == float(b)
        if nb is not None and isinstance(a, str) and _NUMBER.fullmatch(a):
            return nb == float(a)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k], strings=strings) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(equal(x, y, strings=strings) for x, y in zip(a, b))
    if type(a) is not type(b):
        return False
    return a == b


def canonical(v: Any) -> str:
    """Exact-match form: JSON with sorted keys, no coercion (5 and 5.0 differ)."""
    return json.dumps(v, sort_keys=True, ensure_ascii=False)


def leaves(v: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf paths of a JSON value: object keys joined by '.', array items as [i]; an empty object
    or array is a leaf itself. {"a": {"b": [1, 2]}} -> {"a.b[0]": 1, "a.b[1]": 2}."""
    if isinstance(v, dict) and v:
        out = {}
        for k, x in v.items():
            out.update(leaves(x, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(v, list) and v:
        out = {}
        for i, x in enumerate(v):
            out.update(leaves(x, f"{prefix}[{i}]"))
        return out
    return {prefix: v}


def f1(tp: int, n_pred: int, n_ref: int) -> float:
    """2 TP / (predicted + reference); 1 when both are empty."""
    return 1.0 if n_pred + n_ref == 0 else 2 * tp / (n_pred + n_ref)


def field_f1(pred: Any, ref: Any) -> float:
    """F1 over leaf paths: a path counts when both hold it with equal values (coercion with
    strings)."""
    p, r = leaves(pred), leaves(ref)
    tp = sum(1 for k in p.keys() & r.keys() if equal(p[k], r[k], strings=True))
    return f1(tp, len(p), len(r))


def _args_tp(a: dict, b: dict) -> int:
    return sum(1 for k in a.keys() & b.keys() if equal(a[k], b[k], strings=True))


def match_calls(pred: list[Call], ref: list[Call]) -> list[tuple[int, int]]:
    """Optimal one-to-one pairs (pred index, ref index): most pairs with the same name, then most
    agreeing arguments, then the most pairs whose arguments agree exactly under numeric coercion."""
    if not pred or not ref:
        return []
    big = 1 + sum(len(c.arguments) for c in pred) + sum(len(c.arguments) for c in ref)
    w = np.zeros((len(pred), len(ref)))
    for i, p in enumerate(pred):
        for j, r in enumerate(ref):
            w[i, j] = (big * big * (p.name == r.name) + big * _args_tp(p.arguments, r.arguments)
                       + equal(p.arguments, r.arguments))
    rows, cols = linear_sum_assignment(w, maximize=True)
    return [(int(i), int(j)) for i, j in zip(rows, cols)]


def args_f1(pred: list[Call], ref: list[Call]) -> float:
    """F1 over (call, argument) pairs: an argument of a matched call counts when the reference's
    call holds the same argument name with an equal value (coercion with strings); arguments of
    unmatched calls count as predicted (or reference) only. Tool names do not enter (they have
    their own metric)."""
    tp = sum(_args_tp(pred[i].arguments, ref[j].arguments) for i, j in match_calls(pred, ref))
    return f1(tp, sum(len(c.arguments) for c in pred), sum(len(c.arguments) for c in ref))


def call_match(pred: list[Call], ref: list[Call]) -> bool:
    """The same number of calls, and an optimal matching pairs each with a reference call of the
    same name and equal arguments (numeric coercion only: "5" is not 5)."""
    if len(pred) != len(ref):
        return False
    pairs = match_calls(pred, ref)
    return len(pairs) == len(ref) and all(
        pred[i].name == ref[j].name and equal(pred[i].arguments, ref[j].arguments)
        for i, j in pairs)


def _calls_error(pred: list[Call], ref: list[Call]) -> str:
    if len(pred) != len(ref):
        return CALL_COUNT
    pairs = match_calls(pred, ref)
    if any(pred[i].name != ref[j].name for i, j in pairs):
        return WRONG_NAME
    if any(ref[j].arguments.keys() - pred[i].arguments.keys() for i, j in pairs):
        return MISSING_ARG
    if any(pred[i].arguments.keys() - ref[j].arguments.keys() for i, j in pairs):
        return EXTRA_ARG
    if all(equal(pred[i].arguments, ref[j].arguments, strings=True) for i, j in pairs):
        return WRONG_TYPE
    return WRONG_VALUE


# ---------------------------------------------------------------- declared tools
_SIGNATURE = re.compile(r"^Tool signature:\s*([\w.\-]+)\((.*)\)\s*$", re.M)
_SIG_PARAM = re.compile(r"(?:^|,\s*)([A-Za-z_]\w*):")
_TOOL_BLOCK = re.compile(r"^Tool:\s*([\w.\-]+)\s*\nParameters:\s*(\{.*?\n\})", re.M | re.S)


def declared_tools(prompt: str) -> dict[str, set[str]] | None:
    """The tools a prompt offers and their parameter names, read from the two prompt shapes of the
    slm-swap data ("Tool signature: f(a:int, optional, ...)"; "Tool: f" + "Parameters: {json}");
    None when the prompt declares none in a shape known here."""
    tools: dict[str, set[str]] = {}
    for m in _SIGNATURE.finditer(prompt):
        tools[m.group(1)] = set(_SIG_PARAM.findall(m.group(2)))
    for m in _TOOL_BLOCK.finditer(prompt):
        try:
            params = json.loads(m.group(2))
        except json.JSONDecodeError:
            continue
        if isinstance(params, dict):
            tools[m.group(1)] = set(params)
    return tools or None


def calls_valid(calls: list[Call], tools: dict[str, set[str]] | None) -> bool:
    """Every call names a tool, with an argument object; where the prompt declares its tools, the
    name is one of them and every argument is one of its parameters."""
    if not calls:
        return False
    for c in calls:
        if not c.name or not isinstance(c.arguments, dict):
            return False
        if tools is not None:
            if c.name not in tools or not c.arguments.keys() <= tools[c.name]:
                return False
    return True


# ---------------------------------------------------------------- one item
@dataclass
class ItemScore:
    metrics: dict[str, float]
    error: str
    repairs: list[str] = field(default_factory=list)
    parse_error: str = ""


TOOLCALL_METRICS = ("json_valid", "call_valid", "tool_name_acc", "args_f1", "call_match",
                    "exact_match")
STRUCTURED_METRICS = ("json_valid", "schema_valid", "tool_name_acc", "field_f1", "exact_match")


def metrics_of(track: str) -> tuple[str, ...]:
    return TOOLCALL_METRICS if track == "toolcall" else STRUCTURED_METRICS


def reference_of(track: str, completion: str) -> Any:
    """The reference answer, read with the strict parser; ValueError when it is not in the
    track's format."""
    p = parse_strict(track, completion)
    if not p.ok:
        raise ValueError(p.error)
    if track == "structured" and not schema_valid(p.value):
        raise ValueError("not an object with exactly the keys query, tool_name, arguments")
    return p.value


def score_parsed(track: str, parsed: Parsed, ref: Any,
                 tools: dict[str, set[str]] | None = None) -> ItemScore:
    names = metrics_of(track)
    if not parsed.ok:
        return ItemScore(dict.fromkeys(names, 0.0), UNPARSEABLE, parsed.repairs, parsed.error)
    m: dict[str, float] = {"json_valid": 1.0}
    if track == "toolcall":
        pred, gold = parsed.value, ref
        m["call_valid"] = float(calls_valid(pred, tools))
        m["tool_name_acc"] = float(sorted(c.name for c in pred) == sorted(c.name for c in gold))
        m["args_f1"] = args_f1(pred, gold)
        ok = call_match(pred, gold)
        m["call_match"] = float(ok)
        m["exact_match"] = float(sorted(canonical([c.name, c.arguments]) for c in pred)
                                 == sorted(canonical([c.name, c.arguments]) for c in gold))
        error = OK if ok else _calls_error(pred, gold)
    else:
        obj = parsed.value
        valid = schema_valid(obj)
        m["schema_valid"] = float(valid)
        m["tool_name_acc"] = float(obj.get("tool_name") == ref["tool_name"])
        m["field_f1"] = field_f1(obj, ref)
        pred_calls = as_calls(track, obj) or []
        m["exact_match"] = float(canonical(obj) == canonical(ref))
        if not valid:
            error = SCHEMA
        elif obj["tool_name"] != ref["tool_name"]:
            error = WRONG_NAME
        elif obj["query"] != ref["query"]:
            error = WRONG_QUERY
        elif equal(obj["arguments"], ref["arguments"]):
            error = OK
        else:
            error = _calls_error(pred_calls, as_calls(track, ref))
    return ItemScore(m, error, parsed.repairs)


def score_answer(track: str, answer: str, ref: Any, tools: dict[str, set[str]] | None = None,
                 ) -> dict[str, ItemScore]:
    """{"strict": ..., "tolerant": ...} for one answer."""
    return {"strict": score_parsed(track, parse_strict(track, answer), ref, tools),
            "tolerant": score_parsed(track, parse_tolerant(track, answer), ref, tools)}
