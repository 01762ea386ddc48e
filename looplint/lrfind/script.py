"""Script mode: the LR range test on an unmodified training script (`looplint run --lr-find`).

The script runs as `__main__`. A global optimizer step pre-hook sets every parameter group's LR
on the exponential schedule just before each step, so it always wins over any LR scheduler the
script steps in between; a patched `torch.Tensor.backward` keeps the (detached) loss of every
backward pass. The test stops the script by raising a private BaseException from the hook, so a
script's own `except Exception` cannot swallow it.
"""

from __future__ import annotations

import json
import math
import os
import sys
from contextlib import nullcontext, redirect_stdout
from pathlib import Path
from typing import Any

from looplint.lrfind.curve import DivergenceTracker, check_range, exponential_lrs, suggest
from looplint.lrfind.groups import ScheduledOptimizer
from looplint.lrfind.monitor import unscaled_loss
from looplint.lrfind.result import GroupResult, LRFindResult
from looplint.runtime.scripts import run_as_main

SMOOTHING = 0.9
DIVERGE_FACTOR = 4.0
PLOT_NAME = "lr_find.png"


class _StopRangeTest(BaseException):
    """Raised from the step hook to end the script once the test has what it needs."""


class _ScriptRangeTest:
    """The hooks' state: which optimizers were seen, the losses waiting for their step."""

    def __init__(self, min_lr: float, max_lr: float, steps: int) -> None:
        self.schedule = exponential_lrs(min_lr, max_lr, steps)
        self.tracker = DivergenceTracker(SMOOTHING, DIVERGE_FACTOR)
        self.optimizers: list[ScheduledOptimizer] = []
        self.pending: list[Any] = []  # detached losses since the first optimizer's last step
        self.stop_reason = "script-ended"
        self.stop_detail = "the script ended before the range test did"

    def on_backward(self, loss: Any) -> None:
        self.pending.append(unscaled_loss(loss))

    def before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        driven = next((d for d in self.optimizers if d.optimizer is optimizer), None)
        if driven is None:
            name = type(optimizer).__name__
            label = f"{name} " if not self.optimizers else f"{name}#{len(self.optimizers)} "
            driven = ScheduledOptimizer(optimizer, label)
            self.optimizers.append(driven)
        # The first optimizer's steps are the test's clock; the losses since its previous step
        # are what that step's LR led to.
        if driven is self.optimizers[0]:
            if driven.steps > 0:
                self._record(driven.steps)
            if driven.steps == len(self.schedule):
                self._stop("steps", f"all {len(self.schedule)} steps ran")
        driven.set_lr(self.schedule[min(driven.steps, len(self.schedule) - 1)])
        driven.steps += 1

    def finish_pending(self) -> None:
        """After the script ended: the losses after the last step still belong to it."""
        if self.optimizers and self.optimizers[0].steps > 0 and self.pending:
            self._record(self.optimizers[0].steps)

    def _record(self, steps_done: int) -> None:
        import torch

        if not self.pending:
            self._stop(
                "no-loss",
                f"no backward() ran between optimizer steps {steps_done - 1} "
                f"and {steps_done}; the range test reads the loss from loss.backward()",
            )
        # One host sync per step: acceptable here, the test needs the value to stop in time.
        losses = torch.stack([loss.float().mean().cpu() for loss in self.pending])
        self.pending.clear()
        message = self.tracker.add(float(losses.mean()))
        if message is not None:
            reason = "diverged" if math.isfinite(self.tracker.raw[-1]) else "non-finite"
            self._stop(reason, f"{message} at lr {self.schedule[steps_done - 1]:.3g}")

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
    fmt: str = "text",
    out_dir: str = "looplint-lr-find",
) -> int:
    """Run `script` under the LR range test, print the suggestion, write the plot and scalars.

    Returns the script's own non-zero exit code if it failed, 2 on bad input, 1 when no LR
    could be suggested, else 0. With fmt="json" the script's own output goes to stderr so that
    stdout holds only the JSON report.
    """
    problem = _check_inputs(script, min_lr, max_lr, steps, fmt)
    if problem:
        print(f"looplint: {problem}", file=sys.stderr)
        return 2
    test = _ScriptRangeTest(min_lr, max_lr, steps)
    exit_code = _run(script, script_args, test, quiet=fmt == "json")
    if not test.optimizers:
        print(
            f"looplint: {script} made no optimizer step; the LR range test needs a training "
            "loop that calls optimizer.step()",
            file=sys.stderr,
        )
        return exit_code or 1
    result = _result(test, script)
    result.extra.update(_write_outputs(result, Path(out_dir)))
    if fmt == "json":
        print(json.dumps({"lr_find": result.to_dict()}, indent=2))
    else:
        print(_render_text(result))
    if exit_code:
        return exit_code
    return 0 if result.suggested_index is not None else 1


