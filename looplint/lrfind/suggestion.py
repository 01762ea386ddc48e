"""From the curve and the trials to the answer: the suggestion, its confidence, and a verdict on
each group's own LR ("too small", "good", "too large") with its evidence. Shared by `lr_find`
and script mode."""

from __future__ import annotations

import math
from dataclasses import dataclass

from looplint.lrfind.curve import FLOOR_SHARE, CurveReading
from looplint.lrfind.groups import ScheduledOptimizer
from looplint.lrfind.result import GroupResult, LRFindResult
from looplint.lrfind.schedules import advice, peak_factor, setting_name
from looplint.lrfind.trials import STEP, TrialSearch

# The confirmation stage (see `looplint.lrfind.trials`) is off unless asked for: on the held-out
# half of benchmarks/bench_lr_find.py it did not improve on the curve's estimate. TRIAL_STEPS is
# the trial length it was tuned and measured with.
TRIAL_STEPS = 40
EVAL_BATCHES = 8
MAX_TRIALS = 8


@dataclass(frozen=True)
class GroupSchedule:
    """A parameter group under an LR scheduler: its name and the LR the schedule peaks at."""

    scheduler: str
    peak_lr: float


def build_result(
    *,
    lrs: list[float],
    raw_losses: list[float],
    reading: CurveReading,
    search: TrialSearch | None,
    optimizers: list[ScheduledOptimizer],
    stop_reason: str,
    stop_detail: str,
    schedules: dict[tuple[int, int], GroupSchedule] | None = None,
    eval_steps: int = 0,
) -> LRFindResult:
    """Combine the curve and the trials into the result, with a verdict for every group.

    `schedules` maps (optimizer index, group index) to the scheduler driving that group;
    `eval_steps` counts held-out batches that cost an optimizer step (script mode).
    """
    diverged = lrs[-1] if stop_reason in ("diverged", "non-finite") and lrs else None
    if search is not None and search.trials:
        outcome = search.outcome()
        lr, good_range, confidence = outcome.lr, outcome.good_range, outcome.confidence
        if outcome.lr is not None:
            reason = f"{reading.finding}; the trials start at 1/{FLOOR_SHARE:g} of that lr; {outcome.reason}"
        else:
            reason = f"{outcome.reason} (the curve: {reading.finding})"
        blown = [t.lr for t in search.trials if t.diverged]
        if blown:
            diverged = min(blown + ([diverged] if diverged else []))
    else:
        # The curve alone: the good range is the estimate within one search step (3x) either
        # way, below the floor. The grid of benchmarks/bench_lr_find.py is 2.8x apart, so this
        # is about "top 2 of the grid".
        lr, confidence, reason = reading.lr, reading.confidence, reading.reason
        good_range = None
        if lr is not None and reading.floor_index is not None:
            good_range = (lr / STEP, min(lr * STEP, lrs[reading.floor_index]))
    index = None
    if lr is not None and lrs:
        index = min(range(len(lrs)), key=lambda i: abs(math.log(lrs[i] / lr)))
    groups: list[GroupResult] = []
    for opt_index, driven in enumerate(optimizers):
        for group_index, (initial, ratio) in enumerate(zip(driven.initial_lrs, driven.ratios)):
            schedule = (schedules or {}).get((opt_index, group_index))
            own = schedule.peak_lr if schedule else initial
            verdict, text = _verdict(own, ratio, lr, good_range, diverged, search, confidence, schedule)
            groups.append(
                GroupResult(
                    name=f"{driven.label}group {group_index}",
                    initial_lr=own,
                    suggested_lr=None if lr is None else lr * ratio,
                    lrs=[x * ratio for x in lrs],
                    ratio=ratio,
                    good_range=None if good_range is None else (good_range[0] * ratio, good_range[1] * ratio),
                    verdict=verdict,
                    verdict_text=text,
                    schedule=None if schedule is None else _schedule_text(schedule, lr, good_range, ratio),
                )
            )
    trials = list(search.trials) if search else []
    return LRFindResult(
        lrs=lrs,
        raw_losses=raw_losses,
        losses=reading.curve,
        groups=groups,
        stop_reason=stop_reason,
        stop_detail=stop_detail,
        reason=reason,
        suggested_index=index,
        confidence=confidence if lr is not None else "none",
        curve_lr=reading.lr,
        good_range=good_range,
        diverged_lr=diverged,
        trials=trials,
        baseline_loss=search.baseline_loss if search and search.baseline else None,
        trial_steps=sum(t.steps for t in trials) + eval_steps,
        eval_batches=(len(trials) + 1) * len(search.baseline) if search and trials else 0,
    )


