"""Gradient clipping in the wrong place: before the backward pass of its step (LL103), or on
gradients a GradScaler still multiplies by its scale (LL104).

`torch.nn.utils.clip_grad_norm_` and `clip_grad_value_` (both module paths) and GradScaler's
`scale` and `unscale_` are patched for the session. A clip is tied to the optimizers whose watched
parameters it clips. At the clip, the watched gradients say whether the newest backward pass
that filled them ran on a scaled loss and came after the optimizer's last `unscale_` (LL104). At
the optimizer's next step, a backward pass that filled its gradients after the clip means the
step applied gradients the clip never saw (LL103); clipping inside an LBFGS closure, after its
backward pass, is the right order. Nothing here reads a tensor value.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from looplint.runtime.grads import GradTracker, OptimizerState
from looplint.runtime.patches import Undo
from looplint.runtime.problems import Problem
from looplint.runtime.sites import Site, user_site

_CLIPS = ("clip_grad_norm_", "clip_grad_value_")


@dataclass
class Clip:
    """The latest clip of one optimizer's parameters since its previous step."""

    site: Site | None
    name: str
    backward_count: int


@dataclass
class ClipProblem:
    code: str
    site: Site | None
    name: str
    optimizer: str
    occurrences: int = 0
    first_step: int = 0
    related: list[Site] = field(default_factory=list)


class ClipTracker:
    """Patches the clipping functions and GradScaler, and checks each clip against the steps."""

    def __init__(self, grads: GradTracker, guard: Callable[[BaseException], None]) -> None:
        self.grads = grads
        self._guard = guard
        self.scaled: Any = None  # weakref to the tensor the latest `scaler.scale(loss)` returned
        self.scaled_backwards = bytearray()  # 1 at the id of each backward pass of a scaled loss
        self.problems: dict[tuple[str, Site | None, str], ClipProblem] = {}
        self._checking_steps = False

    def install(self, undo: Undo) -> None:
        from torch.amp.grad_scaler import GradScaler
        from torch.nn.utils import clip_grad

        for name in _CLIPS:
            original = getattr(clip_grad, name)
            wrapped = self._wrap_clip(name, original)
            undo.patch(clip_grad, name, wrapped)
            if getattr(torch.nn.utils, name, None) is original:
                undo.patch(torch.nn.utils, name, wrapped)

        tracker = self
        original_scale = GradScaler.scale
        original_unscale = GradScaler.unscale_

        def scale(scaler: GradScaler, outputs: Any) -> Any:
            result = original_scale(scaler, outputs)
            if isinstance(result, torch.Tensor) and result is not outputs:
                tracker.scaled = weakref.ref(result)  # the backward pass of this one is scaled
            return result

        def unscale_(scaler: GradScaler, optimizer: torch.optim.Optimizer) -> None:
            original_unscale(scaler, optimizer)
            state = tracker.grads.state_of(optimizer)
            if state is not None:
                state.unscaled_at = tracker.grads.backward_count

        functools.update_wrapper(scale, original_scale)
        functools.update_wrapper(unscale_, original_unscale)
        undo.patch(GradScaler, "scale", scale)
        undo.patch(GradScaler, "unscale_", unscale_)

    def _wrap_clip(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        tracker = self

        def clip(parameters: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(parameters, torch.Tensor):
                parameters = [parameters]
            else:
                parameters = list(parameters)  # a generator would be used up by looking at it
            try:
                tracker._on_clip(name, parameters)
            except Exception as error:  # noqa: BLE001
                tracker._guard(error)
            return original(parameters, *args, **kwargs)

        functools.update_wrapper(clip, original)
        return clip

    def on_backward(self, loss: Any, backward_id: int) -> None:
        """Before a backward pass (call only once a scaler has scaled something)."""
        bits = self.scaled_backwards
        if len(bits) <= backward_id:
            bits.extend(bytes(backward_id + 1 - len(bits)))
        bits[backward_id] = loss is self.scaled()

    def _on_clip(self, name: str, parameters: list[Any]) -> None:
        ids = set(map(id, parameters))
        site = user_site()
        for state in list(self.grads.optimizers.values()):
            if state.ref() is None or not any(id(p) in ids for p in state.param_list):
                continue
            state.clip = Clip(site, name, self.grads.backward_count)
            if not self._checking_steps:
                self.grads.on_step.append(self._on_step)
                self._checking_steps = True
            newest = max((s.last for s in state.params if s.count), default=0)
            bits = self.scaled_backwards
            if newest and newest < len(bits) and bits[newest] and state.unscaled_at < newest:
                self._record("LL104", site, name, state, state.steps + 1)

    def _on_step(self, optimizer: torch.optim.Optimizer, state: OptimizerState, site: Site | None) -> None:
        clip, state.clip = state.clip, None
        if clip is None:
            return
        newest = max((s.last for s in state.params), default=0)
        if newest > clip.backward_count:
            problem = self._record("LL103", clip.site, clip.name, state, state.steps)
            if site is not None and site not in problem.related:
                problem.related.append(site)

    def _record(
        self, code: str, site: Site | None, name: str, state: OptimizerState, step: int
    ) -> ClipProblem:
        key = (code, site, state.label)
        problem = self.problems.get(key)
        if problem is None:
            problem = self.problems[key] = ClipProblem(code, site, name, state.label, first_step=step)
        problem.occurrences += 1
        return problem

    def found(self) -> list[Problem]:
        problems = []
        for problem in self.problems.values():
            count = problem.occurrences
            if problem.code == "LL103":
                message = (
                    f"`{problem.name}` ran before the backward pass of its step ({count} "
                    f"step{'s' if count != 1 else ''} of {problem.optimizer}, the first step "
                    f"{problem.first_step}): it clipped the previous gradients or nothing, and the "
                    "step applied gradients that were never clipped; clip after the last "
                    "`backward()` of the step, right before `optimizer.step()`"
                )
            else:
                message = (
                    f"`{problem.name}` clipped gradients that a GradScaler still multiplies by its "
                    f"scale ({count} call{'s' if count != 1 else ''}, the first before step "
                    f"{problem.first_step} of {problem.optimizer}): the norm or values it compared "
                    "with the limit were scale times too large, so it cut the real gradients by "
                    "that factor too; call `scaler.unscale_(optimizer)` before clipping"
                )
            details = {"optimizer": problem.optimizer, "occurrences": count, "first_step": problem.first_step}
            problems.append(Problem(problem.code, problem.site, message, problem.related, details))
        return problems
