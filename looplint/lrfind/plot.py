"""The range test plot: the loss curve on top, the trials below, on one log LR axis.

Drawn on matplotlib's Agg canvas, off-screen, without touching the process-wide pyplot backend.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from looplint.lrfind.result import LRFindResult

SUGGESTED, YOURS, GOOD, DIVERGED = "C3", "C4", "C2", "0.35"


def draw(result: LRFindResult, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with_trials = bool(result.trials)
    figure = Figure(figsize=(8, 6.4 if with_trials else 4.6), dpi=110)
    FigureCanvasAgg(figure)
    if with_trials:
        top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    else:
        top, bottom = figure.subplots(1, 1), None
    reference = result.groups[0] if result.groups else None
    _curve(top, result)
    if bottom is not None:
        _trials(bottom, result)
    for axes in (top, bottom):
        if axes is None:
            continue
        axes.set_xscale("log")
        axes.grid(True, which="major", alpha=0.3)
        _marks(axes, result)
    last = bottom if bottom is not None else top
    last.set_xlabel(_x_label(result))
    suggested = reference.suggested_lr if reference else None
    if suggested is not None:
        headline = f"LR range test: suggested lr {suggested:.2g} ({result.confidence} confidence)"
    else:
        headline = "LR range test: no reliable suggestion"
    figure.suptitle(headline, fontsize=12, fontweight="bold")
    top.set_title(_subtitle(result), fontsize=9, color="0.3")
    handles, labels = [], []
    for axes in (top, bottom):
        if axes is not None:
            h, lab = axes.get_legend_handles_labels()
            handles += h
            labels += lab
    # Below the plots, so it never covers the curve.
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.1 if len(labels) > 3 else 0.06, 1, 1))
    figure.savefig(path, format="png")


def _curve(axes, result: LRFindResult) -> None:
    shown = [
        (lr, raw, smooth)
        for lr, raw, smooth in zip(result.lrs, result.raw_losses, result.losses)
        if math.isfinite(raw) and math.isfinite(smooth)
    ]
    axes.set_ylabel("training loss after the step")
    if not shown:
        return
    lrs, raws, smoothed = zip(*shown)
    axes.plot(lrs, raws, color="0.72", linewidth=0.9, label="loss per step")
    axes.plot(lrs, smoothed, color="C0", linewidth=2, label="smoothed loss")
    # The y range covers every single loss up to the floor (nothing cut off at the bottom); a
    # diverging tail may leave it at the top.
    floor = min(range(len(smoothed)), key=smoothed.__getitem__)
    body = list(raws[: floor + 1]) + list(smoothed)
    low, high = min(body), max(list(raws[: floor + 1]) + list(smoothed[: floor + 1]))
    margin = 0.06 * (high - low or abs(high) or 1.0)
    axes.set_ylim(low - margin, high + margin)
    if result.suggested_index is not None:  # without an answer the lowest point is only noise
        axes.plot(
            [lrs[floor]],
            [smoothed[floor]],
            "v",
            color="C0",
            markersize=7,
            label=f"lowest smoothed loss (lr {lrs[floor]:.2g})",
        )
    if max(raws) > high + margin:
        axes.text(
            0.99,
            0.97,
            "diverging: loss off the chart",
            transform=axes.transAxes,
            ha="right",
            va="top",
            fontsize=8,
            color=DIVERGED,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85},
        )


def _trials(axes, result: LRFindResult) -> None:
    axes.set_ylabel("held-out loss\nafter the trial")
    trials = sorted(result.trials, key=lambda t: t.lr)
    finite = [t for t in trials if not t.diverged]
    steps = max((t.steps for t in trials), default=0)
    if finite:
        axes.plot(
            [t.lr for t in finite],
            [t.loss for t in finite],
            "o-",
            color="C1",
            linewidth=1.2,
            label=f"trials: held-out loss after {steps} steps",
        )
    if result.baseline_loss is not None:
        axes.axhline(
            result.baseline_loss, color="0.5", linestyle=":", linewidth=1, label="held-out loss before"
        )
    values = [t.loss for t in finite] + ([result.baseline_loss] if result.baseline_loss is not None else [])
    if values:
        low, high = min(values), max(values)
        margin = 0.08 * (high - low or abs(high) or 1.0)
        axes.set_ylim(low - margin, high + 2 * margin)
    for trial in trials:
        if trial.diverged:
            axes.plot([trial.lr], [axes.get_ylim()[1]], "x", color=DIVERGED, markersize=8)
            axes.annotate(
                "diverged",
                (trial.lr, axes.get_ylim()[1]),
                xytext=(0, -12),
                textcoords="offset points",
                ha="center",
                fontsize=7,
                color=DIVERGED,
            )


def _marks(axes, result: LRFindResult) -> None:
    """The good range, the suggestion and the user's own LR, in reference-LR units."""
    group = result.groups[0] if result.groups else None
    first = axes is axes.figure.axes[0]
    if result.good_range is not None:
        axes.axvspan(*result.good_range, color=GOOD, alpha=0.12, label="good range" if first else None)
    if group is not None and group.suggested_lr is not None:
        lr = group.suggested_lr / group.ratio
        axes.axvline(
            lr, color=SUGGESTED, linestyle="--", linewidth=1.6, label=f"suggested {lr:.2g}" if first else None
        )
    if group is not None and group.initial_lr > 0:
        own = group.initial_lr / group.ratio
        axes.axvline(
            own, color=YOURS, linestyle=":", linewidth=1.6, label=f"your lr {own:.2g}" if first else None
        )


def _x_label(result: LRFindResult) -> str:
    if len(result.groups) <= 1:
        return "learning rate (log scale)"
    name = result.groups[0].name
    others = ", ".join(f"{g.name} x{g.ratio:.2g}" for g in result.groups[1:] if abs(g.ratio - 1) > 1e-12)
    label = f"learning rate of {name} (log scale)"
    return f"{label}; {others}" if others else label


def _subtitle(result: LRFindResult) -> str:
    count = len(result.lrs)
    if count:
        span = f"{count} steps, lr {result.lrs[0]:.2g} to {result.lrs[-1]:.2g}"
    else:
        span = "no step recorded"
    ending = {
        "diverged": "stopped when the loss diverged",
        "non-finite": "stopped when the loss became inf/nan",
        "steps": "every step ran",
        "data-ended": "the data ran out",
        "script-ended": "the script ended first",
        "script-error": "the script failed",
        "interrupted": "interrupted",
        "no-loss": "no loss seen",
    }.get(result.stop_reason, result.stop_reason)
    text = f"{span}; {ending}"
    if result.trials:
        text += f"; {len(result.trials)} trials"
    return text
