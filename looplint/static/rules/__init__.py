"""Static rules: each is a small query over the training-loop model."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import libcst as cst

from looplint.findings import Fix
from looplint.static.fixes import Source
from looplint.static.model import Model


@dataclass(eq=False)
class Hit:
    """A rule's raw finding: a node to report, before positions are computed."""

    code: str
    node: cst.CSTNode
    message: str
    # Builds the Fix once positions are known: called with a looplint.static.fixes.Source.
    fix: Callable[[Source], Fix | None] | None = None


Rule = Callable[[Model], Iterable[Hit]]


def all_rules() -> list[tuple[str, Rule]]:
    from looplint.static.rules import accumulators, gradients, modes, optimizers, periodic, writers

    return [
        ("LL101", gradients.missing_zero_grad),
        ("LL102", gradients.zero_grad_between_backward_and_step),
        ("LL103", gradients.clip_before_backward),
        ("LL104", gradients.clip_without_unscale),
        ("LL105", modes.backward_in_eval_mode),
        ("LL201", accumulators.accumulator_reset_misplaced),
        ("LL202", accumulators.unaveraged_loss_logged),
        ("LL203", accumulators.loss_tensor_accumulated),
        ("LL204", periodic.periodic_check_outside_step_loop),
        ("LL205", accumulators.loss_tensors_collected),
        ("LL301", writers.writer_close_in_loop),
        ("LL302", writers.scalar_logged_as_image),
        ("LL303", writers.writer_used_after_close),
        ("LL401", optimizers.scheduler_step_before_optimizer_step),
        ("LL402", optimizers.parameter_in_several_groups),
        ("LL403", optimizers.scheduler_never_stepped),
        ("LL404", optimizers.optimizer_created_per_step),
        ("LL405", optimizers.optimizer_parameters_frozen),
    ]


def loop_label(loop) -> str:
    """How a message names a loop: 'the `for epoch` loop', 'the `while` loop'."""
    return loop.label


def elsewhere(event) -> str:
    """' (in `train_step()`, utils.py:12)' for an event that happens in another module."""
    return f" (in {event.foreign})" if event.foreign else ""


def is_prefix(short: tuple, long: tuple) -> bool:
    return len(short) <= len(long) and all(a is b for a, b in zip(short, long, strict=False))


def same_loops(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and is_prefix(a, b)
