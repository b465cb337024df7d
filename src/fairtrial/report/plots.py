"""Plots as PNG bytes (matplotlib, Agg backend): the HTML report inlines them as base64.

Each function takes the AnalysisResult (or a piece of it) and returns PNG bytes, or None when
there is nothing to draw. They compute nothing new: every number comes from the result.
"""

from __future__ import annotations

import warnings

import io
import math

import matplotlib

matplotlib.use("Agg")            # no display, no network: render to memory
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"supported": "#1a7f37", "refuted": "#cf222e", "inconclusive": "#9a6700", None: "#57606a"}
DPI = 100


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _finite(*v) -> bool:
    return all(x is not None and math.isfinite(x) for x in v)


def endpoint_per_arm(result) -> bytes | None:
    """Mean endpoint per arm (model and baselines) with intervals, one panel per eval set."""
    metric = result.endpoint["metric"]
    rows = [s for s in result.summaries if s.metric == metric and _finite(s.mean, *s.ci)]
    if not rows:
        return None
    sets = list(dict.fromkeys(s.eval_set for s in rows))[:12]
    fig, axes = plt.subplots(1, len(sets), figsize=(min(4.2 * len(sets), 12), 0.5 + 0.38 * max(
        len({(s.arm, s.system) for s in rows if s.eval_set == e}) for e in sets)), squeeze=False)
    for ax, e in zip(axes[0], sets):
        sub = [s for s in rows if s.eval_set == e]
        labels = [s.arm if s.system == "model" else f"{s.arm} / baseline:{s.system}" for s in sub]
        y = np.arange(len(sub))[::-1]
        for yi, s in zip(y, sub):
            c = "#0969da" if s.system == "model" else "#8c959f"
            ax.errorbar(s.mean, yi, xerr=[[s.mean - s.ci[0]], [s.ci[1] - s.mean]], fmt="o", color=c,
                        capsize=3)
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_title(f"{e}", fontsize=9)
        geo = result.endpoint.get("aggregation") == "geomean"
        ax.set_xlabel(f"{metric}{', geometric mean' if geo else ''} "
                      f"({result.endpoint['direction']} is better)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    with warnings.catch_warnings():  # many eval sets: matplotlib warns it cannot tighten; fine
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()
    return _png(fig)


def forest(result) -> bytes | None:
    """Effects of the decided comparisons with their corrected intervals and the decision band."""
    comps = [c for c in result.comparisons if _finite(c.estimate, *c.interval)]
    if not comps:
        return None
    rel = comps[0].effect == "relative"
    k = 100.0 if rel else 1.0
    fig, ax = plt.subplots(figsize=(8, 0.8 + 0.42 * len(comps)))
    y = np.arange(len(comps))[::-1]
    for yi, c in zip(y, comps):
        lo, hi = c.interval
        ax.errorbar(c.estimate * k, yi, xerr=[[(c.estimate - lo) * k], [(hi - c.estimate) * k]],
                    fmt="s", color=COLORS.get(c.verdict, "#57606a"), capsize=3)
    test = result.decision.get("test", "superiority")
    m = result.decision["min_effect"] * k
    ax.axvline(0, color="black", lw=0.8)
    if test != "superiority":
        g = (result.decision.get("margin") or 0.0) * k
        if test == "equivalence":
            ax.axvspan(-g, g, color="#d0d7de", alpha=0.5, label="equivalence band")
        ax.axvline(-g, color="#1a7f37", ls="--", lw=0.8, label="-margin")
        ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False)
    elif m > 0:
        ax.axvspan(-m, m, color="#d0d7de", alpha=0.5, label="no-effect band")
        ax.axvline(m, color="#1a7f37", ls="--", lw=0.8, label="minimum effect")
        ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False)
    ax.set_yticks(y, [f"{c.arm} vs {c.reference} ({c.eval_set})" for c in comps], fontsize=8)
    ax.set_xlabel(("relative improvement (%)" if rel else "improvement") +
                  f" in {result.endpoint['metric']}, corrected intervals", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def cross_eval_heatmap(cross) -> bytes | None:
    """Arms x eval sets: the change against the control (%), own sets outlined."""
    if cross is None or not cross.arms or not cross.eval_sets:
        return None
    use_rel = bool(cross.rel_vs_control)
    grid = np.full((len(cross.arms), len(cross.eval_sets)), np.nan)
    for i, a in enumerate(cross.arms):
        for j, e in enumerate(cross.eval_sets):
            v = (cross.rel_vs_control.get(a, {}).get(e) if use_rel else cross.means.get(a, {}).get(e))
            if v is not None:
                grid[i, j] = v * 100 if use_rel else v
    fig, ax = plt.subplots(figsize=(1.2 + 1.0 * len(cross.eval_sets), 0.9 + 0.5 * len(cross.arms)))
    lim = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
    im = ax.imshow(grid, cmap="RdBu" if use_rel else "viridis", aspect="auto",
                   vmin=-lim if use_rel else None, vmax=lim if use_rel else None)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            v = grid[i, j]
            if np.isfinite(v):
                label = (f"{v:+.1f}%" if abs(v) >= 0.05 else "0.0%") if use_rel else f"{v:.3g}"
                dark = use_rel and abs(v) > 0.6 * lim     # white text on the saturated cells
                ax.text(j, i, label, ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
            if cross.own.get(cross.arms[i]) == cross.eval_sets[j]:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2, color="black"))
    ax.set_xticks(range(len(cross.eval_sets)), cross.eval_sets, fontsize=8)
    ax.set_yticks(range(len(cross.arms)), cross.arms, fontsize=8)
    ax.set_xlabel("eval set", fontsize=8)
    fig.colorbar(im, ax=ax, label=(f"improvement vs {cross.control} (%)" if use_rel else cross.metric))
    fig.tight_layout()
    return _png(fig)


def learning_curves(scaling) -> bytes | None:
    """Endpoint against training-set size per group, with the fitted power law."""
    if scaling is None or not any(g.points for g in scaling.groups):
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for g in scaling.groups:
        pts = [p for p in g.points if _finite(p["mean"], *p["ci"])]
        if not pts:
            continue
        e0 = pts[0]["eval_set"]
        pts = [p for p in pts if p["eval_set"] == e0]
        x = np.array([p["size"] for p in pts])
        y = np.array([p["mean"] for p in pts])
        err = np.array([[p["mean"] - p["ci"][0] for p in pts], [p["ci"][1] - p["mean"] for p in pts]])
        line = ax.errorbar(x, y, yerr=err, fmt="o-", capsize=3, label=g.group, lw=1)
        if g.fit:
            xs = np.geomspace(x.min(), x.max() * 2, 50)
            ax.plot(xs, g.fit["c"] + g.fit["a"] * xs ** (-g.fit["b"]), ls=":",
                    color=line[0].get_color())
    ax.set_xscale("log")
    ax.set_xlabel(f"{scaling.size_param} (log scale)")
    ax.set_ylabel(f"{scaling.metric} ({scaling.direction} is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title=scaling.group_param or None)
    fig.tight_layout()
    return _png(fig)
