"""Gradient bookkeeping: which backward passes each parameter's .grad holds when a step uses it.

Every backward pass gets an id. A per-parameter post-accumulate-grad hook notes the ids that flow
into the current `.grad`; clearing is observed through patched `zero_grad` methods, `Tensor.zero_`
on a gradient, and `.grad` becoming None or another tensor. At each optimizer step (post hook, so
LBFGS closures have run) the step's contributions are compared with that optimizer's previous step.
No tensor value is ever read here.
"""

from __future__ import annotations

import bisect
import linecache
import re
import weakref
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from looplint.runtime.sites import Site, user_site
from looplint.words import plural


class _ParamState:
    """What the current .grad of one parameter is made of."""

    __slots__ = (
        "__weakref__",
        "clear_site",
        "count",
        "first",
        "grad_ref",
        "last",
        "owners",
        "param_ref",
        "seen_from_start",
    )

    def __init__(self, param: torch.Tensor) -> None:
        self.param_ref = weakref.ref(param)
        self.first = 0  # oldest backward id in .grad (0: none, or from before the session)
        self.count = 0  # backward passes accumulated since the last clear
        self.last = 0  # newest backward id that touched this parameter, even if cleared since
        self.grad_ref: weakref.ref[torch.Tensor] | None = None
        self.clear_site: Site | None = None
        self.seen_from_start = False  # hooked before the session's first backward pass
        self.owners: list[OptimizerState] = []  # the optimizers this parameter belongs to

    def clear(self, site: Site | None) -> None:
        self.count = 0
        self.first = 0
        self.clear_site = site


@dataclass
class OptimizerState:
    """One optimizer seen during the session."""

    label: str
    created_at: Site | None
    params: list[_ParamState] = field(default_factory=list)
    param_count: int = 0
    steps: int = 0
    marker: int = 0  # backward count at this optimizer's previous step
    evaluated: bool = False  # False until a step whose gradients were fully observed
    passes_per_step: Counter = field(default_factory=Counter)
    step_sites: Counter = field(default_factory=Counter)
    used_closure: bool = False
    last_site: Site | None = None
    used_passes: int = 0  # backward passes whose gradients its steps used, over the run
    used_backward_sites: set = field(default_factory=set)  # where those backward passes ran
    # Gradients cleared before any of its steps used them: one _Discard per clearing call.
    discards: list[_Discard] = field(default_factory=list)
    discarded_upto: int = 0  # newest backward id already counted in `discards`


@dataclass
class _Discard:
    """One clearing call that threw away gradients an optimizer's steps had not used yet."""

    clear_site: Site | None
    before_step: int  # the optimizer's steps so far: the gradients were meant for the next one
    first: int  # backward ids of the gradients thrown away
    last: int
    passes: int


@dataclass
class GradProblem:
    """One gradient problem at one step site, aggregated over the steps where it happened."""

    code: str
    site: Site | None
    optimizer: str
    first_step: int
    message: str
    occurrences: int = 1
    related: list[Site] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def _holds_grad_at(state: _ParamState | None, pointer: int) -> bool:
    """Whether the parameter's current .grad lives at this address."""
    param = None if state is None else state.param_ref()
    grad = None if param is None else param.grad
    return grad is not None and grad.data_ptr() == pointer


# Clearing calls remembered per optimizer (enough to judge a run; memory stays bounded).
MAX_DISCARDS = 100_000
# Accumulation is defeated when gradients were thrown away before at least this share of the steps.
DEFEATED_SHARE = 0.8

_STEP_CALL = re.compile(r"([A-Za-z_][\w.]*)\.step\(\s*([A-Za-z_][\w.]*)?")


def _receiver(site: Site | None, method: str) -> str | None:
    """`opt` in `opt.zero_grad()` on the line of `site`."""
    if site is None:
        return None
    match = re.search(rf"([A-Za-z_][\w.]*)\.{method}\(", linecache.getline(site.filename, site.line))
    return match.group(1) if match else None


def _optimizer_name(site: Site | None) -> str | None:
    """The optimizer as the user's step line names it: `opt_d` in `opt_d.step()` or in
    `scaler.step(opt_d)`; None when the line says something else."""
    if site is None:
        return None
    match = _STEP_CALL.search(linecache.getline(site.filename, site.line))
    if match is None:
        return None
    receiver, argument = match.groups()
    if "scaler" in receiver.lower():
        return argument
    return receiver


