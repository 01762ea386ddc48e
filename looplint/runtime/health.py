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
# Gradients are checked at the first steps, then every GRAD_CHECK_EVERY steps: a pass over all
# gradients costs about as much as a small model's optimizer step, and a non-finite gradient
# that was applied leaves non-finite weights, which the next step's check (and loss) shows.
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
        self.grad_sums = _LazySeries()  # keyed by global step number
        self.step_sites: dict[int, tuple[Site | None, str]] = {}
        self.syncs_per_step: list[int] = []
        self.sync_sites: Counter[Site | None] = Counter()
        self._syncs_this_step = 0
        self.sync_counting = False

    def on_loss(self, loss: Any, backward_id: int, site: Site | None) -> None:
        if not isinstance(loss, torch.Tensor) or not loss.is_floating_point():
            return
        value = loss.detach()
        if value.numel() != 1:
            value = value.float().sum()  # NaN and inf survive the sum
        self.losses.add(value.reshape(()), backward_id)
        if (not self._loss_sites or self._loss_sites[-1][1] != site) and len(self._loss_sites) < 10_000:
            self._loss_sites.append((backward_id, site))

    def on_step(self, optimizer: torch.optim.Optimizer, step: int, site: Site | None, label: str) -> None:
        if self.sync_counting:
            self.syncs_per_step.append(self._syncs_this_step)
            self._syncs_this_step = 0
        if step > GRAD_CHECK_FIRST and step % GRAD_CHECK_EVERY:
            return
        grads = [
            p.grad
            for group in optimizer.param_groups
            for p in group["params"]
            if p.grad is not None and not p.grad.is_sparse
        ]
        if grads:
            try:
                # inf and nan survive a sum; finite gradients overflow it only near 3e38.
                total = torch.stack([g.sum(dtype=torch.float32) for g in grads]).sum()
                self.grad_sums.add(total, step)
                self.step_sites[step] = (site, label)
            except RuntimeError:
                pass  # mixed devices or dtypes: skip this step's gradient check

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

    def start(self) -> bool:
        if not torch.cuda.is_available():
            return False
        self._previous_mode = torch.cuda.get_sync_debug_mode()
        warnings.filterwarnings("always", message=".*" + self._MESSAGE, category=UserWarning)
        self._filter = warnings.filters[0]
        self._original_showwarning = warnings.showwarning
        warnings.showwarning = self._showwarning
        torch.cuda.set_sync_debug_mode("warn")
        self.health.sync_counting = True
        return True

    def _showwarning(self, message: Any, category: Any, filename: str, lineno: int, *args: Any, **kw: Any) -> None:
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
