"""What a range test produced: the curve, the per-group suggestion, a JSON form and a plot."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class GroupResult:
    """One parameter group: its LR before the test, its suggested LR and the LRs it was given."""

    name: str
    initial_lr: float
    suggested_lr: float | None
    lrs: list[float]


@dataclass
class LRFindResult:
    """The outcome of one LR range test.

    `lrs[i]` is the reference LR of update i (the largest group LR of the first optimizer; the
    other groups keep their ratio to it) and `raw_losses[i]` the loss measured on the next batch,
    after that update. `losses` is the smoothed curve the suggestion was read from: the
    bias-corrected moving average of `raw_losses`, run forward and backward up to just past the
    lowest loss so it does not lag (see `looplint.lrfind.curve.smoothed_curve`).
    """

    lrs: list[float]
    raw_losses: list[float]
    losses: list[float]
    groups: list[GroupResult]
    # "diverged", "non-finite", "steps" or "data-ended"; script mode adds "script-ended",
    # "script-error", "interrupted" and "no-loss".
    stop_reason: str
    stop_detail: str  # the stop reason in words
    reason: str  # why this suggestion (or why none)
    suggested_index: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def suggested_lr(self) -> list[float | None]:
        """The suggested learning rate of each parameter group, in group order."""
        return [group.suggested_lr for group in self.groups]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (non-finite losses become null)."""
        return {
            "groups": [
                {
                    "name": group.name,
                    "initial_lr": group.initial_lr,
                    "suggested_lr": group.suggested_lr,
                    "lrs": group.lrs,
                }
                for group in self.groups
            ],
            "lrs": self.lrs,
            "losses": [_finite_or_none(v) for v in self.losses],
            "raw_losses": [_finite_or_none(v) for v in self.raw_losses],
            "suggested_index": self.suggested_index,
            "stop_reason": self.stop_reason,
            "stop_detail": self.stop_detail,
            "reason": self.reason,
            **self.extra,
        }

    def plot(self, path: str | Path) -> Path:
        """Save loss vs LR (log x axis, suggestion marked) as a PNG; returns the path."""
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "plotting the range test needs matplotlib: pip install 'looplint[lr]'"
            ) from None
        # The Agg canvas renders off-screen without touching the process-wide pyplot backend.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure = Figure(figsize=(7, 4.2), dpi=110)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        shown = [
            (lr, raw, sm)
            for lr, raw, sm in zip(self.lrs, self.raw_losses, self.losses)
            if math.isfinite(raw) and math.isfinite(sm)
        ]
        if shown:
            lrs, raws, smoothed = zip(*shown)
            axes.plot(lrs, raws, color="0.75", linewidth=1, label="loss per step")
            axes.plot(lrs, smoothed, color="C0", linewidth=2, label="smoothed loss")
            # Keep a diverging tail from squashing the interesting part of the curve.
            low, high = min(smoothed), max(smoothed[: max(1, len(smoothed) * 9 // 10)])
            margin = 0.1 * (high - low or abs(high) or 1.0)
            axes.set_ylim(low - margin, high + 3 * margin)
        suggested = [g.suggested_lr for g in self.groups if g.suggested_lr is not None]
        if self.suggested_index is not None and suggested:
            # The reference group (ratio 1) has the largest LR of all groups.
            lr = max(suggested)
            axes.axvline(lr, color="C3", linestyle="--", linewidth=1.5)
            axes.plot(
                [lr],
                [_loss_at(lr, self.lrs, self.losses, self.suggested_index)],
                "o",
                color="C3",
                label=f"suggested lr {lr:.2g}",
            )
        axes.set_xscale("log")
        axes.set_xlabel("learning rate (log scale)")
        axes.set_ylabel("loss")
        axes.set_title(f"LR range test ({len(self.lrs)} steps, stopped: {self.stop_reason})")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(loc="upper left")
        figure.tight_layout()
        figure.savefig(path, format="png")
        return path


def _loss_at(lr: float, lrs: list[float], losses: list[float], near: int) -> float:
    """The smoothed loss at `lr`, interpolated in log(lr) between the recorded points around it."""
    low = near if lrs[near] <= lr or near == 0 else near - 1
    high = min(low + 1, len(lrs) - 1)
    if high == low or not math.isfinite(losses[high]):
        return losses[near]
    share = math.log(lr / lrs[low]) / math.log(lrs[high] / lrs[low])
    return losses[low] + share * (losses[high] - losses[low])


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
