"""Gradient bookkeeping: which backward passes each watched parameter's .grad holds when a step uses it.

Every backward pass gets an id. The cost per step must not grow with the model, so not every
parameter is watched: each optimizer watches two of its trainable parameters, the first and the
last of its list (the input and the output end of a model, the first and the last group). Around
each backward pass the watched parameters' `.grad` (the tensor and its version counter) are read
before and after: a new tensor or a bumped version means the pass accumulated into it. No hook
runs per parameter. Clearing is observed through patched
`zero_grad` methods (one event per call, whatever the parameter count), `Tensor.zero_` on a
gradient, and `.grad` becoming None or another tensor. At each optimizer step (post hook, so LBFGS
closures have run) the watched parameters' contributions are compared with that optimizer's
previous step. When the few watched parameters suggest a problem that only the whole set could
prove, the optimizer watches all its parameters from then on: precision costs time only in runs
that have the problem. Gradient accumulation defeated by a clear every micro-batch (LL102) is judged
at the end of the run from what the clears threw away; the clear's call site and what it discarded
are looked up only at a clear that threw away gradients no step used. No tensor value is ever read
here.
"""

from __future__ import annotations

import bisect
import itertools
import linecache
import operator
import re
import sys
import weakref
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from looplint.runtime.sites import Site, modules_holding, user_names, user_site
from looplint.words import plural

SAMPLE_SIZE = 2  # parameters watched per optimizer on the common path: the first and the last
_GRAD = operator.attrgetter("grad")
_VERSION, _NO_VERSION = itertools.repeat("_version"), itertools.repeat(-1)
PENDING_STEPS = 10  # optimizer steps the parameters of the first backward pass stay watched, at most
UNKNOWN = -1  # `first` of a gradient whose origin was not observed: never judged stale


class _ParamState:
    """What the current .grad of one parameter is made of."""

    __slots__ = (
        "__weakref__",
        "clear_site",
        "count",
        "first",
        "grad_ref",
        "last",
        "param_ref",
        "seen_from_start",
        "touches",
        "used",
        "watched",
    )

    def __init__(self, param: torch.Tensor) -> None:
        self.param_ref = weakref.ref(param)
        self.first = 0  # oldest backward id in .grad (0: none or older than any step; UNKNOWN)
        self.count = 0  # backward passes accumulated since the last clear
        self.last = 0  # newest backward id that touched this parameter, even if cleared since
        self.used = 0  # backward count at the last step that used its gradient
        self.touches = 0  # backward passes that accumulated into it while watched
        self.grad_ref: weakref.ref[torch.Tensor] | None = None
        self.clear_site: Site | None = None
        self.seen_from_start = False  # watched since before the session's first backward pass
        self.watched = False

    def clear(self, site: Site | None) -> None:
        self.count = 0
        self.first = 0
        self.clear_site = site

    def restart(self, first: int) -> None:
        """Start watching with no history: the current .grad counts as one contribution."""
        param = self.param_ref()
        grad = None if param is None else param.grad
        self.grad_ref = None if grad is None else weakref.ref(grad)
        self.count, self.first, self.last = (0, 0, 0) if grad is None else (1, first, 0)


