"""Study shapes, each with its own report section: cross-evaluation matrix, data scaling,
decision tree over several endpoints, and win/tie/loss counts for pairwise-judged items.

The hypothesis comparisons of a shape are made in analyze.py (they share the study's correction);
these functions assemble the rest of each section from the arm summaries and extra comparisons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fairtrial.analysis.compare import Comparison, estimate, finish, to_scale
from fairtrial.analysis.design import StudyDesign, get_param
from fairtrial.analysis.inputs import MODEL, pair, series
from fairtrial.stats.bootstrap import percentile_interval, two_level
from fairtrial.stats.curves import fit_power_law
from fairtrial.stats.intervals import wilson


@dataclass
class ArmSummary:
    arm: str
    metric: str
    eval_set: str
    system: str
    mean: float
    ci: tuple[float, float]
    n_seeds: int
    n_items: int
    aggregation: str = "mean"         # "geomean": `mean` and `ci` are geometric (exp of log scale)


def summarize(df: pd.DataFrame, arm: str, metric: str, eval_set: str, system: str, level: float,
              n_resamples: int, seed: int, aggregation: str = "mean",
              one_replicate: bool = False) -> ArmSummary | None:
    """`one_replicate`: the arm is one fixed system whose rows repeat under every seed; its
    summary uses one copy (one replicate), not the copies as if they were seeds."""
    t = series(df, arm, metric, eval_set, system)
    if t.empty:
        return None
    if one_replicate:
        t = t.iloc[:1]
    p = pair([t])
    if p.x.shape[2] == 0:
        return None
    d = two_level(to_scale(p.x, aggregation), n_resamples=n_resamples, seed=seed)
    point, ci = float(d.point[0]), percentile_interval(d.means[:, 0], level)
    if aggregation == "geomean":        # percentiles commute with exp
        point, ci = math.exp(point), (math.exp(ci[0]), math.exp(ci[1]))
    return ArmSummary(arm, metric, eval_set, system, point, ci, len(p.seeds), len(p.items),
                      aggregation)


# ---------------------------------------------------------------- cross-evaluation matrix
@dataclass
class CrossEvalResult:
    metric: str
    direction: str
    arms: list[str]
    eval_sets: list[str]
    own: dict[str, str]
    control: str | None
    means: dict[str, dict[str, float]]                  # arm -> eval set -> mean
    intervals: dict[str, dict[str, list[float]]]
    rel_vs_control: dict[str, dict[str, float]]         # improvement over the control, per cell
    gains: list[Comparison] = field(default_factory=list)        # own set: the hypotheses
    off_diagonal: list[Comparison] = field(default_factory=list)  # pooled over the other sets
    aggregation: str = "mean"                           # "geomean": means are geometric


def cross_eval(df: pd.DataFrame, design: StudyDesign, summaries: list[ArmSummary],
               gains: list[Comparison], level: float, n_resamples: int, seed: int) -> CrossEvalResult:
    metric, direction = design.endpoint.metric, design.endpoint.direction
    own = dict(design.cross_eval.own) if design.cross_eval else {}
    cells = [s for s in summaries if s.metric == metric and s.system == MODEL]
    arms = [a for a in design.arms if any(s.arm == a for s in cells)]
    sets_present = sorted({s.eval_set for s in cells})
    # order eval sets as the arms' own sets appear, then the rest
    eval_sets = [e for e in dict.fromkeys(own[a] for a in arms if a in own) if e in sets_present]
    eval_sets += [e for e in sets_present if e not in eval_sets]
    means = {a: {s.eval_set: s.mean for s in cells if s.arm == a} for a in arms}
    intervals = {a: {s.eval_set: list(s.ci) for s in cells if s.arm == a} for a in arms}
    sign = 1.0 if direction == "higher" else -1.0
    # With geometric means this is the ratio form, 1 - arm / control (lower is better)
    rel: dict[str, dict[str, float]] = {}
    ctrl = design.control
    if ctrl in means:
        for a in arms:
            rel[a] = {e: sign * (m - means[ctrl][e]) / abs(means[ctrl][e])
                      for e, m in means[a].items() if e in means[ctrl] and means[ctrl][e]}
    result = CrossEvalResult(metric, direction, arms, eval_sets, own, ctrl, means, intervals, rel,
                             gains=gains, aggregation=design.aggregation(metric))
    if ctrl is None or ctrl not in means:
        return result
    for a in arms:
        if a == ctrl or a not in own:
            continue
        others = [e for e in eval_sets if e != own[a] and e in means[a] and e in means[ctrl]]
        if not others:
            continue
        try:
            p = pair([series(df, ctrl, metric, others), series(df, a, metric, others)])
        except ValueError:
            continue
        if p.x.shape[2] == 0:
            continue
        c = Comparison(arm=a, reference=ctrl, metric=metric, eval_set="other sets: " + ", ".join(others),
                       direction=direction, role="off-diagonal", effect="relative",
                       aggregation=design.aggregation(metric),
                       dropped_items=p.dropped_items, dropped_seeds=p.dropped_seeds, seeds=p.seeds)
        d = estimate(c, p.x, n_resamples=n_resamples, seed=seed)
        finish(c, d, level, decide=False)
        result.off_diagonal.append(c)
    return result


# ---------------------------------------------------------------- data scaling
@dataclass
class ScalingGroup:
    group: str
    points: list[dict[str, Any]]            # {arm, size, eval_set, mean, ci} sorted by size
    change: list[Comparison] = field(default_factory=list)   # largest vs smallest size
    fit: dict[str, Any] | None = None
    fit_error: str = ""


@dataclass
class ScalingResult:
    size_param: str
    group_param: str | None
    metric: str
    direction: str
    groups: list[ScalingGroup]


def scaling_groups(design: StudyDesign) -> dict[str, list[tuple[str, float]]]:
    """group -> [(arm, size)] sorted by size, from the arms' resolved params."""
    ds = design.data_scaling
    groups: dict[str, list[tuple[str, float]]] = {}
    for a, params in design.arms.items():
        g = "all" if not ds.group_param else str(get_param(params, ds.group_param))
        groups.setdefault(g, []).append((a, float(get_param(params, ds.size_param))))
    return {g: sorted(v, key=lambda t: t[1]) for g, v in groups.items()}


