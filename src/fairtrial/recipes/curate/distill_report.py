"""The curate recipe's report sections (`Recipe.report_sections`): part 1's (funnel.py), then
part 2's, from one arm's finished merge, quantize and evaluate artifacts: the merge check, what
quantisation saved, GSM8K accuracy with maj@k and consistency (and the tie rule), the judged
win/tie/loss with the inconsistent count and the position-consistency rate, and the integrity
findings about who judges whom. Pure over files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fairtrial.recipes.curate import funnel


def _read(paths: dict[str, Path], stage: str, name: str) -> dict | None:
    f = Path(paths[stage]) / name if stage in paths else None
    return json.loads(f.read_text()) if f is not None and f.exists() else None


def _pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _interval(iv) -> str:
    return f"[{_pct(iv[0])}, {_pct(iv[1])}]" if iv else "n/a"


def distill_sections(paths: dict[str, Path], params: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    mc = _read(paths, "merge", "merge_check.json")
    if mc is not None:
        bad = not mc["passed"] or mc.get("forced")
        out.append({
            "title": ("Integrity: merge check failed" if not mc["passed"] else
                      "Integrity: merged into a quantised base" if mc.get("forced") else
                      "Merge check"),
            "text": (mc["message"] + ". The next-token distributions of base + adapter and of the "
                     "merged model are compared on held-out prompts (the evaluation questions)."
                     + (" The study allowed it to continue (merge.allow_failed_check): this "
                        "arm's scores come from a model that does not compute what was trained."
                        if bad and mc.get("allowed") else "")),
            "table": {"header": ["prompts", "top-1 agreement", "mean KL", "worst KL",
                                 "adapter's own mean KL", "passed"],
                      "rows": [[mc["n_prompts"], f"{mc['top1_agreement']:.4f}",
                                f"{mc['mean_kl']:.3g}", f"{mc['max_kl']:.3g}",
                                "n/a" if mc.get("adapter_mean_kl") is None
                                else f"{mc['adapter_mean_kl']:.3g}", mc["passed"]]]}})
    q = _read(paths, "quantize", "quantize.json")
    if q is not None and q.get("enabled"):
        out.append({"title": "Quantised copy",
                    "text": (f"int8 dynamic quantisation: {q['int8_bytes']:,} bytes on disk "
                             f"against {q['float_bytes']:,} for the float model; evaluate scored "
                             "the quantised copy.")})
    s = _read(paths, "evaluate", "summary.json")
    if s is None:
        return out
    rows = [["accuracy (greedy)", _pct(s["accuracy"])],
            ["unparsed answers", f"{s['unparsed']} of {s['items']}"]]
    if "maj_at_k" in s:
        rows += [[f"maj@{s['k']} ({s['samples']} samples per item)", _pct(s["maj_at_k"])],
                 ["consistency", _pct(s["consistency"])]]
    out.append({
        "title": "GSM8K accuracy, maj@k and consistency",
        "text": (f"{s['items']} items of {s['eval_path']}, {s['shots']}-shot. Answers extracted "
                 f"by the documented rule (after '####', else the last number; by marker "
                 f"{s['extracted_by']['marker']}, last number {s['extracted_by']['last']}, "
                 f"none {s['extracted_by']['none']}). maj@k is the exact mean over all k-subsets "
                 f"of the samples, not the first k. Ties: {s['tie_rule']}."),
        "table": {"header": ["measure", "value"], "rows": rows}})
    j = s.get("judge")
    if j is not None:
        c = j["counts"]
        opponent = ("the teacher's answers" if j.get("against") == "teacher"
                    else "the data set's solutions")
        out.append({
            "title": "Judged win / tie / loss",
            "text": (f"Judge {j['name']} ({j['kind']}) against {opponent}, every "
                     f"pair judged in both orders. Win rate {_pct(j['win_rate'])} "
                     f"{_interval(j['win_rate_interval'])} (paired bootstrap over prompts; "
                     f"inconsistent pairs and errors left out); counting inconsistent pairs as "
                     f"ties: {_pct(j['win_rate_inconsistent_as_tie'])}. Position consistency "
                     f"{_pct(j['position_consistency'])} "
                     f"{_interval(j['position_consistency_interval'])} (Wilson, over the "
                     f"{j['judged']} pairs judged in both orders). judged_inconsistent and "
                     f"judged_error are item scores too, so arms can be compared on them (the "
                     f"pairs judged_win leaves out are not lost from the comparison)."
                     + (f" Judge errors (first): {'; '.join(j['errors_first'])}."
                        if j.get("errors_first") else "")),
            "table": {"header": ["pairs", "win", "tie", "loss", "inconsistent", "error"],
                      "rows": [[j["n"], c["win"], c["tie"], c["loss"], c["inconsistent"],
                                c["error"]]]}})
    for f in s.get("findings", []):
        out.append({"title": "Integrity: judge", "text": f})
    return out


def report_sections(paths: dict[str, Path], params: dict[str, Any]) -> list[dict[str, Any]]:
    return funnel.report_sections(paths, params) + distill_sections(paths, params)
