"""LL105: backward passes through dropout or batch norm left in eval mode.

The classic: `model.eval()` for validation, and nothing switches the model back before training
resumes, so dropout stays off and batch norm normalizes with its running statistics (and stops
updating them). `Module.train` (which `eval()` calls) is patched for the session. An outermost
`train(False)` on a module that holds dropout or batch norm layers, and switched some of them
from training, is remembered with its call site; two of those layers get a forward hook that
notes whether they run with gradients enabled while still in eval mode. A backward pass after
such a forward is training in eval mode.

What stays silent, because it is plausibly on purpose: a switch of a dropout or batch norm layer
itself (freezing batch norm statistics layer by layer, often inside a `train()` override); a
switch before any backward pass that no validation (a forward without gradients) followed (a
model trained in eval mode from the start); layers back in training mode before the backward
(`model.train()` anywhere, in a helper too); and batch norm layers whose parameters are all
frozen and no dropout among the layers that ran (frozen on purpose, and eval mode is what they
should be in).
"""

from __future__ import annotations

import functools
import linecache
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from looplint.runtime.grads import GradTracker
from looplint.runtime.patches import Undo
from looplint.runtime.problems import Problem
from looplint.runtime.sites import Site, user_site

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_BATCH_NORM = (nn.modules.batchnorm._BatchNorm,)
_PROBES = 2  # layers of a switch that get a forward hook: the first and the last
_SWITCH_CALL = re.compile(r"([A-Za-z_][\w.]*)\s*\.\s*(?:eval|train)\s*\(")


def _affected(module: nn.Module) -> bool:
    return isinstance(module, _DROPOUT + _BATCH_NORM)


@dataclass
class EvalSwitch:
    """One `.eval()` / `.train(False)` that switched dropout or batch norm layers out of training."""

    site: Site | None
    target: str  # the module as the call line names it
    step: int  # optimizer steps before the switch
    backwards_before: int
    layers: list[tuple[str, nn.Module]]  # (name within the target, layer)
    handles: list[Any] = field(default_factory=list)
    validated: bool = False  # a forward without gradients ran through it after the switch
    grad_forward: bool = False  # a forward with gradients ran through it in eval mode
    backward_passes: int = 0
    first_step: int = 0

    def back_in_training(self) -> bool:
        return all(layer.training for _, layer in self.layers)

    def remove_probes(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


class ModeTracker:
    """Remembers switches to eval mode and counts the backward passes that ran through them."""

    def __init__(self, grads: GradTracker, guard: Callable[[BaseException], None]) -> None:
        self._grads = grads  # its step and backward counts
        self._guard = guard
        self.pending: list[EvalSwitch] = []  # switched layers not all back in training mode
        self.found: list[EvalSwitch] = []  # switches that backward passes ran through
        self._depth = 0

    def install(self, undo: Undo) -> None:
        original_train = nn.Module.train
        tracker = self

        def train(module: nn.Module, mode: bool = True) -> nn.Module:
            if tracker._depth or (mode and not tracker.pending):  # nested, or nothing to resolve
                return original_train(module, mode)
            tracker._depth += 1
            try:
                switched = []
                if not mode:
                    try:
                        switched = tracker._switching(module)
                    except Exception as error:  # noqa: BLE001
                        tracker._guard(error)
                result = original_train(module, mode)
                try:
                    if switched:
                        tracker._on_switch(module, switched, user_site())
                    tracker._resolve()
                except Exception as error:  # noqa: BLE001
                    tracker._guard(error)
                return result
            finally:
                tracker._depth -= 1

        functools.update_wrapper(train, original_train)
        undo.patch(nn.Module, "train", train)
        undo.call(self._remove_all_probes)

    def _switching(self, module: nn.Module) -> list[tuple[str, nn.Module]]:
        """The dropout and batch norm layers in training mode that `module.train(False)` is about
        to switch; none when `module` is such a layer itself (switched one by one: on purpose)."""
        if _affected(module):
            return []
        return [
            (name, layer) for name, layer in module.named_modules() if _affected(layer) and layer.training
        ]

    def _on_switch(self, module: nn.Module, layers: list[tuple[str, nn.Module]], site: Site | None) -> None:
        switch = EvalSwitch(
            site=site,
            target=_target_name(site, module),
            step=self._grads.total_steps,
            backwards_before=self._grads.backward_count,
            layers=layers,
        )
        probes = layers if len(layers) <= _PROBES else [layers[0], layers[-1]]
        for _, layer in probes:
            switch.handles.append(layer.register_forward_hook(_probe(switch)))
        self.pending.append(switch)

    def _resolve(self) -> None:
        """Forget the switches whose layers are all back in training mode."""
        for switch in [s for s in self.pending if s.back_in_training()]:
            switch.remove_probes()
            self.pending.remove(switch)

    def on_backward(self) -> None:
        """At a backward pass (call only while switches are pending): did the forward it
        differentiates run through switched layers still in eval mode?"""
        self._resolve()
        for switch in self.pending:
            if not switch.grad_forward:
                continue
            switch.grad_forward = False
            if not (switch.validated or switch.backwards_before) or _frozen_batch_norm_only(switch):
                continue
            if not switch.backward_passes:
                switch.first_step = self._grads.total_steps + 1
                self.found.append(switch)
            switch.backward_passes += 1

    def _remove_all_probes(self) -> None:
        for switch in self.pending:
            switch.remove_probes()

    def problems(self) -> list[Problem]:
        problems = []
        for switch in self.found:
            layers = ", ".join(
                f"`{switch.target}.{name}` ({type(layer).__name__})" for name, layer in switch.layers[:4]
            )
            more = f" and {len(switch.layers) - 4} more" if len(switch.layers) > 4 else ""
            when = f"after optimizer step {switch.step}" if switch.step else "before the first optimizer step"
            passes = f"{switch.backward_passes} backward pass{'es' if switch.backward_passes != 1 else ''}"
            message = (
                f"`{switch.target}.eval()` switched {layers}{more} to eval mode {when}, and {passes} "
                f"then ran through them in eval mode (first at step {switch.first_step}): dropout is "
                "off and batch norm normalizes with its running statistics, which stop updating, "
                f"while the model trains; call `{switch.target}.train()` before training resumes"
            )
            details = {
                "module": switch.target,
                "layers": [name for name, _ in switch.layers],
                "switched_after_step": switch.step,
                "backward_passes": switch.backward_passes,
            }
            problems.append(Problem("LL105", switch.site, message, details=details))
        return problems


def _probe(switch: EvalSwitch) -> Callable[..., None]:
    def forward_hook(layer: nn.Module, inputs: Any, output: Any) -> None:
        if layer.training:
            return
        if torch.is_grad_enabled():
            switch.grad_forward = True
        else:
            switch.validated = True

    return forward_hook


def _frozen_batch_norm_only(switch: EvalSwitch) -> bool:
    """Only batch norm layers with frozen (or no) parameters are still in eval mode: eval mode is
    where frozen batch norm belongs, so nothing changed."""
    still = [layer for _, layer in switch.layers if not layer.training]
    return all(
        isinstance(layer, _BATCH_NORM) and not any(p.requires_grad for p in layer.parameters())
        for layer in still
    )


def _target_name(site: Site | None, module: nn.Module) -> str:
    """The switched module as its call line names it (`model` in `model.eval()`), else its class."""
    if site is not None:
        match = _SWITCH_CALL.search(linecache.getline(site.filename, site.line))
        if match:
            return match.group(1)
    return type(module).__name__