@dataclass
class OptimizerState:
    """One optimizer seen during the session."""

    label: str
    created_at: Site | None
    ref: Any = None  # weakref to the optimizer
    params: list[_ParamState] = field(default_factory=list)  # the watched ones
    param_list: list[torch.Tensor] = field(default_factory=list)  # their parameters, same order
    param_count: int = 0
    group_count: int = 0
    sampled: bool = False  # watches some of its parameters, not all
    steps: int = 0
    marker: int = 0  # backward count at this optimizer's previous step
    cleared_at: int = -1  # backward count at its latest zero_grad()
    evaluated: bool = False  # False until a step whose gradients were fully observed
    passes_per_step: Counter = field(default_factory=Counter)
    used_closure: bool = False
    key: tuple = ()  # (type name, parameter count, ids of the first and last parameter)
    first_param: Any = None  # weakref to its first parameter
    rebuilt: bool = False  # built where the previous one was, for the very same parameters (LL404)
    stateful: bool = False  # its first step left per-parameter state (momentum, moments, history)
    steps_with_grads: int = 0
    empty_steps: int = 0  # steps that found no gradient, none of its parameters touched (LL405)
    empty_site: Site | None = None  # the step call site of those steps
    frozen_count: int = 0
    clip: Any = None  # the latest clip of its parameters since its previous step (clipping.py)
    unscaled_at: int = -1  # backward count at the latest GradScaler.unscale_ of it
    used_passes: int = 0  # backward passes whose gradients its steps used, over the run
    used_backward_sites: set = field(default_factory=set)  # where those passes ran (site indexes)
    # Gradients cleared before any of its steps used them: one _Discard per clearing call.
    discards: list[_Discard] = field(default_factory=list)
    discarded_upto: int = 0  # newest backward id already counted in `discards`
    # Call sites of the steps that followed a discard (a few: they name the step in LL102).
    step_sites: Counter = field(default_factory=Counter)
    step_site_wanted: bool = False


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
# Steps after a discard whose call site is looked up, per optimizer (the site names the step).
STEP_SITES_WANTED = 16

_STEP_CALL = re.compile(r"([A-Za-z_][\w.]*)\.step\(\s*([A-Za-z_][\w.]*)?")


def _receiver(site: Site | None, method: str) -> str | None:
    """`opt` in `opt.zero_grad()` on the line of `site`."""
    if site is None:
        return None
    match = re.search(rf"([A-Za-z_][\w.]*)\.{method}\(", linecache.getline(site.filename, site.line))
    return match.group(1) if match else None