def _check_inputs(script: str, min_lr: float, max_lr: float, steps: int, fmt: str) -> str | None:
    if not os.path.isfile(script):
        return f"cannot run {script}: no such file"
    if fmt not in ("text", "json"):
        return f"--lr-find reports in text or json, not {fmt!r}"
    try:
        check_range(min_lr, max_lr, steps)
    except ValueError as exc:
        return f"--lr-find: {str(exc).replace('_', '-')}"
    try:
        import torch  # noqa: F401
    except ImportError:
        return "--lr-find needs torch: pip install 'looplint[lr]'"
    return None


def _run(script: str, script_args: list[str], test: _ScriptRangeTest, *, quiet: bool) -> int:
    """Run the script as __main__ under the hooks; returns its exit code (0 when stopped by us)."""
    import torch
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    original_backward = torch.Tensor.backward

    def backward(self: Any, *args: Any, **kwargs: Any) -> Any:
        test.on_backward(self)
        return original_backward(self, *args, **kwargs)

    handle = register_optimizer_step_pre_hook(test.before_step)
    torch.Tensor.backward = backward  # type: ignore[method-assign]
    try:
        with redirect_stdout(sys.stderr) if quiet else nullcontext():
            outcome = run_as_main(script, script_args, stop=(_StopRangeTest,))
    finally:
        torch.Tensor.backward = original_backward  # type: ignore[method-assign]
        handle.remove()
    if outcome.ending == "interrupted":
        test.stop_reason, test.stop_detail = "interrupted", "interrupted (Ctrl-C)"
    elif outcome.ending == "crashed":
        test.stop_reason, test.stop_detail = "script-error", f"the script raised {outcome.error!r}"
    exit_code = outcome.exit_code
    if test.stop_reason == "script-ended":
        steps_run = test.optimizers[0].steps if test.optimizers else 0
        test.stop_detail = (
            f"the script ended after {steps_run} optimizer steps, before the {len(test.schedule)} "
            "steps of the test (give it more epochs or pass fewer --steps)"
        )
        try:
            test.finish_pending()
        except _StopRangeTest:
            pass
    return exit_code


def _result(test: _ScriptRangeTest, script: str) -> LRFindResult:
    raw = test.tracker.raw
    lrs = test.schedule[: len(raw)]
    suggestion = suggest(lrs, raw, SMOOTHING)
    groups: list[GroupResult] = []
    for driven in test.optimizers:
        groups.extend(driven.group_results(lrs, suggestion.lr))
    return LRFindResult(
        lrs=lrs,
        raw_losses=raw,
        losses=suggestion.curve,
        groups=groups,
        stop_reason=test.stop_reason,
        stop_detail=test.stop_detail,
        reason=suggestion.reason,
        suggested_index=suggestion.index,
        extra={"script": script, "steps": len(raw)},
    )


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
        f"lr-find: {result.extra['script']}: {len(result.lrs)} steps, lr {first:.2g} to "
        f"{last:.2g}; stopped: {result.stop_detail}"
    )
    lines = [header]
    for group in result.groups:
        if group.suggested_lr is None:
            lines.append(f"  {group.name}: no suggestion (lr was {group.initial_lr:.3g})")
        else:
            lines.append(
                f"  {group.name}: suggested lr {group.suggested_lr:.3g} (lr was {group.initial_lr:.3g})"
            )
    lines.append(f"  why: {result.reason}")
    if result.extra.get("plot"):
        lines.append(f"  plot: {result.extra['plot']}")
    if result.extra.get("tensorboard"):
        lines.append(
            f"  tensorboard: {result.extra['tensorboard']} (lr_find/loss, lr_find/raw_loss, lr_find/lr)"
        )
    lines.extend(f"  note: {note}" for note in result.extra.get("notes", []))
    return "\n".join(lines)
