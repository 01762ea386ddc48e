"""What a range test produced: the curve, the trials, per-group verdicts, a JSON form and a plot."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from looplint.lrfind.trials import Trial


@dataclass(frozen=True)
class GroupResult:
    """One parameter group: its LR before the test, the suggestion, and the verdict on its LR."""

    name: str
    initial_lr: float  # the LR the group had (for a scheduled group: the schedule's peak)
    suggested_lr: float | None
    lrs: list[float]  # the LRs this group was given during the range test
    ratio: float = 1.0  # this group's LR / the reference LR (groups keep their ratios)
    good_range: tuple[float, float] | None = None
    verdict: str | None = None  # "too small", "good", "too large"; None when there is no answer
    verdict_text: str = ""  # the verdict in words, with its evidence
    schedule: str | None = None  # what the test implies for the script's LR scheduler


@dataclass
class LRFindResult:
    """The outcome of one LR range test and its confirmation trials.

    `lrs[i]` is the reference LR of update i (the largest group LR of the first optimizer; the
    other groups keep their ratio to it) and `raw_losses[i]` the loss measured on the next batch,
    after that update. `losses` is the smoothed curve: the bias-corrected moving average of
    `raw_losses`, run forward and backward up to just past the lowest loss so it does not lag
    (see `looplint.lrfind.curve.smoothed_curve`). `trials` are the confirmation runs, at
    reference LRs, with their held-out losses; `baseline_loss` is the held-out loss before them.
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
    suggested_index: int | None = None  # the recorded step nearest the suggestion
    confidence: str = "none"  # "high" (confirmed by trials), "low" or "none" (no suggestion)
    curve_lr: float | None = None  # the curve's own estimate (reference LR), before the trials
    good_range: tuple[float, float] | None = None  # reference LRs that did about as well
    diverged_lr: float | None = None  # the smallest reference LR seen to diverge
    trials: list[Trial] = field(default_factory=list)
    baseline_loss: float | None = None
    trial_steps: int = 0  # optimizer steps spent in the trials
    eval_batches: int = 0  # batches evaluated to judge them
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def suggested_lr(self) -> list[float | None]:
        """The suggested learning rate of each parameter group, in group order."""
        return [group.suggested_lr for group in self.groups]

    @property
    def verdicts(self) -> list[str | None]:
        """The verdict on each group's own LR: "too small", "good", "too large" or None."""
        return [group.verdict for group in self.groups]

    def __repr__(self) -> str:
        suggested = ", ".join("None" if lr is None else f"{lr:.3g}" for lr in self.suggested_lr)
        return (
            f"LRFindResult(suggested_lr=[{suggested}], confidence={self.confidence!r}, "
            f"verdicts={self.verdicts!r}, stop_reason={self.stop_reason!r}, "
            f"range_test_steps={len(self.lrs)}, trials={len(self.trials)})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (non-finite losses become null)."""
        return {
            "groups": [
                {
                    "name": group.name,
                    "initial_lr": group.initial_lr,
                    "suggested_lr": group.suggested_lr,
                    "good_range": _pair(group.good_range),
                    "verdict": group.verdict,
                    "verdict_text": group.verdict_text,
                    "schedule": group.schedule,
                    "lrs": group.lrs,
                }
                for group in self.groups
            ],
            "confidence": self.confidence,
            "reason": self.reason,
            "curve_lr": self.curve_lr,
            "good_range": _pair(self.good_range),
            "diverged_lr": self.diverged_lr,
            "trials": [
                {
                    "lr": trial.lr,
                    "held_out_loss": _finite_or_none(trial.loss),
                    "steps": trial.steps,
                    "diverged": trial.diverged,
                }
                for trial in self.trials
            ],
            "baseline_loss": self.baseline_loss,
            "cost": {
                "range_test_steps": len(self.lrs),
                "trial_steps": self.trial_steps,
                "eval_batches": self.eval_batches,
            },
            "lrs": self.lrs,
            "losses": [_finite_or_none(v) for v in self.losses],
            "raw_losses": [_finite_or_none(v) for v in self.raw_losses],
            "suggested_index": self.suggested_index,
            "stop_reason": self.stop_reason,
            "stop_detail": self.stop_detail,
            **self.extra,
        }

    def plot(self, path: str | Path) -> Path:
        """Save the range test curve and the trials as a PNG (log LR axis); returns the path."""
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "plotting the range test needs matplotlib: pip install 'looplint[lr]'"
            ) from None
        from looplint.lrfind.plot import draw

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        draw(self, path)
        return path


def _pair(value: tuple[float, float] | None) -> list[float] | None:
    return None if value is None else [value[0], value[1]]


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
