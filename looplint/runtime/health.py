"""Health checks: non-finite losses and weights (LL503), host-device syncs per step (LL504).

Values stay on the device during the run: each backward's loss and the largest weight magnitude
at the checked steps are kept as tensors and read once, after the loop, so the hooks add no
synchronization.
"""

from __future__ import annotations

import math
import warnings
import weakref
from array import array
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from torch._utils import _flatten_dense_tensors

from looplint.runtime.sites import Site, user_site

_CHUNK = 256  # tensors stacked together so a long run keeps few small device tensors
# Weights are checked after each of the first steps, then every 10th step up to step 100, then
# every 100th, and once more when the run ends. A non-finite gradient that a step applied leaves
# non-finite weights, which the next check shows (and one it did not apply did no harm); a check
# costs a few device ops over all weights, so it stays rare once the run is under way.
_MAX_OPTIMIZERS = 64
GRAD_CHECK_FIRST = 10
_CHECK_PERIODS = ((100, 10), (None, 100))  # (up to step, period); on_step spells it out too
_FLAT_ELEMENTS = 1 << 24  # weights copied into one flat buffer at a time, at most


def check_period(step: int) -> int:
    """Steps between two weight checks around optimizer step `step` (1 for the first steps)."""
    if step <= GRAD_CHECK_FIRST:
        return 1
    for until, period in _CHECK_PERIODS:
        if until is None or step <= until:
            return period
    return _CHECK_PERIODS[-1][1]


def unscaled_loss(loss: torch.Tensor) -> torch.Tensor:
    """`loss` detached, with a GradScaler's factor divided out (a device op, no sync).

    `scaler.scale(loss)` is `loss * scale` with a 0-dim float32 scale that needs no gradient;
    the scale doubles every growth interval, which would look like a growing loss. Autograd
    keeps that factor as the multiplication's saved `other` operand. A constant factor the
    user wrote the same way (`loss * 0.5`) is divided out too, which changes no ratio, and
    inf or nan stay what they are.
    """
    fn = loss.grad_fn
    if type(fn).__name__ == "MulBackward0" and fn.next_functions[1][0] is None:
        factor = getattr(fn, "_saved_other", None)
        if factor is not None and factor.dim() == 0 and factor.dtype == loss.dtype:
            return loss.detach() / factor
    return loss.detach()


class _LazySeries:
    """Scalars kept on their device; `first_non_finite()` reads them at the end only."""

    def __init__(self) -> None:
        self._pending: list[torch.Tensor] = []
        self._pending_keys: list[int] = []
        self._chunks: list[tuple[Any, array]] = []

    def add(self, value: torch.Tensor, key: int) -> None:
        pending = self._pending
        pending.append(value)
        self._pending_keys.append(key)
        if len(pending) >= _CHUNK:
            self._fold()

    def _fold(self) -> None:
        if not self._pending:
            return
        keys = array("q", self._pending_keys)
        try:
            stacked: Any = torch.stack([t.float() for t in self._pending])
        except RuntimeError:  # tensors on several devices: keep them apart
            stacked = list(self._pending)
        self._chunks.append((stacked, keys))
        self._pending, self._pending_keys = [], []

    def non_finite(self) -> Iterator[tuple[int, float]]:
        """(key, value) of each non-finite entry, in order; reads the device tensors."""
        self._fold()
        for values, keys in self._chunks:
            numbers = values.tolist() if isinstance(values, torch.Tensor) else [float(v) for v in values]
            for number, key in zip(numbers, keys):
                if not math.isfinite(number):
                    yield key, number


