"""What the range test implies for a script's LR scheduler.

The test and the trials measure constant LRs. A schedule that decays starts at its peak and only
goes down from there: its start compares with a good constant LR. A one-cycle schedule warms up
to its peak and anneals after it, spending little time near the peak, so the peak can sit
higher: on the tuned half of benchmarks/bench_lr_find.py the best OneCycleLR max_lr was one grid
step (2.8x) above the best constant LR on 12 of 18 runs, the same on 4 and higher on 2
(`--schedule onecycle` measures the 3x advice against a grid of max_lr); a cosine schedule's
best start was the same as the best constant LR on 9 of 18 runs, one step above on 8 and one
below on 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from looplint.lrfind.suggestion import GroupSchedule

# Schedulers whose LR starts at the group's LR and only decays from there.
DECAYING = {
    "StepLR",
    "MultiStepLR",
    "ExponentialLR",
    "CosineAnnealingLR",
    "PolynomialLR",
    "CosineAnnealingWarmRestarts",
}
# Schedulers that warm up to a peak and anneal after it.
CYCLIC = {"OneCycleLR", "CyclicLR"}
# Their peak against a good constant LR (see the module docstring).
ONE_CYCLE_FACTOR = 3.0


def peak_lr(scheduler: Any, group_index: int, group: dict[str, Any]) -> float | None:
    """The LR a scheduler's schedule peaks at for one group, read from the scheduler or group."""
    name = type(scheduler).__name__
    try:
        if name == "OneCycleLR":
            return float(group["max_lr"])
        if name == "CyclicLR":
            return float(scheduler.max_lrs[group_index])
        base = getattr(scheduler, "base_lrs", None)
        if base is not None:
            return float(base[group_index])
        return float(group.get("initial_lr", group["lr"]))
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def peak_factor(scheduler: str) -> float:
    """How far above a good constant LR the peak of this kind of schedule should sit."""
    return ONE_CYCLE_FACTOR if scheduler in CYCLIC else 1.0


def setting_name(scheduler: str) -> str:
    """What the user calls the LR a scheduler peaks at."""
    return f"{scheduler} max_lr" if scheduler in CYCLIC else f"{scheduler} starting lr"


def advice(schedule: GroupSchedule, suggested: float | None, good_range: tuple[float, float] | None) -> str:
    """One sentence: what the scheduler's peak should be, given the constant-LR suggestion."""
    name, peak = schedule.scheduler, schedule.peak_lr
    if suggested is None or good_range is None:
        return f"{name} peaks at lr {peak:.3g}; no suggestion to compare it with"
    low, high = good_range
    if name in CYCLIC:
        return (
            f"{name} warms up to max_lr ({peak:.3g} here) and anneals after it, so its peak can sit above "
            f"a good constant lr: max_lr about {suggested * ONE_CYCLE_FACTOR:.2g} "
            f"({ONE_CYCLE_FACTOR:g}x the constant-lr suggestion {suggested:.3g})"
        )
    if name in DECAYING:
        return (
            f"{name} starts at lr {peak:.3g} and decays from there: its start is what compares with a "
            f"constant lr, suggested {suggested:.3g} (good range {low:.2g} to {high:.2g})"
        )
    return (
        f"{name} drives this group's lr from a base of {peak:.3g}: the base is what compares with a "
        f"constant lr, suggested {suggested:.3g} (good range {low:.2g} to {high:.2g})"
    )
