"""`lr_find`: the LR range test as a Python API that leaves the model and optimizer untouched."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from looplint.lrfind.curve import DivergenceTracker, check_range, exponential_lrs, read_curve
from looplint.lrfind.groups import ScheduledOptimizer
from looplint.lrfind.result import LRFindResult
from looplint.lrfind.suggestion import EVAL_BATCHES, MAX_TRIALS, build_result
from looplint.lrfind.trials import TrialSearch


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
    trial_steps: int = 0,
    eval_batches: int = EVAL_BATCHES,
    max_trials: int = MAX_TRIALS,
) -> LRFindResult:
    """Run an LR range test (and, if asked, confirmation trials); restore the model and optimizer.

    Range test: each step sets every parameter group's LR on an exponential schedule from
    min_lr to max_lr (groups keep their ratios to the largest one), trains on one batch, and
    records the loss of the next batch. It stops after `steps` updates, or earlier when the
    smoothed loss exceeds `diverge_factor` x its best value or a loss is non-finite.

    Trials (`trial_steps > 0`; 40 is the tested length): from the same initial state, up to
    `max_trials` runs of `trial_steps` steps at constant candidate LRs around the curve's
    estimate (and one at the optimizer's own LR), each judged by its mean loss on
    `eval_batches` batches it never trained on (the same batches for every trial). The default,
    0, answers from the curve alone.

    Batches are `(inputs..., target)` tuples: the loss is `criterion(model(*inputs), target)`;
    tensors are moved to `device` (default: the device of the model's first parameter).
    `smoothing` is the moving-average factor (beta) of the smoothed loss. The loader is
    iterated again from the start when it runs out; a one-shot iterator that cannot restart
    ends the test early (stop_reason "data-ended").
    """
    check_range(min_lr, max_lr, steps, diverge_factor)
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    for name, value in (
        ("trial_steps", trial_steps),
        ("eval_batches", eval_batches),
        ("max_trials", max_trials),
    ):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if not optimizer.param_groups:
        raise ValueError("the optimizer has no parameter groups")
    if device is None:
        device = next((p.device for p in model.parameters()), None)
    schedule = exponential_lrs(min_lr, max_lr, steps)
    driven = ScheduledOptimizer(optimizer, label="")
    tracker = DivergenceTracker(smoothing, diverge_factor)
    stop_reason, stop_detail = "steps", f"all {steps} steps ran"
    saved = _Snapshot(model, optimizer)
    search: TrialSearch | None = None
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
        lrs = schedule[: len(tracker.raw)]
        reading = read_curve(lrs, tracker.raw, smoothing)
        # A curve with no estimate gets no trials: its lowest point would be noise.
        estimate = reading.lr
        if estimate is not None and trial_steps > 0 and eval_batches > 0 and max_trials > 0:
            held_out = [b for b in itertools.islice(batches, eval_batches)]
            training = [b for b in itertools.islice(batches, trial_steps)]
            if held_out and training:
                search = TrialSearch(
                    estimate,
                    user_lr=driven.reference_lr,
                    max_trials=max_trials,
                    lowest=min_lr / 100,
                    highest=lrs[-1] * 10,
                )
                trials = _Trials(model, optimizer, criterion, device, driven, saved, diverge_factor)
                trials.run(search, training, held_out)
    finally:
        saved.restore()
    return build_result(
        lrs=lrs,
        raw_losses=tracker.raw,
        reading=reading,
        search=search,
        optimizers=[driven],
        stop_reason=stop_reason,
        stop_detail=stop_detail,
    )


class _Trials:
    """Runs the trials `TrialSearch` asks for, each from the saved initial state."""

    def __init__(
        self, model: Any, optimizer: Any, criterion: Any, device: Any, driven: Any, saved: Any, factor: float
    ) -> None:
        self.model, self.optimizer, self.criterion, self.device = model, optimizer, criterion, device
        self.driven, self.saved, self.factor = driven, saved, factor

    def run(self, search: TrialSearch, training: list[Any], held_out: list[Any]) -> None:
        self.saved.restore()
        search.set_baseline(self._evaluate(held_out))
        while (lr := search.next_lr()) is not None:
            self.saved.restore()
            self.model.train()
            self.driven.set_lr(lr)
            diverged, steps = False, 0
            for batch in training:
                loss = _batch_loss(self.model, self.criterion, batch, self.device)
                value = float(loss.detach())
                if steps and not (math.isfinite(value) and value <= self.factor * search.baseline_loss):
                    diverged = True
                    break
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                steps += 1
            search.record(lr, None if diverged else self._evaluate(held_out), steps)

    def _evaluate(self, held_out: list[Any]) -> list[float]:
        import torch

        with torch.no_grad():
            return [float(_batch_loss(self.model, self.criterion, b, self.device)) for b in held_out]


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
        """Put everything back; the snapshot stays intact, so it can be restored again."""
        self.model.load_state_dict(self.model_state)  # copies into the model's own tensors
        # load_state_dict keeps the tensors it is given as the optimizer's state: give it copies.
        self.optimizer.load_state_dict(copy.deepcopy(self.optimizer_state))
        for module, training in self.modes:
            module.training = training
        for param, grad in self.grads:
            param.grad = None if grad is None else grad.clone()


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