class Health:
    """Collects loss and gradient magnitudes per backward / step, and sync counts on CUDA."""

    def __init__(self) -> None:
        self.losses = _LazySeries()  # keyed by backward id
        # (first backward id, site) each time the backward call site changes.
        self._loss_sites: list[tuple[int, Site | None]] = []
        self._last_loss_site: Any = ()  # no site yet (None is a site: unknown)
        self.grad_sums = _LazySeries()  # keyed by step number * _MAX_OPTIMIZERS + optimizer index
        self.optimizer_sites: list[tuple[Site | None, str]] = []  # (step site, label) per index
        self.syncs_per_step: list[int] = []
        self.sync_sites: Counter[Site | None] = Counter()
        self._syncs_this_step = 0
        self.sync_counting = False
        self._plans: dict[int, tuple[Any, int, list[list[torch.Tensor]]]] = {}
        self._checked: dict[int, tuple[Any, int, Site | None, str]] = {}  # the latest check of each

    def on_loss(self, value: torch.Tensor, backward_id: int, site: Site | None) -> None:
        """A backward pass ran on a loss; `value` is it detached (see `unscaled_loss`)."""
        if value.dim():
            value = value.float().sum()  # NaN and inf survive the sum
        self.losses.add(value, backward_id)
        if site is not self._last_loss_site and len(self._loss_sites) < 10_000:
            self._loss_sites.append((backward_id, site))
            self._last_loss_site = site

    def on_step(self, optimizer: torch.optim.Optimizer, step: int, label: str) -> None:
        """After an optimizer step: close the step's sync count, sometimes check its weights."""
        if self.sync_counting:
            self.syncs_per_step.append(self._syncs_this_step)
            self._syncs_this_step = 0
        if step > GRAD_CHECK_FIRST and step % (10 if step <= 100 else 100):  # see check_period
            return
        self.check_weights(optimizer, step, user_site(), label)

    def check_weights(
        self, optimizer: torch.optim.Optimizer, step: int, site: Site | None, label: str
    ) -> None:
        """Keep the largest weight magnitude of `optimizer` at `step` (a device value)."""
        try:
            total = self._largest_weight(optimizer)
        except (RuntimeError, TypeError):
            self._plans.pop(id(optimizer), None)
            return  # mixed devices or unusual tensors: skip this step's check
        if total is None:
            return
        self._checked[id(optimizer)] = (weakref.ref(optimizer), step, site, label)
        entry = (site, label)
        if entry not in self.optimizer_sites:
            if len(self.optimizer_sites) >= _MAX_OPTIMIZERS:
                return
            self.optimizer_sites.append(entry)
        self.grad_sums.add(total, step * _MAX_OPTIMIZERS + self.optimizer_sites.index(entry))

    def final_check(self, step: int) -> None:
        """At the end of the run: check again every optimizer stepped since its last check."""
        for ref, checked_at, site, label in list(self._checked.values()):
            optimizer = ref()
            if optimizer is not None and checked_at < step:
                self.check_weights(optimizer, step, site, label)

    def _largest_weight(self, optimizer: torch.optim.Optimizer) -> torch.Tensor | None:
        """max |w| over the optimizer's weights, as a device tensor: inf and nan survive it, and
        no finite value overflows it. Small tensors are copied into flat buffers first: one op
        per buffer instead of one per tensor."""
        count = sum(len(group["params"]) for group in optimizer.param_groups)
        plan = self._plans.get(id(optimizer))
        if plan is None or plan[0]() is not optimizer or plan[1] != count:
            plan = (weakref.ref(optimizer), count, _flat_batches(optimizer))
            self._plans[id(optimizer)] = plan
        with torch.no_grad():
            peaks = [_flatten_dense_tensors(batch).abs().amax() for batch in plan[2]]
            if len(peaks) < 2:
                return peaks[0] if peaks else None
            return torch.stack([peak.float() for peak in peaks]).amax()

    def step_of(self, key: int) -> tuple[int, Site | None, str]:
        """(step, step site, optimizer label) of a `grad_sums` key."""
        step, index = divmod(key, _MAX_OPTIMIZERS)
        site, label = self.optimizer_sites[index]
        return step, site, label

    def on_sync_warning(self) -> None:
        self._syncs_this_step += 1
        self.sync_sites[user_site()] += 1

    def site_of_backward(self, backward_id: int) -> Site | None:
        best = None
        for first, site in self._loss_sites:
            if first > backward_id:
                break
            best = site
        return best


def _flat_batches(optimizer: torch.optim.Optimizer) -> list[list[torch.Tensor]]:
    """The optimizer's dense weights in batches of one device and dtype, each small enough to copy."""
    batches: list[list[torch.Tensor]] = []
    key = None
    size = 0
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.is_sparse:
                continue
            numel = param.numel()
            if not numel:
                continue
            if key != (param.device, param.dtype) or size + numel > _FLAT_ELEMENTS:
                batches.append([])
                key, size = (param.device, param.dtype), 0
            batches[-1].append(param)
            size += numel
    return batches


class SyncCounter:
    """Counts CUDA synchronizations with torch's sync debug mode while a session runs."""

    _MESSAGE = "synchroniz"

    def __init__(self, health: Health) -> None:
        self.health = health
        self._previous_mode: int | None = None
        self._original_showwarning: Any = None
        self._filter: tuple | None = None

    @property
    def started(self) -> bool:
        return self._previous_mode is not None

    def start(self) -> bool:
        """Start counting once the script itself has initialized CUDA (never initialize it here:
        that would create a context on the default GPU of every rank)."""
        if self._previous_mode is not None or not torch.cuda.is_initialized():
            return False
        self._previous_mode = torch.cuda.get_sync_debug_mode()
        warnings.filterwarnings("always", message=".*" + self._MESSAGE, category=UserWarning)
        self._filter = warnings.filters[0]
        self._original_showwarning = warnings.showwarning
        warnings.showwarning = self._showwarning
        torch.cuda.set_sync_debug_mode("warn")
        self.health.sync_counting = True
        return True

    def _showwarning(
        self, message: Any, category: Any, filename: str, lineno: int, *args: Any, **kw: Any
    ) -> None:
        if self._MESSAGE in str(message):
            self.health.on_sync_warning()
            return
        self._original_showwarning(message, category, filename, lineno, *args, **kw)

    def stop(self) -> None:
        if self._previous_mode is None:
            return
        torch.cuda.set_sync_debug_mode(self._previous_mode)
        if warnings.showwarning is self._showwarning:
            warnings.showwarning = self._original_showwarning
        if self._filter in warnings.filters:
            warnings.filters.remove(self._filter)
            mutated = getattr(warnings, "_filters_mutated", None)
            if mutated is not None:
                mutated()
        self._previous_mode = None
        self.health.sync_counting = False
