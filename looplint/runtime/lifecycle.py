"""Optimizers that do nothing, and parameters nothing updates, read off the gradient bookkeeping
once the run is over:

- LL404: a new optimizer for the same parameters before every step, so its state (momentum,
  Adam's moments, LBFGS's history, step counts) starts over each time;
- LL405: an optimizer none of whose parameters received a gradient at any of its steps;
- LL508: parameters that received a gradient at every backward pass of the run's first steps
  but belong to no optimizer, and did not change.
"""

from __future__ import annotations

import torch

from looplint.runtime.grads import GradTracker, optimizer_name
from looplint.runtime.problems import Problem
from looplint.runtime.sites import Site

MIN_STEPS = 3  # steps an optimizer must take before "at any of its steps" means something
MIN_REBUILDS = 3  # optimizers built at one place for the same parameters
FEW_TENSORS = 2  # at most this many left-out tensors ...
FEW_SHARE = 0.01  # ... holding at most this share of the trainable values count as few
_STATE_OF = {
    "SGD": "its momentum buffers",
    "Adam": "its moment estimates and step count",
    "AdamW": "its moment estimates and step count",
    "LBFGS": "its curvature history",
}


def optimizer_problems(grads: GradTracker) -> list[Problem]:
    return [*_rebuilt(grads), *_frozen(grads)]


def _rebuilt(grads: GradTracker) -> list[Problem]:
    """LL404: one construction site, the same parameters, a new optimizer for every step."""
    problems = []
    for site, states in grads.creations.items():
        # The optimizers built here for the very same parameters as the one before, and those.
        rebuilt = {index for index, state in enumerate(states) if state.rebuilt}
        group = [states[index] for index in sorted(rebuilt | {index - 1 for index in rebuilt})]
        stepped = [s for s in group if s.steps]
        if (
            len(group) < MIN_REBUILDS
            or len(stepped) < MIN_REBUILDS
            or any(s.steps > 1 for s in group)
            or not any(s.stateful for s in stepped)
        ):
            continue
        kind, count = group[0].key[:2]
        what = _STATE_OF.get(kind, "its state")
        message = (
            f"a new {kind} is built here for the same {count} parameters before every step "
            f"({len(group)} optimizers, one step each): {what} start over at every step, so "
            f"the run is not the {kind} it looks like; build the optimizer once, before the loop"
        )
        details = {"optimizers": len(group), "parameters": count, "optimizer": kind}
        problems.append(Problem("LL404", site, message, details=details))
    return problems


def _frozen(grads: GradTracker) -> list[Problem]:
    """LL405: an optimizer stepped a few times and none of its parameters ever had a gradient."""
    problems = []
    for state in grads.all_optimizers:
        if state.steps < MIN_STEPS or state.steps_with_grads or state.empty_steps != state.steps:
            continue
        name = optimizer_name(state.empty_site) or state.label
        created = f" (created at {state.created_at.display()})" if state.created_at else ""
        if state.frozen_count == state.param_count:
            why = f"all {state.param_count} have requires_grad=False: frozen after it was built"
        elif state.frozen_count:
            why = f"{state.frozen_count} of them are frozen, and no backward pass reaches the others"
        else:
            why = "no backward pass reaches them"
        message = (
            f"`{name}.step()` ran {state.steps} times and none of the {state.param_count} "
            f"parameters of its {state.label}{created} received a gradient ({why}): every step "
            "updated nothing; step the optimizers of the parameters you train, or unfreeze these"
        )
        related = [state.created_at] if state.created_at else []
        details = {
            "optimizer": state.label,
            "steps": state.steps,
            "parameters": state.param_count,
            "frozen": state.frozen_count,
        }
        problems.append(Problem("LL405", state.empty_site, message, related, details))
    return problems


def unowned_problem(grads: GradTracker) -> Problem | None:
    """LL508: trainable parameters that got a gradient at every backward pass watched, that no
    optimizer holds, and that did not change. Silent when they are few and nothing in their model
    is frozen (a stray scalar is more likely on purpose than a forgotten layer), and when no
    optimizer stepped at all (the script updates its parameters by hand)."""
    params = [p for p in grads.unowned if id(p) not in grads.owned]
    if not params or not grads.total_steps:
        return None
    for param, before in grads.unowned_before:
        if id(param) in grads.owned or not torch.equal(param.detach(), before):
            return None  # something updates them: an EMA, a hand-written update, an optimizer of its own
    names, models = _names(params, grads.unowned_models, grads.user_names)
    order = {key: index for index, key in enumerate(names)}
    params.sort(key=lambda p: order.get(id(p), len(order)))
    optimized = [
        p for state in grads.optimizers.values() if (o := state.ref()) is not None for p in _params_of(o)
    ]
    known = {id(p): p for p in [*optimized, *params, *(p for model in models for p in model.parameters())]}
    frozen = any(not p.requires_grad for p in known.values())
    numel = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in known.values() if p.requires_grad)
    if len(params) <= FEW_TENSORS and numel <= FEW_SHARE * trainable and not frozen:
        return None
    shown = ", ".join(
        f"`{names[id(p)]}`" if id(p) in names else f"a tensor of shape {tuple(p.shape)}" for p in params[:6]
    )
    more = f" and {len(params) - 6} more" if len(params) > 6 else ""
    message = (
        f"{len(params)} parameter tensors ({numel:,} values: {shown}{more}) receive a gradient at "
        "every backward pass, but no optimizer holds them: they never change, and their "
        "gradients are computed for nothing; add them to an optimizer, or freeze them with "
        "`requires_grad_(False)`"
    )
    first = next((s.created_at for s in grads.all_optimizers if s.created_at), None)
    backward = next((s for s, _ in grads.backward_sites.most_common(1) if s is not None), None)
    site: Site | None = first or backward
    related = [backward] if backward is not None and backward != site else []
    details = {"tensors": len(params), "values": numel, "names": [names.get(id(p), "") for p in params]}
    return Problem("LL508", site, message, related, details)


def _params_of(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _names(
    params: list[torch.Tensor], modules: list[torch.nn.Module], user_names: dict[int, str]
) -> tuple[dict[int, str], list[torch.nn.Module]]:
    """Dotted names of `params` in the largest of `modules` that holds them (prefixed with the
    script's name for that module), in the modules' order, and the modules that hold them."""
    wanted = {id(p) for p in params}
    names: dict[int, str] = {}
    models = []
    for module in sorted(modules, key=lambda m: -sum(1 for _ in m.parameters())):
        prefix = user_names.get(id(module))
        found = False
        for name, param in module.named_parameters():
            if id(param) in wanted and id(param) not in names:
                names[id(param)] = f"{prefix}.{name}" if prefix else name
                found = True
        if found:
            models.append(module)
    for param in params:
        if id(param) not in names and id(param) in user_names:
            names[id(param)] = user_names[id(param)]
    return names, models
