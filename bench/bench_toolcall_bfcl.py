"""Our strict call match (toolcall recipe, `scoring.call_match`) against the Berkeley Function Calling
Leaderboard's AST checker on BFCL's own items (simple, multiple, parallel) with model-like answers:
its ground truth and perturbations of it (a wrong value, a missing required argument, an extra
argument, an int for a float, a reordered parallel call). Prints the agreement per category and
perturbation and every disagreement with the rule that explains it.

    pip download bfcl-eval --no-deps -d /tmp/bfcl && unzip -q /tmp/bfcl/bfcl_eval-*.whl -d /tmp/bfcl/pkg
    .venv/bin/python bench/bench_toolcall_bfcl.py --bfcl /tmp/bfcl/pkg [--json]

bfcl-eval is only read for its checker and data (installed `--no-deps`, outside the project's
environment: its own dependencies pull every API client); the one module of it that imports them
(`constants.model_config`, used only to map function names for some API models) is replaced by a
stub that maps nothing.

Our reference for an item is the first acceptable value of each argument in BFCL's ground truth
(an argument whose first acceptable value is "" is optional and left out); BFCL accepts any of its
listed values. The documented rule differences (docs/recipes/toolcall.md) that can show here:
- BFCL compares strings after removing spaces and ,./-_*^ and lower-casing; we compare exactly;
- BFCL refuses a float for an int parameter; we compare numbers by value (5.0 = 5);
- BFCL accepts any listed alternative value; we compare with one reference;
- BFCL pairs parallel calls first-fit in the order of its possible answers, so when one of its
  answers accepts two of the model's calls it can take the wrong one and fail a right answer; we
  pair calls optimally (scipy's linear_sum_assignment).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import types
from collections import Counter, defaultdict
from pathlib import Path

CATEGORIES = {"simple": "BFCL_v4_simple_python.json", "multiple": "BFCL_v4_multiple.json",
              "parallel": "BFCL_v4_parallel.json"}


def load_checker(root: Path):
    sys.path.insert(0, str(root))
    stub = types.ModuleType("bfcl_eval.constants.model_config")

    class _NoMapping(dict):
        def __getitem__(self, key):
            return types.SimpleNamespace(underscore_to_dot=False)

    stub.MODEL_CONFIG_MAPPING = _NoMapping()
    sys.modules["bfcl_eval.constants.model_config"] = stub
    from bfcl_eval.constants.enums import Language
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker

    return ast_checker, Language.PYTHON


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _first(allowed: list, required: bool):
    """The answer a model would give for one argument: the first acceptable value (a nested
    object's own acceptable values resolved the same way); None to leave it out (optional, ""
    acceptable)."""
    values = [v for v in allowed if v != ""]
    if not values or ("" in allowed and not required):
        return None
    return _resolve(values[0])


def _resolve(v):
    """Nested objects in BFCL's ground truth hold lists of acceptable values per key."""
    if isinstance(v, dict):
        return {k: x for k, x in ((k, _first(a, True) if isinstance(a, list) else a)
                                  for k, a in v.items()) if x is not None}
    if isinstance(v, list):
        return [_resolve(x) if isinstance(x, dict) else x for x in v]
    return v


def canonical(item: dict, ground_truth: list[dict]) -> list[dict]:
    """Every call with the first acceptable value of each argument (optional ones, where ""
    is acceptable, left out; a required one takes its first other value)."""
    out = []
    for call in ground_truth:
        (name, args), = call.items()
        required = set(_schema(item["function"], name).get("required", []))
        picked = {k: _first(v, k in required) for k, v in args.items()}
        out.append({name: {k: v for k, v in picked.items() if v is not None}})
    return out


def _schema(functions: list[dict], name: str) -> dict:
    for f in functions:
        if f["name"] == name:
            return f["parameters"]
    return {"properties": {}, "required": []}


def _wrong(v):
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return v + 7
    if isinstance(v, float):
        return v + 7.5
    if isinstance(v, str):
        return v + " zq"
    if isinstance(v, list):
        return v + [v[0] if v else "zq"]
    if isinstance(v, dict):
        return {**v, "zq": 1}
    return "zq"