def _verdict(
    own: float,
    ratio: float,
    lr: float | None,
    good_range: tuple[float, float] | None,
    diverged: float | None,
    search: TrialSearch | None,
    confidence: str,
    schedule: GroupSchedule | None,
) -> tuple[str | None, str]:
    """The verdict on one group's own LR (a scheduled group: its schedule's peak), in a word and
    in a sentence with its evidence."""
    factor = peak_factor(schedule.scheduler) if schedule else 1.0
    yours = f"your {setting_name(schedule.scheduler)}" if schedule else "your lr"
    if own <= 0:
        return None, f"{yours} is {own:g}: nothing to compare"
    if diverged is not None and own >= diverged * ratio:
        return "too large", (
            f"{yours} {own:.3g} is at or above {diverged * ratio:.3g}, where the loss diverged: too large"
            + ("" if lr is None else f" (suggested: {lr * ratio * factor:.3g})")
        )
    if lr is None or good_range is None:
        return None, "no verdict: the test gives no reliable suggestion to compare with"
    suggested = lr * ratio * factor
    low, high = good_range[0] * ratio * factor, good_range[1] * ratio * factor
    if own > high:
        verdict = "too large"
        text = f"{yours} {own:.3g} is about {own / suggested:.2g}x above the suggested {suggested:.3g}"
        text += ": likely too large"
    elif own < low:
        verdict = "too small"
        text = f"{yours} {own:.3g} is about {suggested / own:.2g}x below the suggested {suggested:.3g}"
        text += ": likely too small"
    else:
        verdict = "good"
        text = (
            f"{yours} {own:.3g} is within the good range {low:.2g} to {high:.2g} (suggested {suggested:.3g})"
        )
    if factor == 1.0:
        evidence = _trial_evidence(own / ratio, lr, ratio, search)
        if evidence:
            text += f"; {evidence}"
    if confidence == "low":
        text += " (low confidence: see why)"
    return verdict, text


def _trial_evidence(own: float, lr: float, ratio: float, search: TrialSearch | None) -> str:
    """What the trials measured at the user's LR and at the suggestion, when both were tried."""
    if search is None:
        return ""
    mine, chosen = search.trial_near(own), search.trial_near(lr)
    if mine is None or chosen is None or mine is chosen:
        return ""
    if mine.diverged:
        at_mine = f"at lr {mine.lr * ratio:.2g} the trial diverged"
    else:
        at_mine = f"lr {mine.lr * ratio:.2g} reached a held-out loss of {mine.loss:.4g}"
    return (
        f"in {chosen.steps}-step trials from your initial weights, {at_mine}, lr {chosen.lr * ratio:.2g} "
        f"reached {chosen.loss:.4g} (from {search.baseline_loss:.4g})"
    )


def _schedule_text(
    schedule: GroupSchedule, lr: float | None, good_range: tuple[float, float] | None, ratio: float
) -> str:
    """What the test implies for the scheduler that drives this group."""
    return advice(
        schedule,
        None if lr is None else lr * ratio,
        None if good_range is None else (good_range[0] * ratio, good_range[1] * ratio),
    )
