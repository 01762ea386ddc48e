"""Script mode: the LR range test and its trials on an unmodified script (`looplint run --lr-find`).

The script runs as `__main__`. A global optimizer step pre-hook sets every parameter group's LR
just before each step, so it always wins over any LR scheduler the script steps in between; a
patched `torch.Tensor.backward` keeps the (detached) loss of every backward pass. The first
optimizer's steps are the clock: first the range test's exponential ramp, then, from the
initial state restored in place, the trials that `TrialSearch` asks for. Held-out batches are
the script's next batches, stepped at LR 0 so they train nothing. The test stops the script by
raising a private BaseException from the hook, so a script's own `except Exception` cannot
swallow it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from looplint.lrfind.curve import DivergenceTracker, check_range, exponential_lrs, read_curve
from looplint.lrfind.groups import ScheduledOptimizer
from looplint.lrfind.monitor import unscaled_loss
from looplint.lrfind.result import LRFindResult
from looplint.lrfind.schedules import peak_lr
from looplint.lrfind.suggestion import (
    EVAL_BATCHES,
    MAX_TRIALS,
    GroupSchedule,
    build_result,
)
from looplint.lrfind.trials import TrialSearch
from looplint.runtime.scripts import output_to_stderr, run_as_main

SMOOTHING = 0.9
DIVERGE_FACTOR = 4.0
PLOT_NAME = "lr_find.png"


class _StopRangeTest(BaseException):
    """Raised from the step hook to end the script once the test has what it needs."""


class _InitialState:
    """The initial weights, buffers and optimizer states, restored in place between trials (the
    script keeps its own references to every tensor, so nothing may be replaced)."""

    def __init__(self) -> None:
        self.params: dict[int, tuple[Any, Any]] = {}
        self.buffers: dict[int, tuple[Any, Any]] = {}
        self.optimizers: list[tuple[Any, dict[str, Any]]] = []

    def add_optimizer(self, optimizer: Any) -> None:
        for group in optimizer.param_groups:
            for param in group["params"]:
                self.params.setdefault(id(param), (param, param.detach().clone()))
        self.optimizers.append((optimizer, copy.deepcopy(optimizer.state_dict())))

    def add_modules(self, modules: list[Any]) -> None:
        for module in modules:
            for buffer in module.buffers(recurse=False):
                self.buffers.setdefault(id(buffer), (buffer, buffer.detach().clone()))

    def restore(self) -> None:
        import torch

        with torch.no_grad():
            for tensor, saved in (*self.params.values(), *self.buffers.values()):
                tensor.copy_(saved)
        for param, _ in self.params.values():
            param.grad = None
        for optimizer, state in self.optimizers:
            optimizer.load_state_dict(copy.deepcopy(state))


class _ScriptRangeTest:
    """The hooks' state: the phase the test is in, the optimizers seen, the losses not yet read.

    Phases, each counted in steps of the first optimizer: "range" (the exponential ramp), then
    "baseline" (the held-out losses of the initial weights, at LR 0), then per trial "trial"
    (trial_steps at the candidate LR) and "eval" (its held-out losses, at LR 0). The last step of
    each phase block runs at LR 0 and is followed by a restore of the initial state.
    """

    def __init__(
        self, min_lr: float, max_lr: float, steps: int, trial_steps: int, eval_batches: int, max_trials: int
    ) -> None:
        self.schedule = exponential_lrs(min_lr, max_lr, steps)
        self.min_lr = min_lr
        self.tracker = DivergenceTracker(SMOOTHING, DIVERGE_FACTOR)
        self.trial_steps, self.eval_batches, self.max_trials = trial_steps, eval_batches, max_trials
        self.optimizers: list[ScheduledOptimizer] = []
        self.schedulers: list[Any] = []
        self.modules: dict[int, Any] = {}
        self.initial = _InitialState()
        self.pending: list[Any] = []  # detached losses since the first optimizer's last step
        self.stop_reason = "script-ended"
        self.stop_detail = "the script ended before the range test did"
        self.phase = "range"
        self.tick = 0  # steps of the first optimizer within the current phase
        self.lr = 0.0  # the reference LR of the current step
        self.restore_after_step = False
        self.search: TrialSearch | None = None
        self.reading: Any = None
        self.held_out: list[float] = []
        self.trial_lr = 0.0
        self.eval_steps = 0  # steps taken at LR 0 to read held-out losses
        self.trials_note: str | None = None

    # -- hooks ------------------------------------------------------------------------------
    def on_backward(self, loss: Any) -> None:
        self.pending.append(unscaled_loss(loss))

    def on_forward(self, module: Any, args: Any) -> None:
        # Modules seen before the first step make up the model; their buffers are saved before
        # their first forward changes them (BatchNorm statistics).
        if not self.optimizers and id(module) not in self.modules:
            self.modules[id(module)] = module
            self.initial.add_modules([module])

    def on_scheduler(self, scheduler: Any) -> None:
        self.schedulers.append(scheduler)

    def before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        driven = next((d for d in self.optimizers if d.optimizer is optimizer), None)
        if driven is None:
            driven = self._register(optimizer)
        if driven is self.optimizers[0]:
            self._advance()
        driven.set_lr(self.lr)
        driven.steps += 1

    def after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.restore_after_step and optimizer is self.optimizers[0].optimizer:
            self.restore_after_step = False
            self.initial.restore()

    # -- the clock --------------------------------------------------------------------------
    def _register(self, optimizer: Any) -> ScheduledOptimizer:
        name = type(optimizer).__name__
        label = f"{name} " if not self.optimizers else f"{name}#{len(self.optimizers)} "
        driven = ScheduledOptimizer(optimizer, label)
        self.initial.add_optimizer(optimizer)
        self.optimizers.append(driven)
        return driven

    def _advance(self) -> None:
        """One step of the first optimizer: read the loss the last step led to, set this LR."""
        measured = self._measured()
        if self.phase == "range":
            self._range_step(measured)
        elif self.phase == "baseline":
            self._held_out_step(measured)
        elif self.phase == "trial":
            self._trial_step(measured)
        elif self.phase == "eval":
            self._held_out_step(measured)
        self.tick += 1

    def _range_step(self, measured: float | None) -> None:
        if self.tick > 0:
            if measured is None:
                self._stop(
                    "no-loss",
                    f"no backward() ran between optimizer steps {self.tick - 1} "
                    f"and {self.tick}; the range test reads the loss from loss.backward()",
                )
            message = self.tracker.add(measured)
            if message is not None:
                reason = "diverged" if math.isfinite(self.tracker.raw[-1]) else "non-finite"
                self.stop_reason = reason
                self.stop_detail = f"{message} at lr {self.schedule[self.tick - 1]:.3g}"
                return self._end_range()
        if self.tick == len(self.schedule):
            self.stop_reason, self.stop_detail = "steps", f"all {len(self.schedule)} steps ran"
            return self._end_range()
        self.lr = self.schedule[self.tick]

    def _end_range(self) -> None:
        lrs = self.schedule[: len(self.tracker.raw)]
        self.reading = read_curve(lrs, self.tracker.raw, SMOOTHING)
        start = self.reading.lr  # no estimate: no trials either
        if start is None or min(self.trial_steps, self.eval_batches, self.max_trials) == 0:
            raise _StopRangeTest
        self.search = TrialSearch(
            start,
            user_lr=self._user_lr(),
            max_trials=self.max_trials,
            lowest=self.min_lr / 100,
            highest=lrs[-1] * 10,
        )
        # This step's gradients come from the ramped weights: it runs at LR 0, then the
        # initial state comes back and the held-out losses of the initial weights are read.
        self.eval_steps += 1
        self._boundary("baseline")

    def _user_lr(self) -> float:
        """The first optimizer's own LR as a constant LR: a scheduled group's peak over the peak
        factor of its kind of schedule (see `looplint.lrfind.schedules`)."""
        from looplint.lrfind.schedules import peak_factor

        driven = self.optimizers[0]
        reference = max(range(len(driven.initial_lrs)), key=driven.initial_lrs.__getitem__)
        schedule = _schedules(self).get((0, reference))
        if schedule is None:
            return driven.reference_lr
        return schedule.peak_lr / peak_factor(schedule.scheduler)

    def _held_out_step(self, measured: float | None) -> None:
        self.held_out.append(math.nan if measured is None else measured)
        self.lr = 0.0
        self.eval_steps += 1
        if len(self.held_out) < self.eval_batches:
            return
        assert self.search is not None
        if self.phase == "baseline":
            self.search.set_baseline(self.held_out)
        else:
            self.search.record(self.trial_lr, self.held_out, self.trial_steps)
        self._next_trial()

    def _trial_step(self, measured: float | None) -> None:
        assert self.search is not None
        if self.tick > 0:
            limit = DIVERGE_FACTOR * self.search.baseline_loss
            if measured is None or not (math.isfinite(measured) and measured <= limit):
                self.search.record(self.trial_lr, None, self.tick)
                self.lr = 0.0
                return self._next_trial()
        if self.tick == self.trial_steps:
            # The loss measured now is the first held-out one of this trial's weights.
            self.phase, self.tick, self.held_out = "eval", 0, []
            self.held_out.append(math.nan if measured is None else measured)
            self.lr = 0.0
            self.eval_steps += 1
            if len(self.held_out) >= self.eval_batches:
                self.search.record(self.trial_lr, self.held_out, self.trial_steps)
                self._next_trial()
            return
        self.lr = self.trial_lr

    def _next_trial(self) -> None:
        assert self.search is not None
        lr = self.search.next_lr()
        if lr is None:
            raise _StopRangeTest
        self.trial_lr = lr
        self._boundary("trial")

    def _boundary(self, phase: str) -> None:
        """This step runs at LR 0; the initial state is restored after it; `phase` starts next."""
        self.lr = 0.0
        self.restore_after_step = True
        self.phase, self.tick, self.held_out = phase, -1, []

    def _measured(self) -> float | None:
        """The mean loss of the backward passes since the last step (None when there was none)."""
        if not self.pending:
            return None
        import torch

        # One host sync per step: acceptable here, the test needs the value to stop in time.
        losses = torch.stack([loss.float().mean().cpu() for loss in self.pending])
        self.pending.clear()
        return float(losses.mean())

    def finish(self) -> None:
        """After the script ended: the losses after the last step still belong to it."""
        if self.phase == "range" and self.optimizers and self.tick > 0:
            measured = self._measured()
            if measured is not None:
                self.tracker.add(measured)
        elif self.phase != "range" and self.search is not None and self.trials_note is None:
            done = len(self.search.trials)
            self.trials_note = f"the script ended during the trials, after {done} of them"

    def _stop(self, reason: str, detail: str) -> None:
        self.stop_reason, self.stop_detail = reason, detail
        raise _StopRangeTest


def run_lr_find_script(
    script: str,
    script_args: list[str],
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    trial_steps: int = 0,
    fmt: str = "text",
    out_dir: str = "looplint-lr-find",
) -> int:
    """Run `script` under the LR range test and its trials; print the suggestion and the verdict
    on the script's own LRs, write the plot and scalars.

    Returns the script's own non-zero exit code if it failed, 2 on bad input, 1 when no LR
    could be suggested, else 0. With fmt="json" the script's own output goes to stderr so that
    stdout holds only the JSON report. `trial_steps` > 0 adds the confirmation trials.
    """
    problem = _check_inputs(script, min_lr, max_lr, steps, fmt, trial_steps)
    if problem:
        print(f"looplint: {problem}", file=sys.stderr)
        return 2
    test = _ScriptRangeTest(min_lr, max_lr, steps, trial_steps, EVAL_BATCHES, MAX_TRIALS)
    exit_code = _run(script, script_args, test, quiet=fmt == "json")
    if not test.optimizers:
        print(
            f"looplint: {script} made no optimizer step; the LR range test needs a training "
            "loop that calls optimizer.step()",
            file=sys.stderr,
        )
        return exit_code or 1
    result = _result(test, script)
    written = _write_outputs(result, Path(out_dir))
    written["notes"] = result.extra.get("notes", []) + written["notes"]
    result.extra.update(written)
    if fmt == "json":
        print(json.dumps({"lr_find": result.to_dict()}, indent=2))
    else:
        print(_render_text(result))
    if exit_code:
        return exit_code
    return 0 if result.suggested_index is not None else 1


def _check_inputs(
    script: str, min_lr: float, max_lr: float, steps: int, fmt: str, trial_steps: int = 0
) -> str | None:
    if not os.path.isfile(script):
        return f"cannot run {script}: no such file"
    if fmt not in ("text", "json"):
        return f"--lr-find reports in text or json, not {fmt!r}"
    try:
        check_range(min_lr, max_lr, steps)
    except ValueError as exc:
        return f"--lr-find: {str(exc).replace('_', '-')}"
    if not isinstance(trial_steps, int) or trial_steps < 0:
        return f"--lr-find: trial-steps must be a non-negative integer, got {trial_steps!r}"
    try:
        import torch  # noqa: F401
    except ImportError:
        return "--lr-find needs torch: pip install 'looplint[lr]'"
    return None


def _run(script: str, script_args: list[str], test: _ScriptRangeTest, *, quiet: bool) -> int:
    """Run the script as __main__ under the hooks; returns its exit code (0 when stopped by us)."""
    import torch
    from torch.nn.modules.module import register_module_forward_pre_hook
    from torch.optim import lr_scheduler
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    original_backward = torch.Tensor.backward
    original_scheduler_init = lr_scheduler.LRScheduler.__init__

    def backward(self: Any, *args: Any, **kwargs: Any) -> Any:
        test.on_backward(self)
        return original_backward(self, *args, **kwargs)

    def scheduler_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_scheduler_init(self, *args, **kwargs)
        test.on_scheduler(self)

    handles = [
        register_optimizer_step_pre_hook(test.before_step),
        register_optimizer_step_post_hook(test.after_step),
        register_module_forward_pre_hook(test.on_forward),
    ]
    torch.Tensor.backward = backward  # type: ignore[method-assign]
    lr_scheduler.LRScheduler.__init__ = scheduler_init  # type: ignore[method-assign]
    try:
        with output_to_stderr() if quiet else nullcontext():
            outcome = run_as_main(script, script_args, stop=(_StopRangeTest,))
    finally:
        torch.Tensor.backward = original_backward  # type: ignore[method-assign]
        lr_scheduler.LRScheduler.__init__ = original_scheduler_init  # type: ignore[method-assign]
        for handle in handles:
            handle.remove()
    in_range = test.phase == "range"
    if outcome.ending == "interrupted":
        if in_range:
            test.stop_reason, test.stop_detail = "interrupted", "interrupted (Ctrl-C)"
        else:
            test.trials_note = "interrupted (Ctrl-C) during the trials"
    elif outcome.ending == "crashed":
        if in_range:
            test.stop_reason, test.stop_detail = "script-error", f"the script raised {outcome.error!r}"
        else:
            test.trials_note = f"the script raised {outcome.error!r} during the trials"
    if in_range and test.stop_reason == "script-ended":
        steps_run = test.optimizers[0].steps if test.optimizers else 0
        test.stop_detail = (
            f"the script ended after {steps_run} optimizer steps, before the {len(test.schedule)} "
            "steps of the test (give it more epochs or pass fewer --steps)"
        )
    if outcome.ending == "finished":
        test.finish()
    return outcome.exit_code


def _result(test: _ScriptRangeTest, script: str) -> LRFindResult:
    raw = test.tracker.raw
    lrs = test.schedule[: len(raw)]
    reading = test.reading if test.reading is not None else read_curve(lrs, raw, SMOOTHING)
    search = test.search if test.search is not None and test.search.baseline else None
    result = build_result(
        lrs=lrs,
        raw_losses=raw,
        reading=reading,
        search=search,
        optimizers=test.optimizers,
        stop_reason=test.stop_reason,
        stop_detail=test.stop_detail,
        schedules=_schedules(test),
        eval_steps=test.eval_steps,
    )
    notes = [test.trials_note] if test.trials_note else []
    result.extra.update({"script": script, "steps": len(raw), "notes": notes})
    return result


def _schedules(test: _ScriptRangeTest) -> dict[tuple[int, int], GroupSchedule]:
    """The scheduler of each group the script created one for (the last one created wins)."""
    found: dict[tuple[int, int], GroupSchedule] = {}
    for scheduler in test.schedulers:
        optimizer = getattr(scheduler, "optimizer", None)
        for opt_index, driven in enumerate(test.optimizers):
            if driven.optimizer is not optimizer:
                continue
            for group_index, group in enumerate(optimizer.param_groups):
                peak = peak_lr(scheduler, group_index, group)
                if peak is not None:
                    found[(opt_index, group_index)] = GroupSchedule(type(scheduler).__name__, peak)
    return found


def _write_outputs(result: LRFindResult, out_dir: Path) -> dict[str, Any]:
    """The PNG plot and the TensorBoard scalars; a missing library skips its output with a note."""
    written: dict[str, Any] = {"plot": None, "tensorboard": None, "notes": []}
    try:
        written["plot"] = str(result.plot(out_dir / PLOT_NAME))
    except RuntimeError as exc:
        written["notes"].append(f"no plot: {exc}")
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        written["notes"].append("no TensorBoard scalars: pip install tensorboard")
        return written
    with SummaryWriter(log_dir=str(out_dir)) as writer:
        for step, (lr, loss, raw) in enumerate(zip(result.lrs, result.losses, result.raw_losses)):
            writer.add_scalar("lr_find/lr", lr, step)
            if math.isfinite(loss):
                writer.add_scalar("lr_find/loss", loss, step)
            if math.isfinite(raw):
                writer.add_scalar("lr_find/raw_loss", raw, step)
    written["tensorboard"] = str(out_dir)
    return written


def _render_text(result: LRFindResult) -> str:
    first = result.lrs[0] if result.lrs else float("nan")
    last = result.lrs[-1] if result.lrs else float("nan")
    header = (
        f"lr-find: {result.extra['script']}: range test of {len(result.lrs)} steps, "
        f"lr {first:.2g} to {last:.2g}"
    )
    header += f" ({result.stop_detail})"
    if result.trials:
        steps = max(t.steps for t in result.trials)
        header += f"; {len(result.trials)} trials of {steps} steps"
    lines = [header]
    for group in result.groups:
        if group.suggested_lr is None:
            lines.append(f"  {group.name}: no suggestion (lr {group.initial_lr:.3g}); {group.verdict_text}")
        else:
            lines.append(f"  {group.name}: {group.verdict_text}")
        if group.schedule:
            lines.append(f"    schedule: {group.schedule}")
    lines.append(f"  confidence: {result.confidence}")
    lines.append(f"  why: {result.reason}")
    if result.trials:
        tried = ", ".join(
            f"{t.lr:.2g}: {'diverged' if t.diverged else f'{t.loss:.4g}'}"
            for t in sorted(result.trials, key=lambda t: t.lr)
        )
        lines.append(f"  trials (lr: held-out loss; before: {result.baseline_loss:.4g}): {tried}")
    cost = f"  cost: {len(result.lrs)} range-test steps"
    if result.trials:
        cost += f" + {result.trial_steps} trial steps (held-out batches included, at lr 0)"
    lines.append(cost)
    if result.extra.get("plot"):
        lines.append(f"  plot: {result.extra['plot']}")
    if result.extra.get("tensorboard"):
        lines.append(
            f"  tensorboard: {result.extra['tensorboard']} (lr_find/loss, lr_find/raw_loss, lr_find/lr)"
        )
    lines.extend(f"  note: {note}" for note in result.extra.get("notes", []))
    return "\n".join(lines)