def scaling(design: StudyDesign, summaries: list[ArmSummary],
            changes: list[Comparison]) -> ScalingResult:
    ds = design.data_scaling
    metric = design.endpoint.metric
    out = []
    for g, members in scaling_groups(design).items():
        pts = [{"arm": a, "size": size, "eval_set": s.eval_set, "mean": s.mean, "ci": list(s.ci)}
               for a, size in members for s in summaries
               if s.arm == a and s.metric == metric and s.system == MODEL]
        grp = ScalingGroup(group=g, points=pts,
                           change=[c for c in changes if c.arm in dict(members)])
        for e in sorted({p["eval_set"] for p in pts}):
            xs = [p["size"] for p in pts if p["eval_set"] == e]
            ys = [p["mean"] for p in pts if p["eval_set"] == e]
            if len(set(xs)) >= 3:
                try:
                    fit = fit_power_law(xs, ys)
                    notes = []
                    if fit.n_points == 3:
                        notes.append("3 sizes, 3 parameters: the curve passes through the points "
                                     "and does not test the power-law form")
                    if fit.b < 0.01:
                        notes.append("b is near 0: no sign of flattening, the change is about "
                                     "linear in log size over this range")
                    grp.fit = {**fit.to_dict(), "eval_set": e, "note": "; ".join(notes)}
                except ValueError as err:
                    grp.fit_error = str(err)
                break
        out.append(grp)
    return ScalingResult(ds.size_param, ds.group_param, metric, design.endpoint.direction, out)


# ---------------------------------------------------------------- decision tree
@dataclass
class TreeRow:
    arm: str
    outcome: str                              # "success" | "partial" | "failure"
    checks: list[dict[str, Any]]              # {metric, eval_set, mean, ci, target, direction, met, certain}


@dataclass
class DecisionTreeResult:
    targets: dict[str, float]
    rows: list[TreeRow]


def decision_tree(design: StudyDesign, summaries: list[ArmSummary]) -> DecisionTreeResult:
    targets = dict(design.decision_tree.targets)
    rows = []
    for arm in design.arms:
        checks = []
        for metric, target in targets.items():
            direction = design.direction(metric)
            for s in summaries:
                if s.arm != arm or s.metric != metric or s.system != MODEL:
                    continue
                lo, hi = s.ci
                good = (lambda v: v >= target) if direction == "higher" else (lambda v: v <= target)
                met = bool(good(s.mean))
                certain = bool(good(lo) and good(hi)) if met else bool(not good(lo) and not good(hi))
                checks.append({"metric": metric, "eval_set": s.eval_set, "mean": s.mean,
                               "ci": list(s.ci), "target": target, "direction": direction,
                               "met": met, "certain": certain})
        if not checks:
            continue
        seen = {c["metric"] for c in checks}
        n_met = sum(c["met"] for c in checks)
        if n_met == len(checks) and seen == set(targets):
            outcome = "success"
        elif n_met:
            outcome = "partial"
        else:
            outcome = "failure"
        rows.append(TreeRow(arm, outcome, checks))
    return DecisionTreeResult(targets, rows)


# ---------------------------------------------------------------- win / tie / loss
@dataclass
class WinTieLoss:
    arm: str
    reference: str | None
    eval_set: str
    wins: int
    ties: int
    losses: int
    win_rate: float                     # wins / (wins + losses)
    ci: tuple[float, float]             # two-level bootstrap over seeds and items
    wilson_ci: tuple[float, float]      # Wilson on the pooled counts (treats cells as independent)
    n_seeds: int
    n_items: int


def win_tie_loss(df: pd.DataFrame, design: StudyDesign, level: float, n_resamples: int,
                 seed: int) -> list[WinTieLoss]:
    metric = design.pairwise.metric
    ref = design.pairwise.reference or design.control
    out = []
    rows = df[(df["metric"] == metric) & (df["system"] == MODEL)]
    for arm in design.arms:
        if arm == ref:          # the judge compared the others with it, not with itself
            continue
        for eval_set in sorted(set(rows.loc[rows["arm"] == arm, "eval_set"])):
            p = pair([series(df, arm, metric, eval_set)])
            v = p.x[0]
            if v.size == 0:
                continue
            win, loss = (v > 0).astype(float), (v < 0).astype(float)
            w, l = int(win.sum()), int(loss.sum())
            d = two_level(np.stack([win, loss]), n_resamples=n_resamples, seed=seed)
            with np.errstate(divide="ignore", invalid="ignore"):
                rate = d.means[:, 0] / (d.means[:, 0] + d.means[:, 1])
            out.append(WinTieLoss(arm, ref, eval_set, w, int(v.size - w - l), l,
                                  w / (w + l) if w + l else math.nan,
                                  percentile_interval(rate, level), wilson(w, w + l, level),
                                  len(p.seeds), len(p.items)))
    return out
