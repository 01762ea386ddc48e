"""LRMonitor: the learning rates of a real run, and the LR problems they explain (LL506, LL507).

`looplint.watch()` feeds it: `on_loss_value(value)` for every backward pass, `on_optimizer_step`
after every step, `on_scheduler_created` and `on_writer` when it sees those objects, then
`finish()` for the findings and `summary()` for the report. Losses are kept as detached
tensors and read once, in `finish()`, so watching adds no host-device synchronization.
"""

from __future__ import annotations

import math
import statistics
from array import array
from dataclasses import dataclass, field
from typing import Any

from looplint.findings import Finding
from looplint.runtime.health import unscaled_loss
from looplint.runtime.sites import display_path, user_site
from looplint.words import plural, times

# Consecutive losses summarized into one point of the divergence check; 0 picks one per run.
DEFAULT_WINDOW = 0
# A window median this many times the lowest earlier one (and having given back at least half
# of the progress since the start) counts as diverging.
GROWTH = 2.0
# ... and every later window median stays at least this many times the lowest one.
SUSTAINED = 1.5
# The fewest steps a window of the divergence check summarizes.
MIN_WINDOW = 8
# Compact the kept loss tensors into one tensor every this many steps (bounded memory).
CHUNK = 1024
HISTORY_LIMIT = 50
# Schedulers that legitimately keep the LR constant for a whole run.
_WAITING_SCHEDULERS = {"ReduceLROnPlateau"}


@dataclass
class _Group:
    """One param group's LR over the run: the steps where it changed and the value from there."""

    change_steps: array = field(default_factory=lambda: array("q"))
    change_lrs: array = field(default_factory=lambda: array("d"))

    def record(self, step: int, lr: float) -> tuple[float, float] | None:
        """Keep `lr` if it differs from the last value; returns (old, new) when it changed."""
        if self.change_lrs and (
            self.change_lrs[-1] == lr or math.isnan(lr) and math.isnan(self.change_lrs[-1])
        ):
            return None
        old = self.change_lrs[-1] if self.change_lrs else math.nan
        self.change_steps.append(step)
        self.change_lrs.append(lr)
        return old, lr

    def lr_at(self, step: int) -> float:
        value = self.change_lrs[0]
        for change_step, lr in zip(self.change_steps, self.change_lrs):
            if change_step > step:
                break
            value = lr
        return value

    def last_increase(self, step: int) -> tuple[int, float, float] | None:
        """(step, old, new) of the latest LR increase at or before `step`."""
        found = None
        for i in range(1, len(self.change_lrs)):
            if self.change_steps[i] > step:
                break
            if self.change_lrs[i] > self.change_lrs[i - 1]:
                found = (self.change_steps[i], self.change_lrs[i - 1], self.change_lrs[i])
        return found


@dataclass
class _Optimizer:
    """What was seen of one optimizer: its steps, its groups' LRs, the losses that fed its steps."""

    optimizer: Any
    name: str
    tag_prefix: str
    site: tuple[str, int]
    steps: int = 0
    groups: list[_Group] = field(default_factory=list)
    loss_chunks: list[Any] = field(default_factory=list)  # 1-D tensors of CHUNK losses each
    recent_losses: list[Any] = field(default_factory=list)  # 0-dim tensors not yet compacted
    loss_steps: array = field(default_factory=lambda: array("q"))

    def lrs(self, step: int) -> list[float]:
        return [group.lr_at(step) for group in self.groups]


@dataclass
class _Scheduler:
    scheduler: Any
    name: str
    site: tuple[str, int]
    created_at_step: int
    epoch_at_creation: int


