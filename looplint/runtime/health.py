"""Health checks: non-finite losses and gradients (LL503), host-device syncs per step (LL504).

Values stay on the device during the run: each backward's loss and each step's largest gradient
magnitude are kept as tensors and read once, after the loop, so the hooks add no synchronization.
"""

from __future__ import annotations

import math
import warnings
from array import array
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch

from looplint.runtime.sites import Site, user_site

_CHUNK = 256  # tensors stacked together so a long run keeps few small device tensors
# Gradients and weights are checked after the first steps, then every GRAD_CHECK_EVERY steps: a
# pass over them costs about as much as a small model's optimizer step, and a non-finite gradient
# that was applied leaves non-finite weights, which the next check shows.
_MAX_OPTIMIZERS = 64
GRAD_CHECK_FIRST = 10
GRAD_CHECK_EVERY = 10


class _LazySeries:
    """Scalars kept on their device; `first_non_finite()` reads them at the end only."""

    def __init__(self) -> None:
        self._pending: list[torch.Tensor] = []
        self._pending_keys: list[int] = []
        self._chunks: list[tuple[Any, array]] = []

    def add(self, value: torch.Tensor, key: int) -> None:
        self._pending.append(value)
        self._pending_keys.append(key)
        if len(self._pending) >= _CHUNK:
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
        self.grad_sums = _LazySeries()  # keyed by step number * _MAX_OPTIMIZERS + optimizer index
        self.optimizer_sites: list[tuple[Site | None, str]] = []  # (step site, label) per index
        self.syncs_per_step: list[int] = []
        self.sync_sites: Counter[Site | None] = Counter()
        self._syncs_this_step = 0
        self.sync_counting = False

    def on_loss(self, loss: Any, backward_id: int, site: Site | None) -> None:
        if not isinstance(loss, torch.Tensor) or not loss.is_floating_point():
            return
        value = loss.detach()
        if value.dim():
            value = value.float().sum()  # NaN and inf survive the sum
        self.losses.add(value, backward_id)
        if (not self._loss_sites or self._loss_sites[-1][1] != site) and len(self._loss_sites) < 10_000:
            self._loss_sites.append((backward_id, site))

    def on_step(self, optimizer: torch.optim.Optimizer, step: int, site: Site | None, label: str) -> None:
        """After an optimizer step: close the step's sync count, sometimes check its gradients."""
        if self.sync_counting:
            self.syncs_per_step.append(self._syncs_this_step)
            self._syncs_this_step = 0
        if step > GRAD_CHECK_FIRST and step % GRAD_CHECK_EVERY:
            return
        tensors = []
        for group in optimizer.param_groups:
            for param in group["params"]:
                # The weights too: a non-finite gradient applied between two checks leaves them
                # non-finite even when later gradients are finite again.
                tensors.append(param.detach())
                if param.grad is not None and not param.grad.is_sparse:
                    tensors.append(param.grad)
        if tensors:
            try:
                # inf and nan survive a sum; finite values overflow it only near 3e38.
                total = torch.stack([t.sum(dtype=torch.float32) for t in tensors]).sum()
                entry = (site, label)
                if entry not in self.optimizer_sites:
                    if len(self.optimizer_sites) >= _MAX_OPTIMIZERS:
                        return
                    self.optimizer_sites.append(entry)
                self.grad_sums.add(total, step * _MAX_OPTIMIZERS + self.optimizer_sites.index(entry))
            except (RuntimeError, TypeError):
                pass  # mixed devices or unusual dtypes: skip this step's gradient check

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
