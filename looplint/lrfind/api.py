"""`lr_find`: the LR range test as a Python API that leaves the model and optimizer untouched."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from looplint.lrfind.curve import DivergenceTracker, check_range, exponential_lrs, suggest
from looplint.lrfind.groups import ScheduledOptimizer
from looplint.lrfind.result import LRFindResult


def lr_find(
    model: Any,
    optimizer: Any,
    criterion: Callable[..., Any],
    loader: Iterable[Any],
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    device: Any = None,
    diverge_factor: float = 4.0,
    smoothing: float = 0.9,
) -> LRFindResult:
    """Run an LR range test and restore the model and optimizer to their state before it.

    Each step sets every parameter group's LR on an exponential schedule from min_lr to max_lr
    (groups keep their ratios to the largest one), trains on one batch, and records the loss of
    the next batch. The test stops after `steps` updates, or earlier when the smoothed loss
    exceeds `diverge_factor` x its best value or a loss is non-finite.

    Batches are `(inputs..., target)` tuples: the loss is `criterion(model(*inputs), target)`;
    tensors are moved to `device` (default: the device of the model's first parameter).
    `smoothing` is the moving-average factor (beta) of the smoothed loss. The loader is
    iterated again from the start when it runs out; a one-shot iterator that cannot restart
    ends the test early (stop_reason "data-ended").
    """
    check_range(min_lr, max_lr, steps, diverge_factor)
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    if not optimizer.param_groups:
        raise ValueError("the optimizer has no parameter groups")
    if device is None:
        device = next((p.device for p in model.parameters()), None)
    schedule = exponential_lrs(min_lr, max_lr, steps)
    driven = ScheduledOptimizer(optimizer, label="")
    tracker = DivergenceTracker(smoothing, diverge_factor)
    stop_reason, stop_detail = "steps", f"all {steps} steps ran"
    saved = _Snapshot(model, optimizer)
    try:
        model.train()
        batches = _endless(loader)
        for step in range(steps + 1):
            batch = next(batches, None)
            if batch is None:
                stop_reason = "data-ended"
                stop_detail = f"the loader ran out after {step} batches and could not be restarted"
                break
            loss = _batch_loss(model, criterion, batch, device)
            if step > 0:
                message = tracker.add(float(loss.detach()))
                if message is not None:
                    stop_reason = "diverged" if math.isfinite(tracker.raw[-1]) else "non-finite"
                    stop_detail = f"{message} at lr {schedule[step - 1]:.3g}"
                    break
            if step == steps:
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            driven.set_lr(schedule[step])
            optimizer.step()
    finally:
        saved.restore()
    lrs = schedule[: len(tracker.raw)]
    suggestion = suggest(lrs, tracker.raw, smoothing)
    return LRFindResult(
        lrs=lrs,
        raw_losses=tracker.raw,
        losses=suggestion.curve,
        groups=driven.group_results(lrs, suggestion.lr),
        stop_reason=stop_reason,
        stop_detail=stop_detail,
        reason=suggestion.reason,
        suggested_index=suggestion.index,
    )


class _Snapshot:
    """Deep copies of everything the test changes: weights, buffers, optimizer state, grads, modes."""

    def __init__(self, model: Any, optimizer: Any) -> None:
        self.model, self.optimizer = model, optimizer
        self.model_state = copy.deepcopy(model.state_dict())
        self.optimizer_state = copy.deepcopy(optimizer.state_dict())
        self.modes = [(module, module.training) for module in model.modules()]
        # Parameters outside the optimizer still collect gradients during the test.
        params = {id(p): p for p in model.parameters()}
        params.update((id(p), p) for group in optimizer.param_groups for p in group["params"])
        self.grads = [(p, None if p.grad is None else p.grad.detach().clone()) for p in params.values()]

    def restore(self) -> None:
        self.model.load_state_dict(self.model_state)
        self.optimizer.load_state_dict(self.optimizer_state)
        for module, training in self.modes:
            module.training = training
        for param, grad in self.grads:
            param.grad = grad


def _endless(loader: Iterable[Any]) -> Iterator[Any]:
    """The loader's batches, starting over when it runs out, until a pass yields nothing."""
    seen = 0
    while True:
        start = seen
        for batch in loader:
            seen += 1
            yield batch
        if seen == start:
            if seen == 0:
                raise ValueError("the loader yielded no batches")
            return


def _batch_loss(model: Any, criterion: Callable[..., Any], batch: Any, device: Any) -> Any:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise TypeError(
            f"lr_find expects each batch to be a tuple (inputs..., target), got {type(batch).__name__}"
        )
    *inputs, target = (_to_device(item, device) for item in batch)
    loss = criterion(model(*inputs), target)
    if not hasattr(loss, "backward") or loss.numel() != 1:
        raise TypeError("criterion must return a scalar loss tensor")
    return loss


def _to_device(item: Any, device: Any) -> Any:
    if device is not None and hasattr(item, "to"):
        return item.to(device)
    return item