def perturbations(item: dict, truth: list[dict], allowed: list[dict]) -> dict[str, list[dict]]:
    out = {"truth": truth}
    first = truth[0]
    (name, args), = first.items()
    schema = _schema(item["function"], name)
    allowed_args = next(iter(allowed[0].values()))
    for k, v in args.items():
        w = _wrong(v)
        if w not in allowed_args.get(k, []):
            t = copy.deepcopy(truth)
            t[0][name][k] = w
            out["wrong_value"] = t
            break
    required = [k for k in schema.get("required", []) if k in args]
    if required:
        t = copy.deepcopy(truth)
        del t[0][name][required[0]]
        out["missing_argument"] = t
    t = copy.deepcopy(truth)
    t[0][name]["zq_extra"] = 1
    out["extra_argument"] = t
    for k, v in args.items():
        typ = schema.get("properties", {}).get(k, {}).get("type")
        if typ == "float" and isinstance(v, (int, float)) and not isinstance(v, bool) \
                and float(v).is_integer():
            t = copy.deepcopy(truth)
            t[0][name][k] = int(v)
            out["int_for_float"] = t
            break
    if len(truth) > 1:
        out["reordered"] = list(reversed(truth))
    return out


def ours(pred: list[dict], ref: list[dict]) -> bool:
    from fairtrial.recipes.toolcall.parsing import Call
    from fairtrial.recipes.toolcall.scoring import call_match

    def calls(x):
        return [Call(n, a) for c in x for n, a in c.items()]

    return call_match(calls(pred), calls(ref))


def explain(pred: list[dict], ref: list[dict], ok_bfcl: bool, error: str = "") -> str:
    """Which documented rule difference explains a disagreement (or "unexplained")."""
    import re

    def std(s):
        return re.sub(r"[ ,./\-_*^]", "", s).lower().replace("'", '"')

    for p, r in zip(pred, ref):
        (_, pa), = p.items()
        (_, ra), = r.items()
        for k in pa.keys() & ra.keys():
            a, b = pa[k], ra[k]
            if isinstance(a, str) and isinstance(b, str) and a != b and std(a) == std(b):
                return "bfcl normalises strings (spaces, punctuation, case); we compare exactly"
            if isinstance(a, float) and isinstance(b, int) and a == b and not ok_bfcl:
                return "bfcl refuses a float for an int; we compare numbers by value"
    if ok_bfcl:
        return "bfcl accepts another listed value or an omitted optional argument"
    if "Could not find a matching function" in error:
        return ("bfcl pairs parallel calls first-fit in its answer order (a call that fits two "
                "answers takes the first); we pair them optimally")
    return "unexplained"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bfcl", type=Path, required=True,
                    help="folder holding the bfcl_eval package (the unpacked wheel)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    checker, python = load_checker(a.bfcl)
    data = a.bfcl / "bfcl_eval" / "data"
    counts: dict[tuple, Counter] = defaultdict(Counter)
    disagreements = []
    n_items = 0
    for cat, fname in CATEGORIES.items():
        items = read_jsonl(data / fname)
        answers = {r["id"]: r["ground_truth"] for r in read_jsonl(data / "possible_answer" / fname)}
        for item in items:
            gt = answers[item["id"]]
            truth = canonical(item, copy.deepcopy(gt))
            n_items += 1
            for kind, pred in perturbations(item, truth, gt).items():
                # fresh copies: the checker may change what it is given
                got = checker(copy.deepcopy(item["function"]), copy.deepcopy(pred),
                              copy.deepcopy(gt), python, cat, "gpt-4o-2024-11-20")
                b = bool(got["valid"])
                o = ours(pred, truth)
                counts[(cat, kind)]["n"] += 1
                counts[(cat, kind)]["agree"] += b == o
                if b != o:
                    disagreements.append({"id": item["id"], "kind": kind, "bfcl": b, "ours": o,
                                          "bfcl_error": got.get("error"),
                                          "why": explain(pred, truth, b,
                                                         " ".join(map(str, got.get("error") or [])))})
    n = sum(c["n"] for c in counts.values())
    agree = sum(c["agree"] for c in counts.values())
    result = {"items": n_items, "answers": n, "agree": agree, "agreement": agree / n,
              "by": {f"{c}/{k}": dict(v) for (c, k), v in sorted(counts.items())},
              "disagreements": disagreements,
              "unexplained": sum(d["why"] == "unexplained" for d in disagreements)}
    if a.json:
        print(json.dumps(result, indent=1, default=str))
        return
    print(f"BFCL AST checker vs our strict call match: {n_items} items, {n} answers")
    for k, v in result["by"].items():
        print(f"  {k:28s} {v['agree']:4d}/{v['n']:4d} agree")
    print(f"agreement {agree}/{n} = {agree / n:.4f}; disagreements {len(disagreements)} "
          f"(unexplained {result['unexplained']})")
    for d in disagreements:
        print(f"  {d['id']} {d['kind']}: bfcl {d['bfcl']}, ours {d['ours']}: {d['why']}"
              f" ({'; '.join(map(str, d['bfcl_error'] or []))[:120]})")


if __name__ == "__main__":
    main()