class GradTracker:
    """Installs the gradient hooks and turns what they saw into problems."""

    def __init__(self, guard: Callable[..., Any], accumulation_steps: int | None) -> None:
        self._guard = guard  # runs a bookkeeping callable, turning its errors into one warning
        self.accumulation_steps = accumulation_steps
        self.backward_count = 0
        self.backward_sites: Counter[Site | None] = Counter()
        self.total_steps = 0
        self.step_marks = array("q")  # backward count at each optimizer step, in order
        self.optimizers: dict[int, OptimizerState] = {}
        self._optimizer_refs: dict[int, Any] = {}
        self._params: dict[int, _ParamState] = {}
        # data_ptr of each tracked .grad, to recognize `p.grad.zero_()`; rebuilt only when a
        # zero_() meets it out of date, so loops that never call zero_() never pay for it.
        self._grad_ptrs: dict[int, _ParamState] = {}
        self._grad_ptrs_stale = True
        self._handles: list[Any] = []
        # Where each backward pass ran, by id (an index into _backward_site_list; 0 is unused).
        self._backward_site_ids = array("i", [0])
        self._backward_site_index: dict[Site | None, int] = {}
        self._backward_site_list: list[Site | None] = []
        self.problems: dict[tuple[str, int, Site | None], GradProblem] = {}
        # [first, last] backward ids whose gradients some optimizer step really used.
        self.consumed: list[list[int]] = []
        self._stepping = 0  # >0 inside optimizer.step(), where closures clear and refill on purpose
        self.on_step: list[Callable[[torch.optim.Optimizer, OptimizerState], None]] = []

    # -- registration -------------------------------------------------------------------------
    def track_optimizer(
        self, optimizer: torch.optim.Optimizer, site: Site | None, *, from_start: bool = False
    ) -> OptimizerState:
        """Start (or keep) tracking an optimizer. `from_start`: seen at construction, so every
        backward pass into its parameters is observed and its first step can be checked too."""
        key = id(optimizer)
        state = self.optimizers.get(key)
        if state is None or self._optimizer_refs.get(key) is not optimizer:
            name = type(optimizer).__name__
            index = sum(1 for s in self.optimizers.values() if s.label.split("#")[0] == name)
            label = name + (f"#{index + 1}" if index else "")
            state = OptimizerState(label=label, created_at=site, evaluated=from_start)
            self.optimizers[key] = state
            self._optimizer_refs[key] = optimizer
            self._sync_params(optimizer, state)
            # Created before the session but its parameters were hooked before the first
            # backward pass (found in that pass's graph): its history is complete.
            state.evaluated = from_start or all(p.seen_from_start for p in state.params)
            return state
        self._sync_params(optimizer, state)
        return state

    def hook_graph_leaves(self, roots: Any, limit: int = 100_000) -> None:
        """Before the session's first backward pass: hook the parameters its graph reaches, so
        optimizers created before the session are observed from their first step."""
        stack = [t.grad_fn for t in roots if isinstance(t, torch.Tensor) and t.grad_fn is not None]
        seen: set[int] = set()
        while stack and len(seen) < limit:
            node = stack.pop()
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            variable = getattr(node, "variable", None)  # AccumulateGrad: a leaf that gets .grad
            if isinstance(variable, torch.Tensor):
                self._param_state(variable).seen_from_start = True
            stack.extend(next_node for next_node, _ in node.next_functions)

    def _sync_params(self, optimizer: torch.optim.Optimizer, state: OptimizerState) -> None:
        count = sum(len(group["params"]) for group in optimizer.param_groups)
        if count == state.param_count:
            return
        known = {id(s) for s in state.params}
        for group in optimizer.param_groups:
            for param in group["params"]:
                param_state = self._param_state(param)
                if id(param_state) not in known:
                    known.add(id(param_state))
                    state.params.append(param_state)
                    param_state.owners.append(state)
        state.param_count = count

    def _param_state(self, param: torch.Tensor) -> _ParamState:
        state = self._params.get(id(param))
        if state is not None and state.param_ref() is param:
            return state
        state = _ParamState(param)
        self._params[id(param)] = state
        if param.grad is not None:
            # Gradient from before the session: unknown backward passes, older than any step.
            state.count = 1
            self._see_grad(state, param.grad)
        if param.requires_grad:
            self._handles.append(param.register_post_accumulate_grad_hook(self._make_hook(state)))
        return state

    def _see_grad(self, state: _ParamState, grad: torch.Tensor) -> None:
        """Remember the tensor now in .grad."""
        state.grad_ref = weakref.ref(grad)
        self._grad_ptrs_stale = True

    def _rebuild_grad_ptrs(self) -> None:
        self._grad_ptrs.clear()
        for state in self._params.values():
            grad = state.grad_ref() if state.grad_ref is not None else None
            if grad is not None:
                self._grad_ptrs[grad.data_ptr()] = state
        self._grad_ptrs_stale = False

    def _make_hook(self, state: _ParamState) -> Callable[[torch.Tensor], None]:
        def after_accumulate(param: torch.Tensor) -> None:
            try:
                grad = param.grad
                ref = state.grad_ref
                if ref is None or ref() is not grad:
                    # .grad was None (cleared) or replaced since we last saw it.
                    state.count = 0
                    self._see_grad(state, grad)
                backward_id = self.backward_count
                if state.count == 0:
                    state.first = backward_id
                    state.count = 1
                elif state.last != backward_id:
                    state.count += 1
                state.last = backward_id
            except Exception as error:  # noqa: BLE001 - never raise into backward
                self._guard(error)

        return after_accumulate

    def remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    # -- events -----------------------------------------------------------------------------
    def on_backward(self, site: Site | None) -> None:
        self.backward_count += 1
        self.backward_sites[site] += 1
        index = self._backward_site_index.get(site)
        if index is None:
            index = self._backward_site_index[site] = len(self._backward_site_list)
            self._backward_site_list.append(site)
        self._backward_site_ids.append(index)

    def backward_site(self, backward_id: int) -> Site | None:
        """Where the backward pass with this id ran."""
        if 0 < backward_id < len(self._backward_site_ids):
            return self._backward_site_list[self._backward_site_ids[backward_id]]
        return None

    def on_clear_params(self, params: Any, site: Site | None) -> None:
        # Per optimizer: [owner, first, last, passes] of the gradients no step of it has used yet.
        unused: dict[int, list[Any]] | None = None
        for param in params:
            state = self._params.get(id(param))
            if state is None or state.param_ref() is not param:
                continue
            if state.count:
                for owner in state.owners:
                    if state.first > owner.marker:
                        if unused is None:
                            unused = {}
                        seen = unused.setdefault(id(owner), [owner, state.first, state.last, 0])
                        seen[1], seen[2] = min(seen[1], state.first), max(seen[2], state.last)
                        seen[3] = max(seen[3], state.count)
            state.clear(site)
        if unused and not self._stepping:
            for owner, first, last, passes in unused.values():
                self._discard(owner, site, first, last, passes)

    def _discard(self, owner: OptimizerState, site: Site | None, first: int, last: int, passes: int) -> None:
        if last <= owner.discarded_upto:
            return  # the same gradients, cleared parameter by parameter (`p.grad.zero_()`)
        passes = min(passes, last - owner.discarded_upto)
        owner.discarded_upto = last
        if len(owner.discards) < MAX_DISCARDS:
            owner.discards.append(_Discard(site, owner.steps, first, last, passes))

    def on_clear_optimizer(self, optimizer: torch.optim.Optimizer, site: Site | None) -> None:
        self.on_clear_params((p for group in optimizer.param_groups for p in group["params"]), site)

    def on_tensor_zeroed(self, tensor: torch.Tensor) -> None:
        if not self._params:
            return
        try:
            pointer = tensor.data_ptr()
        except RuntimeError:  # tensors without storage (meta, fake, sparse)
            return
        state = self._grad_ptrs.get(pointer)
        if not _holds_grad_at(state, pointer) and self._grad_ptrs_stale:
            self._rebuild_grad_ptrs()
            state = self._grad_ptrs.get(pointer)
        if state is not None and _holds_grad_at(state, pointer):
            state.clear(user_site())

    def on_step_pre(self, optimizer: torch.optim.Optimizer, kwargs: dict[str, Any], args: tuple) -> None:
        state = self.track_optimizer(optimizer, None)
        state.used_closure = state.used_closure or bool(kwargs.get("closure") or len(args) > 1)
        self._stepping += 1

    def on_step_post(self, optimizer: torch.optim.Optimizer) -> OptimizerState:
        state = self.optimizers.get(id(optimizer))
        if state is None or self._optimizer_refs.get(id(optimizer)) is not optimizer:
            state = self.track_optimizer(optimizer, None)  # the pre hook already did this
        self._stepping = max(0, self._stepping - 1)
        state.steps += 1
        self.total_steps += 1
        self.step_marks.append(self.backward_count)
        marker = state.marker
        consumed_params = 0
        stale_params = 0
        passes = 0
        stale_passes = 0
        oldest = 0
        newest_touch = 0
        newest_used = 0
        clear_sites: Counter[Site | None] = Counter()
        for param_state in state.params:
            param = param_state.param_ref()
            if param is None:
                continue
            grad = param.grad
            if grad is None:
                if param_state.count:
                    param_state.clear(None)  # `p.grad = None` somewhere
            elif param_state.grad_ref is None or param_state.grad_ref() is not grad:
                # Assigned by the user (`p.grad = tensor`): its history is unknown, count it fresh.
                self._see_grad(param_state, grad)
                param_state.first, param_state.count = self.backward_count, 1
            newest_touch = max(newest_touch, param_state.last)
            if param_state.count:
                newest_used = max(newest_used, param_state.last)
                consumed_params += 1
                passes = max(passes, param_state.count)
                if oldest == 0 or param_state.first < oldest:
                    oldest = param_state.first
                if param_state.first <= marker:
                    stale_params += 1
                    stale_passes = max(stale_passes, param_state.count)
            elif param_state.last > marker:
                clear_sites[param_state.clear_site] += 1
        site = user_site()
        state.step_sites[site] += 1
        state.last_site = site
        if consumed_params:
            state.used_passes += passes
            state.used_backward_sites.add(self.backward_site(newest_used))
        if state.evaluated:
            self._check_step(
                state,
                site,
                marker,
                consumed_params,
                stale_params,
                stale_passes,
                passes,
                newest_touch,
                clear_sites,
            )
        if consumed_params:
            self._mark_consumed(max(oldest, 1), self.backward_count)
            if state.evaluated:
                state.passes_per_step[passes] += 1
        state.evaluated = True
        state.marker = self.backward_count
        for callback in self.on_step:
            callback(optimizer, state)
        return state

    def _check_step(
        self,
        state: OptimizerState,
        site: Site | None,
        marker: int,
        consumed_params: int,
        stale_params: int,
        stale_passes: int,
        passes: int,
        newest_touch: int,
        clear_sites: Counter,
    ) -> None:
        if stale_params:
            if stale_passes > 1:
                message = (
                    f"gradients of {stale_params} parameters accumulated across {stale_passes} "
                    f"backward passes without being cleared: `{state.label}.step()` also used "
                    "gradients that its previous step had already applied"
                )
            else:
                message = (
                    f"`{state.label}.step()` applied the gradients of {stale_params} parameters a "
                    "second time: its previous step already used them, and neither a clear nor a "
                    "backward pass came in between"
                )
            self._record(
                "LL101",
                state,
                site,
                message,
                details={"parameters": stale_params, "backward_passes": stale_passes},
            )
        elif (
            self.accumulation_steps is not None
            and consumed_params
            and not state.used_closure
            and passes != self.accumulation_steps
        ):
            self._record(
                "LL101",
                state,
                site,
                f"`{state.label}.step()` used gradients of {passes} backward passes, "
                f"expected accumulation_steps={self.accumulation_steps}",
                details={"backward_passes": passes, "expected": self.accumulation_steps},
            )
        if not consumed_params and newest_touch > marker and newest_touch == self.backward_count:
            clear_site = clear_sites.most_common(1)[0][0] if clear_sites else None
            where = f" (cleared at {clear_site.display()})" if clear_site else ""
            self._record(
                "LL102",
                state,
                site,
                f"`{state.label}.step()` ran with no gradients right after a backward pass: they "
                f"were cleared between backward and step{where}, so the step did nothing",
                related=[clear_site] if clear_site else [],
            )

    def _record(
        self,
        code: str,
        state: OptimizerState,
        site: Site | None,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        related: list[Site] | None = None,
    ) -> None:
        key = (code, id(state), site)
        problem = self.problems.get(key)
        name = _optimizer_name(site)
        if name is not None:
            message = message.replace(f"`{state.label}.step()`", f"`{name}.step()`")
        if problem is not None:
            problem.occurrences += 1
            # Stale gradients pile up step after step: report the worst count seen.
            if (details or {}).get("backward_passes", 0) > problem.details.get("backward_passes", 0):
                problem.message, problem.details = message, dict(details or {})
            return
        backward_sites = [s for s, _ in self.backward_sites.most_common(3) if s is not None]
        self.problems[key] = GradProblem(
            code=code,
            site=site,
            optimizer=state.label,
            first_step=state.steps,
            message=message,
            related=[*(related or []), *backward_sites],
            details=dict(details or {}),
        )

    def optimizer_named(self, label: str) -> torch.optim.Optimizer | None:
        """The optimizer object behind a label such as "SGD" or "SGD#2"."""
        for key, state in self.optimizers.items():
            if state.label == label:
                return self._optimizer_refs.get(key)
        return None

    def finish(self) -> None:
        """Judge what only the whole run shows: gradient accumulation defeated by clearing (LL102)."""
        consumed = self._consumed_checker()
        for state in self.optimizers.values():
            self._check_accumulation(state, consumed)

    def _check_accumulation(self, state: OptimizerState, consumed: Callable[[int], bool]) -> None:
        """LL102 at a clearing call that, before most steps, threw away gradients of backward passes
        that no step of any optimizer ever used, from the same `backward()` whose gradients the
        steps did use, and more of them than the steps used: the loop accumulates on purpose, and
        the clearing defeats it."""
        stepped = [d for d in state.discards if d.before_step < state.steps]
        thrown = [
            d
            for d in stepped
            if not consumed(d.first)
            and not consumed(d.last)
            and self.backward_site(d.last) in state.used_backward_sites
        ]
        by_site: dict[Site | None, list[_Discard]] = {}
        for discard in thrown:
            by_site.setdefault(discard.clear_site, []).append(discard)
        for clear_site, discards in by_site.items():
            steps_hit = len({d.before_step for d in discards})
            if clear_site is None or steps_hit < 2 or steps_hit < DEFEATED_SHARE * state.steps:
                continue
            thrown_passes = sum(d.passes for d in discards)
            if thrown_passes < state.used_passes:
                continue  # a few left-over micro-batches cleared at an epoch's start: harmless
            total = thrown_passes + state.used_passes
            name = _receiver(clear_site, "zero_grad") or f"{state.label}"
            step_name = _optimizer_name(state.last_site) or state.label
            message = (
                f"`{name}.zero_grad()` defeats the gradient accumulation: of "
                f"{plural(total, 'backward pass', 'backward passes')}, it threw away the gradients of "
                f"{thrown_passes} before any step used them, so the {plural(state.steps, 'step')} of "
                f"`{step_name}` applied only {state.used_passes} of the {total}; clear the gradients "
                f"right after `{step_name}.step()` instead"
            )
            step_sites = [site for site, _ in state.step_sites.most_common(2) if site is not None]
            backward_sites = [s for s in state.used_backward_sites if s is not None][:2]
            self.problems[("LL102", id(state), clear_site)] = GradProblem(
                code="LL102",
                site=clear_site,
                optimizer=state.label,
                first_step=min(d.before_step for d in discards) + 1,
                message=message,
                related=[*step_sites, *backward_sites],
                details={
                    "backward_passes": total,
                    "steps": state.steps,
                    "thrown_away": thrown_passes,
                    "accumulation_defeated": True,
                },
            )

    def _mark_consumed(self, first: int, last: int) -> None:
        if self.consumed and first <= self.consumed[-1][1] + 1:
            self.consumed[-1][1] = max(self.consumed[-1][1], last)
            self.consumed[-1][0] = min(self.consumed[-1][0], first)
        else:
            self.consumed.append([first, last])

    def was_consumed(self, backward_id: int) -> bool:
        """Whether an optimizer step used the gradients of this backward pass."""
        return any(first <= backward_id <= last for first, last in self.consumed)

    def _consumed_checker(self) -> Callable[[int], bool]:
        """`was_consumed` for many look-ups: the ranges sorted and merged once, then bisected."""
        merged: list[list[int]] = []
        for first, last in sorted(self.consumed):
            if merged and first <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], last)
            else:
                merged.append([first, last])
        starts = [first for first, _ in merged]

        def consumed(backward_id: int) -> bool:
            index = bisect.bisect_right(starts, backward_id) - 1
            return index >= 0 and backward_id <= merged[index][1]

        return consumed