def _inside_optimizer_step() -> bool:
    """Whether an optimizer's step() is on the stack: a closure (LBFGS) clears and refills the
    gradients on purpose. Walked only at a clear that threw gradients away."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "step" and isinstance(frame.f_locals.get("self"), torch.optim.Optimizer):
            return True
        frame = frame.f_back
    return False


def optimizer_name(site: Site | None) -> str | None:
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


def _flat_params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [param for group in optimizer.param_groups for param in group["params"]]


def _sample(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """The parameters an optimizer watches: SAMPLE_SIZE trainable ones, spread evenly from the
    first to the last (all of them when there are no more)."""
    trainable = [p for p in params if p.requires_grad] or params
    if len(trainable) <= SAMPLE_SIZE:
        return trainable
    last = len(trainable) - 1
    indices = sorted({round(i * last / (SAMPLE_SIZE - 1)) for i in range(SAMPLE_SIZE)})
    return [trainable[i] for i in indices]


class GradTracker:
    """Watches gradients around backward passes and steps, and turns what it saw into problems."""

    def __init__(self, guard: Callable[..., Any], accumulation_steps: int | None) -> None:
        self._guard = guard  # runs a bookkeeping callable, turning its errors into one warning
        self.accumulation_steps = accumulation_steps
        self.backward_count = 0
        self.backward_sites: Counter[Site | None] = Counter()
        # Where each backward pass ran, by id (an index into _backward_site_list; id 0 is unused).
        self._backward_site_ids = array("i", [0])
        self._backward_site_index: dict[Site | None, int] = {}
        self._backward_site_list: list[Site | None] = []
        self.total_steps = 0
        self.step_marks = array("q")  # backward count at each optimizer step, in order
        self.optimizers: dict[int, OptimizerState] = {}  # live optimizers by id
        self.all_optimizers: list[OptimizerState] = []  # every optimizer seen, in order
        self._params: dict[int, _ParamState] = {}
        self._watched: list[_ParamState] = []  # read around every backward pass
        self._watched_params: list[torch.Tensor] = []  # their parameters (released with them)
        self.pending: list[_ParamState] = []  # the first backward's leaves, until optimizers claim them
        self._generation = 0  # bumped whenever the watched set changes
        self._module_states: dict[int, tuple[Any, int, list[_ParamState]]] = {}
        # data_ptr of each watched .grad, to recognize `p.grad.zero_()`; rebuilt only when a
        # zero_() meets it out of date, so loops that never call zero_() never pay for it.
        self._grad_ptrs: dict[int, _ParamState] = {}
        self._grad_ptrs_stale = True
        self.clearing = 0  # inside a patched zero_grad: its own zero_() calls are already counted
        self.problems: dict[tuple[str, int, Site | None], GradProblem] = {}
        # [first, last] backward ids whose gradients some optimizer step really used.
        self.consumed: list[list[int]] = []
        self.owned: set[int] = set()  # ids of every parameter of every optimizer seen
        self.creations: dict[Site | None, list[OptimizerState]] = {}  # optimizers built in the session
        # LL508: the first backward's leaves that no optimizer held at the first step, kept (with
        # the modules that hold them, the script's names for its objects and copies of a few of
        # them) until the end of the run, when the script's own references may be gone; then
        # those of them that every backward pass reached.
        self.unclaimed: list[torch.Tensor] = []
        self.unowned: list[torch.Tensor] = []
        self.unowned_before: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.unowned_models: list[torch.nn.Module] = []
        self.user_names: dict[int, str] = {}
        # Called after each step with the step's site when it was needed, else None.
        self.on_step: list[Callable[[torch.optim.Optimizer, OptimizerState, Site | None], None]] = []

    # -- registration -------------------------------------------------------------------------
    def state_of(self, optimizer: torch.optim.Optimizer) -> OptimizerState | None:
        state = self.optimizers.get(id(optimizer))
        if state is not None and state.ref() is optimizer:
            return state
        return None

    def track_optimizer(
        self, optimizer: torch.optim.Optimizer, site: Site | None, *, from_start: bool = False
    ) -> OptimizerState:
        """Start (or keep) tracking an optimizer. `from_start`: seen at construction, so every
        backward pass into its parameters is observed and its first step can be checked too."""
        state = self.state_of(optimizer)
        if state is None:
            name = type(optimizer).__name__
            index = sum(1 for s in self.all_optimizers if s.label.split("#")[0] == name)
            label = name + (f"#{index + 1}" if index else "")
            state = OptimizerState(label=label, created_at=site, ref=weakref.ref(optimizer))
            self.optimizers[id(optimizer)] = state
            self.all_optimizers.append(state)
            self._sync_params(optimizer, state)
            if from_start:
                built_here = self.creations.setdefault(site, [])
                if built_here:
                    previous = built_here[-1]
                    first = previous.first_param() if previous.first_param is not None else None
                    state.rebuilt = (
                        previous.key == state.key and first is not None and first is state.first_param()
                    )
                built_here.append(state)
            # Created before the session but its watched parameters were seen before the first
            # backward pass (found in that pass's graph) and watched since: its history is complete.
            state.evaluated = from_start or all(p.seen_from_start for p in state.params)
            return state
        self._sync_params(optimizer, state)
        return state

    def _sync_params(self, optimizer: torch.optim.Optimizer, state: OptimizerState) -> None:
        """Choose the watched parameters again when the groups changed (`add_param_group`)."""
        state.group_count = len(optimizer.param_groups)
        count = sum(len(group["params"]) for group in optimizer.param_groups)
        if count == state.param_count:
            return
        params = _flat_params(optimizer)
        watched = _sample(params)
        state.params = [self._param_state(param) for param in watched]
        state.param_list = watched
        state.param_count = count
        state.sampled = len(watched) < len([p for p in params if p.requires_grad])
        state.key = (
            type(optimizer).__name__,
            count,
            id(params[0]) if params else 0,
            id(params[-1]) if params else 0,
        )
        state.first_param = weakref.ref(params[0]) if params else None
        self.owned.update(map(id, params))
        self._update_watched()

    def watch_all(self, state: OptimizerState) -> None:
        """From now on, watch every parameter of this optimizer (called right after one of its
        steps: gradients already there were used by it)."""
        optimizer = state.ref()
        if optimizer is None or not state.sampled:
            return
        known = {id(s) for s in state.params}
        for param in _flat_params(optimizer):
            param_state = self._param_state(param, first=0)
            if id(param_state) not in known:
                known.add(id(param_state))
                state.params.append(param_state)
                state.param_list.append(param)
        state.sampled = False
        self._update_watched()

    def _param_state(self, param: torch.Tensor, *, first: int = UNKNOWN) -> _ParamState:
        """The state of a parameter, watched from now on; `first` is what a gradient already
        there counts as when the parameter was not watched until now."""
        state = self._params.get(id(param))
        if state is None or state.param_ref() is not param:
            state = _ParamState(param)
            self._params[id(param)] = state
        if not state.watched:
            state.restart(first)
            state.seen_from_start = False
            state.watched = True
            self._watched.append(state)
            self._watched_params.append(param)
            self._generation += 1
            self._grad_ptrs_stale = True
        return state

    def _update_watched(self) -> None:
        """Keep watching what some live optimizer watches, and the pending leaves; drop the rest."""
        keep: dict[int, _ParamState] = {id(s): s for s in self.pending}
        for key, optimizer_state in list(self.optimizers.items()):
            if optimizer_state.ref() is not None:
                keep.update((id(s), s) for s in optimizer_state.params)
            else:  # gone: let its parameters go too
                optimizer_state.params, optimizer_state.param_list = [], []
                del self.optimizers[key]
        watched, params = [], []
        for state, param in zip(self._watched, self._watched_params):
            if id(state) in keep:
                watched.append(state)
                params.append(param)
            else:
                state.watched = False
                state.seen_from_start = False
        if len(watched) != len(self._watched):
            self._watched, self._watched_params = watched, params
            self._generation += 1
            self._grad_ptrs_stale = True

    def note_graph_leaves(self, roots: Any, limit: int = 100_000) -> None:
        """Before the session's first backward pass: watch the parameters its graph reaches, so
        optimizers created before the session are observed from their first step. They stay
        watched until optimizers claim them (or for PENDING_STEPS steps)."""
        stack = [t.grad_fn for t in roots if isinstance(t, torch.Tensor) and t.grad_fn is not None]
        seen: set[int] = set()
        while stack and len(seen) < limit:
            node = stack.pop()
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            variable = getattr(node, "variable", None)  # AccumulateGrad: a leaf that gets .grad
            if isinstance(variable, torch.Tensor):
                state = self._param_state(variable, first=0)
                state.seen_from_start = True
                self.pending.append(state)
            stack.extend(next_node for next_node, _ in node.next_functions)

    def _release_pending(self) -> None:
        """After a step: leaves that an optimizer holds no longer need watching (its own sample
        stays watched). The others stay watched for PENDING_STEPS steps, to see whether they get
        a gradient at every backward pass (LL508); a few of them are copied at the first step, to
        see at the end whether anything changed them."""
        unclaimed = [s for s in self.pending if id(s.param_ref()) not in self.owned]
        if unclaimed and self.total_steps == 1:
            self.unclaimed = [p for s in unclaimed if (p := s.param_ref()) is not None]
            self.unowned_before = [
                (p, p.detach().clone()) for p in sorted(self.unclaimed, key=torch.Tensor.numel)[:4]
            ]
            self.unowned_models = modules_holding(self.unclaimed)
            self.user_names = user_names()
        self.pending = unclaimed
        if self.total_steps >= PENDING_STEPS:
            self.note_unowned()
        self._update_watched()

    def note_unowned(self) -> None:
        """The pending leaves that no optimizer claimed and that every backward pass reached; then
        stop watching them."""
        everywhere = {id(s.param_ref()) for s in self.pending if s.touches == self.backward_count}
        self.unowned = [p for p in self.unclaimed if id(p) in everywhere and id(p) not in self.owned]
        self.pending = []
        self._update_watched()

    # -- backward passes ----------------------------------------------------------------------
    def on_backward(self, site: Site | None) -> None:
        """Count a backward pass and remember where it ran."""
        self.backward_count += 1
        self.backward_sites[site] += 1
        index = self._backward_site_index.get(site)
        if index is None:
            index = self._backward_site_index[site] = len(self._backward_site_list)
            self._backward_site_list.append(site)
        self._backward_site_ids.append(index)

    def before_backward(self) -> tuple[list[_ParamState], list[torch.Tensor], list[Any], list[int]]:
        """What the watched gradients are before a backward pass (identity and version)."""
        params = self._watched_params
        grads = list(map(_GRAD, params))
        return self._watched, params, grads, list(map(getattr, grads, _VERSION, _NO_VERSION))

    def after_backward(
        self, before: tuple[list[_ParamState], list[torch.Tensor], list[Any], list[int]]
    ) -> None:
        """Note the watched gradients this backward pass accumulated into: a new tensor in .grad,
        or a new version of the same one."""
        states, params, old_grads, old_versions = before
        grads = list(map(_GRAD, params))
        versions = list(map(getattr, grads, _VERSION, _NO_VERSION))
        backward_id = self.backward_count
        for state, grad, old, version, old_version in zip(states, grads, old_grads, versions, old_versions):
            if grad is not old:
                if grad is not None:  # a new tensor: .grad was None (cleared) or was replaced
                    state.grad_ref = weakref.ref(grad)
                    state.first = state.last = backward_id
                    state.count = 1
                    state.touches += 1
                    self._grad_ptrs_stale = True
            elif version != old_version:  # accumulated in place: into the tensor we knew?
                state.touches += 1
                ref = state.grad_ref
                if ref is None or ref() is not grad:
                    state.grad_ref = weakref.ref(grad)
                    state.count = 0
                    self._grad_ptrs_stale = True
                if state.count == 0:
                    state.first = backward_id
                    state.count = 1
                elif state.last != backward_id:
                    state.count += 1
                state.last = backward_id

    # -- clearing -----------------------------------------------------------------------------
    # A clear of gradients that every step already used is the normal loop; its call site is looked
    # up only when it throws away gradients no step used (LL102 names it).
    def on_clear_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        state = self.state_of(optimizer)
        if state is not None:
            state.cleared_at = self.backward_count
            self._clear(state.params, state)
        else:  # not stepped yet: its parameters may be watched as leaves of the first backward
            self._clear(
                [
                    s
                    for p in _flat_params(optimizer)
                    if (s := self._params.get(id(p))) is not None and s.watched
                ]
            )

    def on_clear_module(self, module: torch.nn.Module) -> None:
        entry = self._module_states.get(id(module))
        if entry is None or entry[0]() is not module or entry[1] != self._generation:
            states = [
                state
                for param in module.parameters()
                if (state := self._params.get(id(param))) is not None and state.watched
            ]
            entry = (weakref.ref(module), self._generation, states)
            self._module_states[id(module)] = entry
        self._clear(entry[2])

    def _clear(self, states: list[_ParamState], owner: OptimizerState | None = None) -> None:
        """Clear the watched gradients of a zero_grad() call: `owner`'s (`optimizer.zero_grad()`),
        or a module's (`model.zero_grad()`, owner None: the optimizers watching them)."""
        site = None
        for state in states:
            if state.count and state.last > state.used:  # throws away gradients no step used
                site = user_site()
                if not _inside_optimizer_step():
                    self._note_discards(states, owner, site)
                break
        for state in states:
            if state.count:
                state.count = state.first = 0
            state.clear_site = site

    def _note_discards(
        self, states: list[_ParamState], owner: OptimizerState | None, site: Site | None
    ) -> None:
        """For each optimizer watching some of the cleared parameters: the gradients they held that
        none of its steps used yet (evidence of defeated accumulation, judged in `finish`)."""
        if owner is not None:
            owners = [(owner, states)]
        else:
            cleared = {id(state) for state in states}
            owners = [(o, [s for s in o.params if id(s) in cleared]) for o in self.optimizers.values()]
        for optimizer_state, watched in owners:
            first = last = passes = 0
            for state in watched:
                if state.count and state.first > optimizer_state.marker:
                    first = min(first, state.first) if first else state.first
                    last, passes = max(last, state.last), max(passes, state.count)
            if last:
                self._discard(optimizer_state, site, first, last, passes)

    def _discard(self, owner: OptimizerState, site: Site | None, first: int, last: int, passes: int) -> None:
        if last <= owner.discarded_upto:
            return  # the same gradients, cleared again (`model.zero_grad()` then `opt.zero_grad()`)
        passes = min(passes, last - owner.discarded_upto)
        owner.discarded_upto = last
        if len(owner.discards) < MAX_DISCARDS:
            owner.discards.append(_Discard(site, owner.steps, first, last, passes))
            owner.step_site_wanted = owner.step_sites.total() < STEP_SITES_WANTED

    def on_tensor_zeroed(self, tensor: torch.Tensor) -> None:
        if self.clearing or not self._watched:
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

    def _rebuild_grad_ptrs(self) -> None:
        self._grad_ptrs.clear()
        for state in self._watched:
            grad = state.grad_ref() if state.grad_ref is not None else None
            if grad is not None:
                self._grad_ptrs[grad.data_ptr()] = state
        self._grad_ptrs_stale = False

    # -- steps --------------------------------------------------------------------------------
    def on_step_post(
        self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict[str, Any]
    ) -> OptimizerState:
        """After a step (so LBFGS closures have run): compare the gradients it used with the
        optimizer's previous step. Reads a few watched parameters, not all."""
        state = self.optimizers.get(id(optimizer))
        if state is None or state.ref() is not optimizer or state.group_count != len(optimizer.param_groups):
            state = self.track_optimizer(optimizer, None)
        if len(args) > 1 or kwargs:  # args[0] is the optimizer; anything else is a closure
            state.used_closure = True
        state.steps += 1
        self.total_steps += 1
        backward_count = self.backward_count
        self.step_marks.append(backward_count)
        marker = state.marker
        # The normal step: every watched gradient is the tensor we saw accumulate since the
        # previous step. Anything else goes through the full comparison.
        passes = oldest = newest = 0
        for param_state, grad in zip(state.params, map(_GRAD, state.param_list)):
            count = param_state.count
            first = param_state.first
            if grad is None or not count or first <= marker or param_state.grad_ref() is not grad:
                passes = -1
                break
            param_state.used = backward_count
            passes = max(passes, count)
            oldest = min(oldest, first) if oldest else first
            newest = max(newest, param_state.last)
        site = None
        if passes < 0:
            passes, oldest, newest, site = self._compare_step(state, marker)
        elif state.evaluated and self.accumulation_steps is not None and not state.used_closure:
            site = user_site()
            self._check_step(state, site, marker, len(state.params), 0, 0, passes, backward_count, Counter())
        if state.steps == 1:
            state.stateful = bool(optimizer.state)
        if not passes and not state.steps_with_grads:
            site = self._no_gradient_yet(optimizer, state, site)
        if state.step_site_wanted:  # a clear threw gradients away before this step: name the step
            site = site or user_site()
            state.step_sites[site] += 1
            state.step_site_wanted = False
        if passes:
            state.steps_with_grads += 1
            state.used_passes += passes
            if newest > 0:
                state.used_backward_sites.add(self._backward_site_ids[newest])
            first = oldest if oldest > 0 else 1
            latest = self.consumed[-1] if self.consumed else None
            if latest is not None and first <= latest[1] + 1:  # extends the latest range
                latest[0] = min(latest[0], first)
                latest[1] = backward_count
            else:
                self.consumed.append([first, backward_count])
            if state.evaluated:
                state.passes_per_step[passes] += 1
        state.evaluated = True
        state.marker = backward_count
        if self.pending:
            self._release_pending()
        for callback in self.on_step:
            callback(optimizer, state, site)
        return state

    def _no_gradient_yet(
        self, optimizer: torch.optim.Optimizer, state: OptimizerState, site: Site | None
    ) -> Site | None:
        """A step that found no gradient, of an optimizer that never had one: evidence for LL405
        when no backward pass ever reached its parameters (reached and cleared is LL102's)."""
        site = site or user_site()
        state.empty_site = site
        if any(s.last for s in state.params):
            return site
        params = _flat_params(optimizer)
        if state.sampled and any(p.grad is not None for p in params):
            self.watch_all(state)  # gradients the pair does not see: look at every parameter
            return site
        state.empty_steps += 1
        state.frozen_count = sum(1 for p in params if not p.requires_grad)
        return site

    def _compare_step(self, state: OptimizerState, marker: int) -> tuple[int, int, int, Site | None]:
        """Every watched gradient against the optimizer's previous step: stale ones (LL101), none
        at all right after a backward (LL102). Returns (passes, oldest and newest backward id used,
        step site)."""
        backward_count = self.backward_count
        consumed_params = stale_params = passes = stale_passes = oldest = newest_touch = newest_used = 0
        cleared_after_touch: list[_ParamState] = []
        for param_state, grad in zip(state.params, map(_GRAD, state.param_list)):
            count = param_state.count
            if grad is None:
                if count:
                    param_state.clear(None)  # `p.grad = None` somewhere
                    count = 0
            elif param_state.grad_ref is None or param_state.grad_ref() is not grad:
                # Assigned by the user (`p.grad = tensor`): its history is unknown, count it fresh.
                param_state.grad_ref = weakref.ref(grad)
                self._grad_ptrs_stale = True
                param_state.first, param_state.count = backward_count, 1
                count = 1
            last = param_state.last
            newest_touch = max(newest_touch, last)
            if count:
                param_state.used = backward_count
                consumed_params += 1
                passes = max(passes, count)
                newest_used = max(newest_used, last)
                first = param_state.first
                if first == UNKNOWN:
                    param_state.first = 0  # of unknown origin, and now used: older than any later step
                    continue
                oldest = min(oldest, first) if oldest else first
                if first <= marker:
                    stale_params += 1
                    stale_passes = max(stale_passes, count)
            elif last > marker:
                cleared_after_touch.append(param_state)
        site = None
        if state.evaluated and (
            stale_params
            or not consumed_params
            or (self.accumulation_steps is not None and not state.used_closure)
        ):
            site = user_site()
            clear_sites = Counter(s.clear_site for s in cleared_after_touch)
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
        return passes, oldest, newest_used, site

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
        # What a few watched parameters show of the whole set: stale gradients of one of them are
        # a fact; "fewer passes than expected" or "no gradient at all" need every parameter.
        if stale_params:
            if state.sampled:
                what = (
                    f"{stale_params} of the {len(state.params)} parameters watched (of {state.param_count})"
                )
            else:
                what = f"{stale_params} parameters"
            if stale_passes > 1:
                message = (
                    f"gradients of {what} accumulated across {stale_passes} "
                    f"backward passes without being cleared: `{state.label}.step()` also used "
                    "gradients that its previous step had already applied"
                )
            else:
                message = (
                    f"`{state.label}.step()` applied the gradients of {what} a "
                    "second time: its previous step already used them, and neither a clear nor a "
                    "backward pass came in between"
                )
            details = {"parameters": stale_params, "backward_passes": stale_passes}
            if state.sampled:
                details["watched_parameters"] = len(state.params)
                self.watch_all(state)
            self._record("LL101", state, site, message, details=details)
        elif (
            self.accumulation_steps is not None
            and consumed_params
            and not state.used_closure
            and passes != self.accumulation_steps
        ):
            if state.sampled and passes < self.accumulation_steps:
                self.watch_all(state)  # a parameter outside the sample may have had them all
            else:
                self._record(
                    "LL101",
                    state,
                    site,
                    f"`{state.label}.step()` used gradients of {passes} backward passes, "
                    f"expected accumulation_steps={self.accumulation_steps}",
                    details={"backward_passes": passes, "expected": self.accumulation_steps},
                )
        if not consumed_params and newest_touch > marker and newest_touch == self.backward_count:
            if state.sampled and not self._cleared_everywhere(state, newest_touch):
                self.watch_all(state)  # a parameter outside the sample may still hold gradients
                return
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

    def _cleared_everywhere(self, state: OptimizerState, touched: int) -> bool:
        """Whether none of the optimizer's parameters holds a gradient of the backward pass
        `touched`: it cleared them all since, or every .grad is None."""
        optimizer = state.ref()
        if state.cleared_at >= touched:
            return True
        return optimizer is not None and all(p.grad is None for p in _flat_params(optimizer))

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
        name = optimizer_name(site)
        if name is not None:
            message = message.replace(f"`{state.label}.step()`", f"`{name}.step()`")
        details = dict(details or {})
        if problem is not None:
            problem.occurrences += 1
            # Stale gradients pile up step after step: report the worst count seen, and the
            # whole parameter set rather than a sample of it.
            if _weight(details) > _weight(problem.details):
                problem.message, problem.details = message, details
            return
        backward_sites = [s for s, _ in self.backward_sites.most_common(3) if s is not None]
        self.problems[key] = GradProblem(
            code=code,
            site=site,
            optimizer=state.label,
            first_step=state.steps,
            message=message,
            related=[*(related or []), *backward_sites],
            details=details,
        )

    def optimizer_named(self, label: str) -> torch.optim.Optimizer | None:
        """The optimizer object behind a label such as "SGD" or "SGD#2"."""
        for state in self.all_optimizers:
            if state.label == label:
                return state.ref()
        return None

    def finish(self) -> None:
        """Judge what only the whole run shows: gradient accumulation defeated by clearing (LL102)."""
        consumed = None
        for state in self.all_optimizers:
            if state.discards:
                consumed = consumed or self.consumed_checker()
                self._check_accumulation(state, consumed)

    def _check_accumulation(self, state: OptimizerState, consumed: Callable[[int], bool]) -> None:
        """LL102 at a clearing call that, before most steps, threw away gradients of backward passes
        that no step of any optimizer ever used, from the same `backward()` whose gradients the
        steps did use, and more of them than the steps used: the loop accumulates on purpose, and
        the clearing defeats it."""
        site_ids = self._backward_site_ids
        thrown = [
            d
            for d in state.discards
            if d.before_step < state.steps
            and not consumed(d.first)
            and not consumed(d.last)
            and site_ids[d.last] in state.used_backward_sites
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
            step_sites = [site for site, _ in state.step_sites.most_common(2) if site is not None]
            name = _receiver(clear_site, "zero_grad") or state.label
            step_name = (optimizer_name(step_sites[0]) if step_sites else None) or state.label
            message = (
                f"`{name}.zero_grad()` defeats the gradient accumulation: of "
                f"{plural(total, 'backward pass', 'backward passes')}, it threw away the gradients of "
                f"{thrown_passes} before any step used them, so the {plural(state.steps, 'step')} of "
                f"`{step_name}` applied only {state.used_passes} of the {total}; clear the gradients "
                f"right after `{step_name}.step()` instead"
            )
            backward_sites = [
                site
                for index in sorted(state.used_backward_sites)
                if (site := self._backward_site_list[index]) is not None
            ][:2]
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

    def consumed_checker(self) -> Callable[[int], bool]:
        """Whether an optimizer step used the gradients of a backward pass (by its id): the ranges
        sorted and merged once, then bisected."""
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


def _weight(details: dict[str, Any]) -> tuple[int, int, int]:
    """Which of two reports of one problem to keep: full view first, then the worst counts."""
    return (
        "watched_parameters" not in details,
        details.get("backward_passes", 0),
        details.get("parameters", 0),
    )