class LRMonitor:
    """Tracks every param group's LR, logs them to the script's SummaryWriter, finds LR problems."""

    def __init__(self, *, window: int = DEFAULT_WINDOW) -> None:
        self.window = window
        self._optimizers: list[_Optimizer] = []
        self._schedulers: list[_Scheduler] = []
        self._pending: list[Any] = []
        self._last: _Optimizer | None = None  # the optimizer that stepped last
        self._writer: Any = None
        self._logged: dict[str, int] = {}  # TensorBoard tag -> last step written
        self._causes: dict[int, tuple[str, str]] = {}  # id(optimizer) -> (code, explanation)
        self.notes: list[str] = []

    # --- observations -------------------------------------------------------------------
    def on_backward(self, loss: Any) -> None:
        """A backward pass ran on `loss`; kept detached, never read here."""
        self._pending.append(unscaled_loss(loss))

    def on_loss_value(self, value: Any) -> None:
        """A backward pass ran on a loss; `value` is it already detached and unscaled (what
        `watch()` passes, computed once for every check that keeps losses)."""
        self._pending.append(value)

    def on_optimizer_step(self, optimizer: Any) -> None:
        """After an optimizer step: record the LRs it used and the losses that fed it."""
        tracked = self._last
        if tracked is None or tracked.optimizer is not optimizer:
            tracked = self._last = self._tracked(optimizer)
        tracked.steps += 1
        step = tracked.steps
        changed = []
        groups = tracked.groups
        for index, param_group in enumerate(optimizer.param_groups):
            lr = param_group.get("lr")
            if index < len(groups):
                group = groups[index]
                if type(lr) is float and group.change_lrs[-1] == lr:
                    continue  # the common case: a float LR that did not move
            else:
                group = _Group()
                groups.append(group)
            change = group.record(step, _lr_value(lr))
            if change is not None:
                changed.append((index, *change))
        if self._pending:
            self._keep_loss(tracked, step)
        if changed and self._writer is not None:
            self._log(tracked, step, changed)

    def on_scheduler_created(self, scheduler: Any) -> None:
        """An LR scheduler was constructed (its optimizer may not have stepped yet)."""
        optimizer = getattr(scheduler, "optimizer", None)
        tracked = next((t for t in self._optimizers if t.optimizer is optimizer), None)
        self._schedulers.append(
            _Scheduler(
                scheduler=scheduler,
                name=type(scheduler).__name__,
                site=_user_site(),
                created_at_step=tracked.steps if tracked else 0,
                epoch_at_creation=getattr(scheduler, "last_epoch", 0),
            )
        )

    def on_root_cause(self, optimizer: Any, code: str, explanation: str) -> None:
        """A bug found at run time (`code`) inflates this optimizer's steps: a diverging loss is
        blamed on it, not on the learning rate."""
        self._causes[id(optimizer)] = (code, explanation)

    def on_writer(self, writer: Any) -> None:
        """A SummaryWriter of the script: LRs are logged through the latest one."""
        self._writer = writer

    # --- results ------------------------------------------------------------------------
    def finish(self) -> list[Finding]:
        """LL506 (loss diverging) and LL507 (LR never changes), read once at the end of the run."""
        findings: list[Finding] = []
        for tracked in self._optimizers:
            finding = self._diverging(tracked)
            if finding is not None:
                findings.append(finding)
        findings.extend(self._never_changing())
        return findings

    def summary(self) -> dict[str, Any]:
        """Each optimizer's groups with their LR over the run, and the schedulers seen."""
        optimizers = []
        for tracked in self._optimizers:
            groups = []
            for index, group in enumerate(tracked.groups):
                history = [[s, lr] for s, lr in zip(group.change_steps, group.change_lrs)]
                groups.append(
                    {
                        "group": index,
                        "initial_lr": group.change_lrs[0],
                        "final_lr": group.change_lrs[-1],
                        "min_lr": min(group.change_lrs),
                        "max_lr": max(group.change_lrs),
                        "changes": len(history) - 1,
                        "history": history[: HISTORY_LIMIT - 1] + history[-1:]
                        if len(history) > HISTORY_LIMIT
                        else history,
                    }
                )
            optimizers.append({"name": tracked.name, "steps": tracked.steps, "groups": groups})
        schedulers = [
            {
                "type": seen.name,
                "site": "{}:{}".format(*_shown(seen.site)),
                "stepped": getattr(seen.scheduler, "last_epoch", 0) - seen.epoch_at_creation,
            }
            for seen in self._schedulers
        ]
        return {"optimizers": optimizers, "schedulers": schedulers, "notes": list(self.notes)}

    def summary_lines(self) -> list[str]:
        """The summary as short text lines, one per param group and scheduler."""
        lines = []
        data = self.summary()
        for optimizer in data["optimizers"]:
            for group in optimizer["groups"]:
                if group["changes"] == 0:
                    course = f"constant {group['initial_lr']:.3g}"
                else:
                    course = (
                        f"{group['initial_lr']:.3g} -> {group['final_lr']:.3g} "
                        f"({plural(group['changes'], 'change')}, min {group['min_lr']:.3g}, "
                        f"max {group['max_lr']:.3g})"
                    )
                lines.append(
                    f"{optimizer['name']} group {group['group']}: lr {course} over {plural(optimizer['steps'], 'step')}"
                )
        for scheduler in data["schedulers"]:
            lines.append(
                f"{scheduler['type']} created at {scheduler['site']}, stepped {times(scheduler['stepped'])}"
            )
        return lines

    # --- internals ----------------------------------------------------------------------
    def _tracked(self, optimizer: Any) -> _Optimizer:
        for tracked in self._optimizers:
            if tracked.optimizer is optimizer:
                return tracked
        site = _user_site()
        for tracked in self._optimizers:
            if tracked.site == site and _same_parameters(tracked.optimizer, optimizer):
                # Built again for the same parameters and stepped at the same line (every step,
                # say): one LR history, and the previous optimizer is not kept alive here.
                tracked.optimizer = optimizer
                return tracked
        index = len(self._optimizers)
        # Named as the gradient checks name it: the second SGD is "SGD#2".
        kind = type(optimizer).__name__
        same_kind = sum(1 for tracked in self._optimizers if tracked.name.split("#")[0] == kind)
        name = kind if same_kind == 0 else f"{kind}#{same_kind + 1}"
        tracked = _Optimizer(
            optimizer=optimizer,
            name=name,
            tag_prefix="lr/" if index == 0 else f"lr/optimizer{index}/",
            site=site,
        )
        self._optimizers.append(tracked)
        return tracked

    def _keep_loss(self, tracked: _Optimizer, step: int) -> None:
        """Attach the losses since the last step to this step, as one device scalar (no sync)."""
        pending, self._pending = self._pending, []
        if len(pending) == 1 and pending[0].dim() == 0:
            loss = pending[0]
        else:
            import torch

            try:
                loss = torch.stack([p.float().mean() for p in pending]).mean()
            except RuntimeError:  # losses on different devices: keep the last one
                loss = pending[-1].float().mean()
        tracked.recent_losses.append(loss)
        tracked.loss_steps.append(step)
        if len(tracked.recent_losses) >= CHUNK:
            self._compact(tracked)

    def _compact(self, tracked: _Optimizer) -> None:
        import torch

        try:
            chunk = torch.stack([t.float() for t in tracked.recent_losses])
        except RuntimeError:  # mixed devices: move to CPU (rare, and only once per chunk)
            chunk = torch.stack([t.float().cpu() for t in tracked.recent_losses])
        tracked.loss_chunks.append(chunk)
        tracked.recent_losses = []

    def _loss_values(self, tracked: _Optimizer) -> list[float]:
        """The one read of the losses: a single device-to-host copy per chunk."""
        if tracked.recent_losses:
            self._compact(tracked)
        values: list[float] = []
        for chunk in tracked.loss_chunks:
            values.extend(chunk.detach().cpu().tolist())
        return values

    def _log(self, tracked: _Optimizer, step: int, changed: list[tuple[int, float, float]]) -> None:
        """Write changed LRs as a step function: the old value just before, the new one at step."""
        writer = self._writer
        if getattr(writer, "file_writer", True) is None:  # closed: writing would reopen it
            return
        try:
            for index, old, new in changed:
                tag = f"{tracked.tag_prefix}group{index}"
                last = self._logged.get(tag)
                if last is not None and step - 1 > last and not math.isnan(old):
                    writer.add_scalar(tag, old, step - 1)
                writer.add_scalar(tag, new, step)
                self._logged[tag] = step
        except Exception as exc:  # noqa: BLE001 - never break the user's run over a log line
            self._writer = None
            self.notes.append(f"stopped logging learning rates to TensorBoard: {exc!r}")

    def _window(self, count: int) -> int:
        # Windows of at least MIN_WINDOW steps: the median of 3 noisy batches (random labels, a
        # small batch) can double without anything being wrong.
        return self.window or max(MIN_WINDOW, min(50, count // 10))

    def _diverging(self, tracked: _Optimizer) -> Finding | None:
        values = self._loss_values(tracked)
        steps = list(tracked.loss_steps)
        first_bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
        finite = values if first_bad is None else values[:first_bad]
        window = self._window(len(finite))
        growth = _growth(finite, window)
        if growth is not None:
            low_at, high_at, low, high = growth
            rise_step = steps[high_at]
            lrs = tracked.lrs(rise_step)
            message = (
                f"loss diverging: the median loss over {window} steps grew from {low:.4g} "
                f"(steps {steps[low_at]}-{steps[low_at + window - 1]}) to {high:.4g} (steps "
                f"{rise_step}-{steps[high_at + window - 1]}) with lr {_lrs_text(lrs)}"
            )
            increase = _increase_before(tracked, rise_step, 3 * window)
            if increase is not None:
                message += (
                    f", after the lr rose from {increase[1]:.3g} to {increase[2]:.3g} at step {increase[0]}"
                )
            if first_bad is not None:
                message += f"; the loss became non-finite at step {steps[first_bad]}"
            details = {"step": rise_step, "lr": lrs, "window": window}
            details.update(loss_from=low, loss_to=high)
            return self._finding(tracked, message, details)
        if first_bad is None:
            return None
        bad_step = steps[first_bad]
        increase = _increase_before(tracked, bad_step, max(2 * window, 10))
        if increase is None:
            return None  # non-finite without an LR cause: LL503's business
        lrs = tracked.lrs(bad_step)
        message = (
            f"loss diverging: the loss became {values[first_bad]} at step {bad_step}, "
            f"{plural(bad_step - increase[0], 'step')} after the lr rose from {increase[1]:.3g} to "
            f"{increase[2]:.3g} (lr {_lrs_text(lrs)})"
        )
        return self._finding(tracked, message, {"step": bad_step, "lr": lrs, "non_finite": True})

    def _never_changing(self) -> list[Finding]:
        findings = []
        reported: set[int] = set()
        for seen in self._schedulers:
            if seen.name in _WAITING_SCHEDULERS:
                continue
            optimizer = getattr(seen.scheduler, "optimizer", None)
            tracked = next((t for t in self._optimizers if t.optimizer is optimizer), None)
            if tracked is None or tracked.steps - seen.created_at_step < 2 or id(tracked) in reported:
                continue
            if any(_changed_after(group, seen.created_at_step) for group in tracked.groups):
                continue
            reported.add(id(tracked))
            stepped = getattr(seen.scheduler, "last_epoch", 0) - seen.epoch_at_creation
            lrs = tracked.lrs(tracked.steps)
            if stepped == 0:
                cause = "scheduler.step() was never called"
            else:
                cause = (
                    f"scheduler.step() ran {times(stepped)}, but its schedule did not change "
                    "the lr within this run"
                )
            message = (
                f"lr never changes: {seen.name} was created for {tracked.name} but the lr stayed "
                f"{_lrs_text(lrs)} for all {plural(tracked.steps, 'optimizer step')}; {cause}"
            )
            findings.append(
                Finding(
                    path=_shown(seen.site)[0],
                    line=seen.site[1],
                    column=1,
                    code="LL507",
                    message=message,
                    origin="runtime",
                    details={
                        "scheduler": seen.name,
                        "stepped": stepped,
                        "steps": tracked.steps,
                        "lr": lrs,
                    },
                )
            )
        # Schedulers the runtime did not report still leave their mark on the optimizer.
        for tracked in self._optimizers:
            if id(tracked) in reported or tracked.steps < 2:
                continue
            if any(getattr(s.scheduler, "optimizer", None) is tracked.optimizer for s in self._schedulers):
                continue
            if not _has_scheduler(tracked.optimizer):
                continue
            if any(_changed_after(group, 0) for group in tracked.groups):
                continue
            lrs = tracked.lrs(tracked.steps)
            findings.append(
                Finding(
                    path=_shown(tracked.site)[0],
                    line=tracked.site[1],
                    column=1,
                    code="LL507",
                    message=(
                        f"lr never changes: a learning-rate scheduler was created for "
                        f"{tracked.name} but the lr stayed {_lrs_text(lrs)} for all "
                        f"{tracked.steps} optimizer steps; is scheduler.step() called?"
                    ),
                    origin="runtime",
                    details={"scheduler": None, "steps": tracked.steps, "lr": lrs},
                )
            )
        return findings

    def _finding(self, tracked: _Optimizer, message: str, details: dict[str, Any]) -> Finding:
        """LL506 with its most likely cause: a gradient bug seen in the same run, else the LR."""
        details = {"optimizer": tracked.name, **details}
        cause = self._causes.get(id(tracked.optimizer))
        if cause is None:
            message += ": the learning rate is likely too high"
        else:
            message += f": {cause[1]}"
            details["caused_by"] = cause[0]
        return Finding(
            path=_shown(tracked.site)[0],
            line=tracked.site[1],
            column=1,
            code="LL506",
            message=message,
            origin="runtime",
            details=details,
        )


def _same_parameters(a: Any, b: Any) -> bool:
    """Two optimizers of one type over the very same parameter tensors."""
    if type(a) is not type(b):
        return False
    params_a = [p for group in a.param_groups for p in group["params"]]
    params_b = [p for group in b.param_groups for p in group["params"]]
    return len(params_a) == len(params_b) and all(x is y for x, y in zip(params_a, params_b))


def _growth(values: list[float], window: int) -> tuple[int, int, float, float] | None:
    """The first sustained rise of the loss: (first index of the lowest window before it, first
    index of the risen window, their medians), or None.

    Losses are cut into windows of `window` steps and each is summarized by its median, so one
    bad batch cannot move it: more than half of a window must be high. A window counts as risen
    when its median is at least GROWTH x the lowest earlier median and has given back at least
    half of the progress made since the first window, so noise around a loss near 0 stays quiet.
    """
    medians = [statistics.median(values[i : i + window]) for i in range(0, len(values) - window + 1, window)]
    lowest = 0
    for k in range(1, len(medians)):
        low = medians[lowest]
        risen = medians[k] >= GROWTH * low and medians[k] >= (medians[0] + low) / 2
        # Diverging, not a bump: the loss stays up for the rest of the run.
        if risen and all(later >= SUSTAINED * low for later in medians[k:]):
            return lowest * window, k * window, low, medians[k]
        if medians[k] < low:
            lowest = k
    return None


def _increase_before(tracked: _Optimizer, step: int, within: int) -> tuple[int, float, float] | None:
    """The latest LR rise of any group in the `within` steps up to `step`, if there was one."""
    best = None
    for group in tracked.groups:
        increase = group.last_increase(step)
        recent = increase is not None and step - increase[0] <= within
        if recent and (best is None or increase[0] > best[0]):
            best = increase
    return best


def _changed_after(group: _Group, step: int) -> bool:
    return any(change_step > max(step, group.change_steps[0]) for change_step in group.change_steps)


def _has_scheduler(optimizer: Any) -> bool:
    """torch's LR schedulers wrap optimizer.step and add `initial_lr` to every group."""
    return hasattr(getattr(optimizer, "step", None), "_wrapped_by_lr_sched") or any(
        "initial_lr" in group for group in getattr(optimizer, "param_groups", [])
    )


def _lr_value(lr: Any) -> float:
    """A group's LR as a float; a tensor LR is read only when it lives on the CPU (no sync)."""
    if isinstance(lr, (int, float)):
        return float(lr)
    if lr is None:
        return math.nan
    device = getattr(lr, "device", None)
    if device is not None and device.type != "cpu":
        return math.nan
    return float(lr)


def _lrs_text(lrs: list[float]) -> str:
    if len(lrs) == 1:
        return f"{lrs[0]:.3g}"
    return ", ".join(f"{lr:.3g} (group {i})" for i, lr in enumerate(lrs))


def _user_site() -> tuple[str, int]:
    """Where the user's code made the call, as (filename, line)."""
    site = user_site(skip=2)
    return (site.filename, site.line) if site is not None else ("<unknown>", 1)


def _shown(site: tuple[str, int]) -> tuple[str, int]:
    """The site with its path as the reports show it (as typed, or relative to the cwd)."""
    return display_path(site[0]), site[1]
