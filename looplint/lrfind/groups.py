"""Driving the LR of every parameter group of an optimizer while keeping their ratios."""

from __future__ import annotations

from typing import Any


def read_lr(group: dict[str, Any]) -> float:
    """A group's LR as a float (LRs may be stored as CPU tensors)."""
    return float(group["lr"])


class ScheduledOptimizer:
    """One optimizer under the range test.

    The schedule drives a reference LR, the largest initial LR among the groups; every group
    gets reference x (its initial LR / the largest one), so per-layer ratios survive the test
    and no group is pushed beyond max_lr.
    """

    def __init__(self, optimizer: Any, label: str) -> None:
        self.optimizer = optimizer
        self.label = label
        self.initial_lrs = [read_lr(group) for group in optimizer.param_groups]
        reference = max(self.initial_lrs, default=0.0)
        # All-zero LRs carry no ratio to keep: drive every group alike.
        self.ratios = [lr / reference if reference > 0 else 1.0 for lr in self.initial_lrs]
        self.steps = 0

    @property
    def reference_lr(self) -> float:
        """The LR the schedule drives: the largest initial LR of the groups."""
        return max(self.initial_lrs, default=0.0)

    def set_lr(self, reference_lr: float) -> None:
        for group, ratio in zip(self.optimizer.param_groups, self.ratios):
            value = reference_lr * ratio
            if hasattr(group["lr"], "fill_"):
                group["lr"].fill_(value)
            else:
                group["lr"] = value
