"""The training-loop model: one pass over the CST, per scope, of what happens in which loop.

A scope (the module, each function and method) becomes an ordered list of `Event`s. Every event
knows the loops around it, the `if` branches it sits in, whether it runs under `torch.no_grad()`,
and whether it sits under a step-periodic test (`if step % 100 == 0`).

Events are about values, not names. Each carries the symbolic `Value` of what it acts on (the
optimizer a step steps, the loss a backward runs on, the writer a write goes to), so an
optimizer keeps what it is through `opt = self.optimizer`, an argument or a return value; and
each variable event carries its variable's key, so a helper's local `total` is never the
caller's `total`.

A call to a function or method of the project is bound, not spliced by name: `Model.events()`
puts the callee's summary (its events about its parameters, `self` and globals, already bound
through its own calls) at the call, with each parameter replaced by the caller's argument, and
`x = f(...)` binds `x` to what `f` returns. The callee's locals stay its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import libcst as cst

from looplint.static import names, vocabulary
from looplint.static.values import (
    Accum,
    Attr,
    Bin,
    Call,
    Elem,
    Evaluator,
    Ext,
    Item,
    Known,
    Lit,
    Name,
    Param,
    Phi,
    Ref,
    SelfAttr,
    Tup,
    Unknown,
    Value,
    join,
    peeled,
    unbound,
)

if TYPE_CHECKING:
    from looplint.static.project import Project
    from looplint.static.summaries import FunctionSummary

# Event kinds.
BACKWARD = "backward"  # loss.backward(), scaler.scale(loss).backward(), accelerator.backward(loss)
CLEAR = "clear"  # opt.zero_grad(), model.zero_grad(), p.grad = None, p.grad.zero_()
STEP = "step"  # X.step(...) or scaler.step(X): the role of X is decided by Model.role()
ASSIGN = "assign"  # X = value
ACCUMULATE = "accumulate"  # X += value, X = X + value
DIVIDE = "divide"  # X /= value
READ = "read"  # a dotted name is read
LOG = "log"  # print(...), writer.add_scalar(...), logger.info(...), wandb.log(...)
WRITE = "write"  # writer.add_*(...)
CLOSE = "close"  # X.close()
PERIODIC = "periodic"  # if counter % N ...: the counters' variable keys
CALL = "call"  # a call that may be a function of the project; bound by Model.events
PARAM_GROUPS = "param_groups"  # optimizer construction or add_param_group: the group sources
JUMP = "jump"  # break / continue / return: what follows in the block does not run
GUARD = "guard"  # `if x == y:`: the names compared (`if epoch == epochs - 1`)
CLIP = "clip"  # clip_grad_norm_(...) / clip_grad_value_(...)
UNSCALE = "unscale"  # scaler.unscale_(optimizer)
MODE = "mode"  # model.train() / model.eval() / model.train(False)
FREEZE = "freeze"  # p.requires_grad = False / requires_grad_(False)
APPEND = "append"  # xs.append(value)
CREATE = "create"  # an optimizer is built: torch.optim.SGD(model.parameters(), ...)

INLINE_DEPTH = 4
# Events bound into one scope at most: a call tree that goes deeper than a training step's stays
# unknown rather than costing more than the rest of the file.
MAX_BOUND_EVENTS = 500
# Where a builtin name resolves when nothing in the file binds it.
_BUILTINS = frozenset(
    {
        "len",
        "float",
        "int",
        "round",
        "abs",
        "sum",
        "min",
        "max",
        "str",
        "repr",
        "format",
        "print",
        "range",
        "enumerate",
        "zip",
        "iter",
        "next",
        "list",
        "dict",
        "tuple",
        "set",
        "sorted",
        "isinstance",
        "getattr",
        "hasattr",
        "open",
        "map",
        "filter",
    }
)
# What a rule can start from in a scope without loops (besides its calls).
_RULE_STARTS = frozenset(
    {BACKWARD, STEP, CLEAR, CLOSE, WRITE, CLIP, UNSCALE, MODE, FREEZE, APPEND, CREATE, ACCUMULATE}
)
# Summaries keep these kinds: what a function does to its arguments, `self` and the globals.
_OBJECT_EVENTS = frozenset(
    {BACKWARD, CLEAR, STEP, WRITE, CLOSE, LOG, CALL, CLIP, UNSCALE, MODE, FREEZE, CREATE}
)


@dataclass(eq=False)
class Loop:
    node: cst.CSTNode | None
    targets: tuple[str, ...]  # names the loop binds (`for i, batch in ...`), in order
    iter_names: frozenset[str]  # dotted names read by the iterable (`for w in writers`)
    label: str = "the loop"  # how a message names it: 'the `for epoch` loop'
    kind: str = "for"  # 'for', 'while' or 'comprehension'
    count: int | None = None  # `for _ in range(5)`: the literal count
    counted: bool = False  # `for _ in range(n)`: a fixed count per pass
    count_name: str | None = None  # `for _ in range(ROLLOUT)`: 'ROLLOUT'
    param_source: str | None = None  # `for p in model.fc.parameters()`: 'model.fc'


@dataclass(eq=False)
class Event:
    kind: str
    name: str | None  # the dotted name as written (optimizer, accumulator, writer, ...)
    node: cst.CSTNode  # where to report (in this file)
    statement: cst.CSTNode | None  # the enclosing statement (SimpleStatementLine or compound)
    loops: tuple[Loop, ...]
    branches: tuple[tuple, ...]  # (id of the if/match, branch index, loops around the if)
    no_grad: bool
    periodic: bool
    scope: Scope
    data: dict = field(default_factory=dict)
    value: Value | None = None  # what the event acts on (the receiver, the read, the loss)
    var: tuple | None = None  # the variable of assign/accumulate/divide/read events
    foreign: str | None = None  # 'path:line' when it happens in another module (no fix then)

    def in_loop(self, loop: Loop) -> bool:
        return any(candidate is loop for candidate in self.loops)

    def but(self, **changes) -> Event:
        """A copy with some fields changed (cheaper than dataclasses.replace on a hot path)."""
        copy = object.__new__(Event)
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(changes)
        return copy

    def exclusive_with(self, other: Event) -> bool:
        """True when the two sit in different branches of the same `if`: both never run together."""
        mine = {branch[0]: branch[1] for branch in self.branches}
        return any(branch[0] in mine and mine[branch[0]] != branch[1] for branch in other.branches)

    def every_iteration(self, loop: Loop) -> bool:
        """Runs on every iteration of `loop`: no `if` inside the loop holds it."""
        depth = next((i + 1 for i, candidate in enumerate(self.loops) if candidate is loop), None)
        return depth is not None and all(branch[2] < depth for branch in self.branches)


@dataclass(eq=False)
class Scope:
    node: cst.CSTNode | None
    name: str
    class_name: str | None
    parent: Scope | None
    key: str = ""  # 'path::Class.method': the identity of its parameters
    no_grad: bool = False
    events: list[Event] = field(default_factory=list)
    local_functions: dict[str, Scope] = field(default_factory=dict)
    params: list[str] = field(default_factory=list)
    locals: set[str] = field(default_factory=set)  # names bound anywhere in the function
    global_names: set[str] = field(default_factory=set)  # `global x`
    final: dict[str, Value] = field(default_factory=dict)  # what each name holds at the end
    returns: list[Value] = field(default_factory=list)
    abstract: bool = False
    star: str | None = None  # `text` of `def log(*text)`: the extra positional arguments


class _Context:
    """Where the walk is: enclosing loops and branches, and flags. Copied, never mutated."""

    __slots__ = ("branches", "divisors", "in_log", "loops", "no_grad", "periodic", "statement")

    def __init__(self, no_grad: bool = False) -> None:
        self.loops: tuple[Loop, ...] = ()
        self.branches: tuple[tuple, ...] = ()
        self.no_grad = no_grad
        self.periodic = False
        self.statement: cst.CSTNode | None = None
        self.in_log = False
        self.divisors: frozenset | None = None  # set while reading a numerator of `/`

    def but(self, **changes) -> _Context:
        """A copy with some fields changed (cheaper than dataclasses.replace on a hot path)."""
        copy = _Context.__new__(_Context)
        for slot in _Context.__slots__:
            setattr(copy, slot, changes.get(slot, getattr(self, slot)))
        return copy


class Model:
    """Everything the rules need about one module (and, through the project, what it imports)."""

    def __init__(self, module: cst.Module, path: str = "<stdin>", project: Project | None = None) -> None:
        self.module = module
        self.path = path  # as findings show it
        # The module's identity in the project: its absolute path when it is a file.
        self.file = path if path.startswith("<") else os.path.abspath(path)
        self.project = project
        self.scopes: list[Scope] = []
        self.root: Scope | None = None
        self.functions: dict[str, Scope] = {}  # module-level functions
        self.methods: dict[tuple[str, str], Scope] = {}  # (class, method)
        self.classes: dict[str, cst.ClassDef] = {}
        self.class_bases: dict[str, list[Value]] = {}  # class -> its bases as values
        self.self_bindings: dict[str, list[tuple[str, Value]]] = {}  # attr -> (class, value)
        # Where each statement sits, for fixes: statement -> (owner of the body, index in it).
        self.block_of: dict[cst.CSTNode, tuple[cst.CSTNode, int]] = {}
        self.parent_statement: dict[cst.CSTNode, cst.CSTNode] = {}
        self.imports: set[str] = set()  # top-level package of every import (`torch`, `mxnet`)
        self.star_imports: list[Ref] = []  # project modules imported with `*`
        self.scaler_stepped: set[str] = set()  # X in scaler.step(X)
        # (scope key, name) checked with `isinstance(name, torch.optim.Optimizer)` in that scope
        self.checked_optimizers: set[tuple[str, str]] = set()
        self.engines: set[str] = set()  # receivers of X.backward(loss): Accelerate, DeepSpeed
        self.cleared: set[str] = set()  # receivers of X.zero_grad()
        self.stepped: set[str] = set()  # receivers of X.step()
        self._backwarded: set[int] = set()
        self._in_backward: set[int] = set()
        self._keep_alive: list[Value] = []
        self._expanded: dict[int, list[Event]] = {}
        self._expanding: set[int] = set()  # scopes whose events are being expanded right now
        self._summaries: dict[tuple[int, bool], FunctionSummary] = {}
        self._call_sites: dict[int, list[Event]] | None = None
        self.constructions: dict[tuple, cst.Call] = {}
        self._returns: dict[tuple, tuple[Call, Value | None]] = {}
        self._families: dict[str, set[str]] = {}
        self._uses_torch: bool | None = None  # optimizer identity -> its construction
        self.evaluator = Evaluator(self)
        _Builder(self).build(module)

    # ------------------------------------------------------------------------- values
    def known(self, value: Value | None) -> Known:
        return self.evaluator.known(value)

    def mark_backward(self, value: Value | None) -> bool:
        """`value.backward()`: it is a loss, and so is the same quantity before a mean, a cast, a
        division or a loss scale; what was added or multiplied into it is part of it. True when
        that was not known yet."""
        stack: list[tuple[Value | None, bool]] = [(value, True)]
        added = False
        while stack:
            current, itself = stack.pop()
            current = unbound(current)
            if current is None:
                continue
            marks = self._backwarded if itself else self._in_backward
            if id(current) in marks:
                continue
            added = True
            marks.add(id(current))
            self._in_backward.add(id(current))
            self._keep_alive.append(current)
            if isinstance(current, Bin) and current.op == "div":
                stack += [(current.left, itself), (current.right, False)]
            elif isinstance(current, Bin) and current.op in ("add", "sub", "mul"):
                stack += [(current.left, False), (current.right, False)]
            elif isinstance(current, Accum):
                stack += [(current.prev, False), (current.term, False)]
            elif isinstance(current, Phi):
                stack += [(option, itself) for option in current.options]
            elif isinstance(current, Call) and isinstance(current.func, Attr):
                if current.func.attr in ("mean", "sum", "float", "to", "cuda", "double", "half"):
                    stack.append((current.func.base, itself))
                elif current.func.attr == "scale" and current.args:
                    stack.append((current.args[0], itself))  # scaler.scale(loss)
                elif current.func.attr in ("stack", "cat") and current.args:
                    stack.append((current.args[0], False))  # torch.stack(losses).mean()
            elif isinstance(current, Call) and current.display in ("sum", "torch.sum", "torch.mean"):
                stack += [(argument, False) for argument in current.args[:1]]  # sum(losses)
            elif isinstance(current, Item):
                stack.append((current.base, False))
        return added

    def is_backwarded(self, value: Value) -> bool:
        """Did a backward pass run on this very value (so it is a loss)?"""
        return id(value) in self._backwarded or (
            self.project is not None and id(value) in self.project.backwarded
        )

    def feeds_backward(self, value: Value | None) -> bool:
        """Is the value part of what a backward pass ran on (a term of a loss built from
        several, a list of terms stacked into one)?"""
        value = unbound(value)
        return value is not None and (id(value) in self._in_backward or self.is_backwarded(value))

    def resolve_name(self, value: Name) -> Value:
        """A name read before its scope bound it: a local bound later, a closure, a global, a
        builtin, or a free name (a snippet's `optimizer`)."""
        scope, name = value.scope, value.name
        if scope.parent is not None and name in scope.global_names:
            scope = self.root
        if scope.parent is not None and name in scope.locals:
            return Unknown(("local", scope.key, name))
        current = scope.parent if scope.parent is not None else None
        while current is not None:
            if name in current.final and (current.parent is None or current.class_name is None):
                return current.final[name]
            current = current.parent
        if scope.parent is None and name in scope.final:
            return scope.final[name]
        for star in self.star_imports:
            found = self.module_attribute(star, name)
            if found is not None:
                return found
        if name in _BUILTINS:
            return Ext(f"builtins.{name}")
        return Unknown(("free", name))

    def self_attribute(self, value: SelfAttr) -> Value | None:
        """What `self.attr` holds: what the class (or a class of its family) assigns to it; a
        method of the class; None when nothing in the file says."""
        if value.cls is not None and "::" in value.cls and not value.cls.startswith(self.file + "::"):
            return self._foreign_class_attribute(value.cls, value.attr)
        cls = value.cls.rsplit("::", 1)[-1] if value.cls else None
        family = self._family(cls)
        bound = [v for owner, v in self.self_bindings.get(value.attr, []) if cls is None or owner in family]
        if bound:
            result = bound[0]
            for other in bound[1:]:
                result = join(result, other)
            return result
        if cls is not None:
            method = self._method(cls, value.attr)
            if method is not None:
                return Ref("function", self.file, method.key.split("::", 1)[1])
            return self._inherited_foreign(cls, value.attr)
        return None

    def _family(self, cls: str | None) -> set[str]:
        """The class, its bases and its subclasses within this file (remembered)."""
        if cls is None:
            return set()
        found = self._families.get(cls)
        if found is None:
            found = self._families[cls] = self._find_family(cls)
        return found

    def _find_family(self, cls: str) -> set[str]:
        family = {cls}
        changed = True
        while changed:
            changed = False
            for other, bases in self.class_bases.items():
                base_names = {b.name.rsplit(".", 1)[-1] for b in bases if isinstance(b, Ref)}
                if other in family and not base_names <= family:
                    family |= base_names
                    changed = True
                if base_names & family and other not in family:
                    family.add(other)
                    changed = True
        return family

    def _foreign_class_attribute(self, cls_key: str, attr: str) -> Value | None:
        if self.project is None:
            return None
        module, _, name = cls_key.partition("::")
        return self.project.class_attribute(module, name, attr)

    def _inherited_foreign(self, cls: str, attr: str) -> Value | None:
        for base in self.class_bases.get(cls, []):
            known = self.known(base)
            if known.kind == "class" and known.target.module != self.file:
                found = self.class_attribute(known.target, attr)
                if found is not None:
                    return found
        return None

    def module_attribute(self, module: Ref, attr: str) -> Value | None:
        if module.module == self.file:
            return self.root.final.get(attr) if self.root else None
        if self.project is None:
            return None
        return self.project.export(module.module, attr, importer=self.file)

    def class_attribute(self, cls: Ref, attr: str) -> Value | None:
        if cls.module == self.file:
            return self.self_attribute(SelfAttr(f"{self.file}::{cls.name}", attr))
        if self.project is None:
            return None
        return self.project.class_attribute(cls.module, cls.name, attr)

    def instance_attribute(self, cls: Ref | None, attr: str) -> Value | None:
        return self.class_attribute(cls, attr) if isinstance(cls, Ref) else None

    def class_role(self, cls: Ref) -> str | None:
        """'optimizer' or 'loss_fn' for a project class built on a torch one, else None."""
        bases = self._bases_of(cls)
        for base in bases:
            known = self.known(base)
            if known.kind == "external":
                last = known.target.rsplit(".", 1)[-1]
                if vocabulary.is_optimizer_class(last):
                    return "optimizer"
                if vocabulary.is_loss_class(last) or last == "_Loss":
                    return "loss_fn"
            elif known.kind == "class" and known.target is not cls:
                inherited = self.class_role(known.target)
                if inherited:
                    return inherited
        return None

    def class_layers(self, cls: Ref) -> frozenset[str] | None:
        """What a class of the project builds (`nn.Linear`, `nn.Dropout`: the last names of the
        calls in its body that are not calls of its own layers); None when not known."""
        if cls.module != self.file:
            return self.project.class_layers(cls.module, cls.name) if self.project is not None else None
        node = self.classes.get(cls.name)
        return _built_layers(node) if node is not None else None

    def _bases_of(self, cls: Ref) -> list[Value]:
        if cls.module == self.file:
            return self.class_bases.get(cls.name, [])
        if self.project is None:
            return []
        return self.project.class_bases(cls.module, cls.name)

    @property
    def uses_torch(self) -> bool:
        """The file imports torch (or a library built on it), or runs a backward pass."""
        if self._uses_torch is None:
            self._uses_torch = bool(self.imports & vocabulary.TORCH_ECOSYSTEM) or bool(self._backwarded)
        return self._uses_torch

    def loss_by_convention(self, display: str | None) -> bool:
        """An unknown callable named like a loss function (`criterion`, `loss_fn`): its result
        is a loss, unless the file trains with another framework."""
        if display is None or not names.is_loss_call(display.rsplit(".", 1)[-1]):
            return False
        other_framework = self.imports & vocabulary.OTHER_FRAMEWORKS
        return not other_framework or bool(self.imports & vocabulary.TORCH_ECOSYSTEM)

    # ------------------------------------------------------------------------- calls
    def callee(self, call: Event, local: bool = False) -> tuple[Scope | None, FunctionSummary | None]:
        """The function a CALL event runs: a scope of this file, or a summary from another module
        (not when `local`)."""
        known = self.known(call.value)
        method = None
        if known.kind == "object" and known.role in ("instance", "loss_fn") and isinstance(known.target, Ref):
            known, method = Known("class", target=known.target), "__call__"
        if known.kind == "class":
            method = method or "__init__"
            ref = self._method_ref(known.target, method)
            if ref is None and method == "__call__":
                ref = self._method_ref(known.target, "forward")
            if ref is None:
                return None, None
            known = Known("function", target=ref)
        if known.kind != "function":
            return None, None
        ref = known.target
        if ref.module == self.file:
            scope = self._scope_of(ref.name)
            return scope, (self.summary(scope, local) if scope is not None else None)
        if self.project is None or local:
            return None, None
        return None, self.project.function_summary(ref.module, ref.name)

    def _method_ref(self, cls: Ref, method: str) -> Ref | None:
        if cls.module == self.file:
            scope = self._method(cls.name, method)
            return Ref("function", self.file, scope.key.split("::", 1)[1]) if scope else None
        if self.project is None:
            return None
        found = self.project.class_attribute(cls.module, cls.name, method)
        return found if isinstance(found, Ref) and found.kind == "function" else None

    def _scope_of(self, qualname: str) -> Scope | None:
        for scope in self.scopes:
            if scope.key == f"{self.file}::{qualname}":
                return scope
        return None

    def call_result(self, target: Ref, call: Call, method: str | None = None) -> Value | None:
        """What `f(...)` returns at this call, its parameters bound to the call's arguments."""
        ref: Ref | None = target
        if method is not None:
            ref = self._method_ref(target, method) or self._method_ref(target, "forward")
            if ref is None:
                return None
        key = (id(call), ref.module, ref.name)
        found = self._returns.get(key)
        if found is None:
            summary = self._summary_of_ref(ref)
            if summary is None or summary.returns is None:
                return None
            bound = summary.bind_value(summary.returns, summary.bindings(call, skip_self=method is not None))
            found = self._returns[key] = (call, bound)  # one value per call: evaluated once
        return found[1]

    def _summary_of_ref(self, ref: Ref) -> FunctionSummary | None:
        if ref.module == self.file:
            scope = self._scope_of(ref.name)
            return self.summary(scope) if scope is not None else None
        if self.project is None:
            return None
        return self.project.function_summary(ref.module, ref.name)

    def summary(self, scope: Scope, local: bool = False) -> FunctionSummary:
        """What a function does to its parameters, `self` and the globals, and what it returns.
        A `local` summary binds none of its calls (what other modules get: they bind the calls
        themselves, those they reach, when they need them)."""
        from looplint.static.summaries import summarize

        key = (id(scope), local)
        found = self._summaries.get(key)
        if found is None:
            found = summarize(self, scope, local)
            if id(scope) not in self._expanding:  # (a recursive call's view is not the summary)
                self._summaries[key] = found
        return found

    def events(self, scope: Scope) -> list[Event]:
        """The scope's events with calls to project functions bound in (cached). A scope with
        no loop and nothing a rule starts from (glue code, a library's plumbing) keeps its calls
        unbound: nothing could be found there, and its callers bind them when they need them."""
        cached = self._expanded.get(id(scope))
        if cached is None and not any(e.loops or e.kind in _RULE_STARTS for e in scope.events):
            cached = self._expanded[id(scope)] = scope.events
        if cached is None:
            self._expanded[id(scope)] = []  # a recursive call sees no events, not a loop
            self._expanding.add(id(scope))
            budget = [MAX_BOUND_EVENTS]
            try:
                cached = list(self._expand(scope.events, (scope.key,), 0, budget))
            finally:
                self._expanding.discard(id(scope))
            self._expanded[id(scope)] = cached
        return cached

    def local_events(self, scope: Scope) -> list[Event]:
        """The scope's own events, no call bound."""
        return scope.events

    def _expand(self, events, stack: tuple[str, ...], depth: int, budget: list[int]) -> Iterator[Event]:
        for event in events:
            if event.kind == BACKWARD and depth and self.mark_backward(event.value):
                self.evaluator.memo.clear()  # a callee's backward made an argument a loss
            if event.kind != CALL or event.data.get("bound") or depth >= INLINE_DEPTH or budget[0] <= 0:
                yield event
                continue
            _, summary = self.callee(event)
            if summary is None or summary.events is None or summary.key in stack:
                yield event
                continue
            budget[0] -= len(summary.events)
            yield event.but(data={**event.data, "bound": True})
            yield from self._expand(
                summary.bind_events(event, self), (*stack, summary.key), depth + 1, budget
            )

    def call_sites(self, scope: Scope) -> list[Event]:
        """The calls of this module that resolve to the scope (a helper or method)."""
        if self._call_sites is None:
            self._call_sites = {}
            for caller in self.scopes:
                for event in caller.events:
                    if event.kind == CALL:
                        callee, _ = self.callee(event)
                        if callee is not None:
                            self._call_sites.setdefault(id(callee), []).append(event)
        return self._call_sites.get(id(scope), [])

    def _method(self, cls: str | None, name: str) -> Scope | None:
        """`self.name()` in class `cls`: its own method, or the one override in a subclass when its
        own is abstract (a base-class loop calling `self.run_step()`), or an inherited one."""
        if cls is None:
            return None
        own = self.methods.get((cls, name))
        if own is None or own.abstract:
            overrides = [
                scope
                for (other, method), scope in self.methods.items()
                if method == name and cls in self._base_names(other)
            ]
            if len(overrides) == 1:
                return overrides[0]
        if own is not None:
            return own
        for base in self._base_names(cls):
            inherited = self._method(base, name) if base != cls else None
            if inherited is not None:
                return inherited
        return None

    def _base_names(self, cls: str) -> list[str]:
        return [b.name.rsplit(".", 1)[-1] for b in self.class_bases.get(cls, []) if isinstance(b, Ref)]

    # ------------------------------------------------------------------------- queries for rules
    def role(self, event_or_value: Event | Value | None, name: str | None = None) -> str | None:
        """'optimizer', 'scheduler', 'engine', 'writer', 'scaler' or None (e.g. `env.step()`):
        what the value is when known, else what its name and uses say."""
        if isinstance(event_or_value, Event):
            value, name = event_or_value.value, event_or_value.name
            if (event_or_value.scope.key, name) in self.checked_optimizers:
                return "optimizer"
        else:
            value = event_or_value
        known = self.known(value) if value is not None else None
        if (
            known is not None
            and known.kind == "object"
            and known.role not in (None, "instance", "parameters")
        ):
            return known.role
        if known is not None and known.kind not in ("unknown", "object"):
            return None
        if name is None:
            return None
        if names.looks_like_scheduler(name):
            return "scheduler"
        if name in self.scaler_stepped:
            return "optimizer"
        if name in self.engines:
            return "engine"
        if names.looks_like_optimizer(name) or (name in self.cleared and name in self.stepped):
            return "optimizer"
        if names.looks_like_writer(name):
            return "writer"
        return None

    def identity(self, value: Value | None) -> tuple | None:
        if value is None:
            return None
        return self.known(value).origin

    def same(self, a: Event, b: Event) -> bool:
        """Do the two events act on one object (`optimizer = self.optimizer`)?"""
        first, second = self.identity(a.value), self.identity(b.value)
        if first is not None and second is not None:
            return first == second
        return a.name == b.name

    def parameter_sources(self, optimizer: Event) -> set[str]:
        """Names of the models whose parameters the optimizer was built from
        (`SGD(model.parameters())` -> {'model'})."""
        known = self.known(optimizer.value)
        construction = self.constructions.get(known.origin) if known.origin else None
        if construction is None:
            return set()
        return {source for group in _param_groups(construction) for source in group if source}

    def may_be(self, value: Value | None, identity: tuple) -> bool:
        """Can the value be the object `identity` (one item of `for opt in optimizers`)?"""
        known = self.known(value)
        if known.origin == identity:
            return True
        if isinstance(value, Elem):
            iterable = self.known(value.iterable)
            return any(item.origin == identity for item in iterable.items or ())
        if isinstance(value, Phi):
            return any(self.may_be(option, identity) for option in value.options)
        return False

    def bind_all(self) -> None:
        """Bind every call once, so that what callees do to the arguments (a backward on a
        parameter) is known before any rule evaluates a value."""
        for scope in self.scopes:
            self.events(scope)
        self.evaluator.memo.clear()


class _Builder:
    """Walks the CST once. Statements are walked by hand; expressions by a cached field walk."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.scope: Scope | None = None
        self.env: dict[str, Value] = {}
        self.bound_at: dict[str, tuple[Loop, ...]] = {}  # the loops around each name's binding
        self.class_stack: list[str] = []
        self.sites: dict[int, tuple] = {}
        self.function_keys: set[str] = set()  # of the functions defined so far
        self.visdom_names: set[str] = set()  # names assigned a `visdom.Visdom()`

    # ----------------------------------------------------------------- statements
    def build(self, module: cst.Module) -> None:
        root = Scope(module, "<module>", None, None, key=f"{self.model.file}::")
        self.model.scopes.append(root)
        self.model.root = root
        self.scope = root
        self.block(module, module.body, _Context(), None)
        root.final = self.env

    def block(self, owner: cst.CSTNode, body, ctx: _Context, class_name: str | None) -> None:
        for index, statement in enumerate(body):
            self.model.block_of[statement] = (owner, index)
            if ctx.statement is not None:
                self.model.parent_statement[statement] = ctx.statement
            self.statement(statement, ctx.but(statement=statement), class_name)

    def suite(self, suite: cst.BaseSuite, ctx: _Context, class_name: str | None = None) -> None:
        if isinstance(suite, cst.IndentedBlock):
            self.block(suite, suite.body, ctx, class_name)
        else:  # `if x: a; b` on one line
            self.model.block_of[suite] = (suite, 0)
            for small in suite.body:
                self.small(small, ctx)

    def statement(self, node: cst.CSTNode, ctx: _Context, class_name: str | None) -> None:
        if isinstance(node, cst.SimpleStatementLine):
            for small in node.body:
                self.small(small, ctx)
        elif isinstance(node, cst.If):
            self.if_(node, ctx)
        elif isinstance(node, cst.For):
            self.for_(node, ctx)
        elif isinstance(node, cst.While):
            loop = Loop(node, (), frozenset(), "the `while` loop", "while")
            inner = ctx.but(loops=ctx.loops + (loop,))
            self.expr(node.test, inner)
            self.suite(node.body, inner)
            if node.orelse is not None:
                self.suite(node.orelse.body, ctx)
        elif isinstance(node, cst.With):
            self.with_(node, ctx)
        elif isinstance(node, (cst.Try, cst.TryStar)):
            self.suite(node.body, ctx)
            for handler in node.handlers:
                before = dict(self.env)
                if handler.name is not None and isinstance(handler.name.name, cst.Name):
                    self.bind(handler.name.name.value, Unknown(), ctx)
                self.suite(handler.body, ctx)
                self.merge(before)
            if node.orelse is not None:
                self.suite(node.orelse.body, ctx)
            if node.finalbody is not None:
                self.suite(node.finalbody.body, ctx)
        elif isinstance(node, cst.FunctionDef):
            self.function(node, class_name, ctx)
        elif isinstance(node, cst.ClassDef):
            self.class_(node, ctx)
        elif isinstance(node, cst.Match):
            self.expr(node.subject, ctx)
            before = dict(self.env)
            for index, case in enumerate(node.cases):
                self.suite(case.body, ctx.but(branches=ctx.branches + ((id(node), index, len(ctx.loops)),)))
            self.merge(before)

    def for_(self, node: cst.For, ctx: _Context) -> None:
        iterable = self.expr(node.iter, ctx)
        targets = tuple(self.bound(node.target))
        loop = Loop(
            node,
            targets,
            frozenset(names.dotted_names(node.iter)),
            f"the `for {_target_text(node.target)}` loop",
            "for",
            *_range_count(node.iter),
            _parameters_of(node.iter),
        )
        inner = ctx.but(loops=ctx.loops + (loop,))
        self.bind_target(node.target, Elem(iterable, self.site(node.target)), inner, loop_target=True)
        # After a loop, names hold what its last iteration gave them: training loops run.
        self.suite(node.body, inner)
        if node.orelse is not None:
            self.suite(node.orelse.body, ctx)

    def with_(self, node: cst.With, ctx: _Context) -> None:
        no_grad = ctx.no_grad
        for item in node.items:
            value = self.expr(item.item, ctx)
            call = item.item
            if isinstance(call, cst.Call):
                callee = names.callee_name(call)
                if callee in names.NO_GRAD_CONTEXTS or (callee == "set_grad_enabled" and _is_false(call)):
                    no_grad = True
            if item.asname is not None:
                self.bind_target(item.asname.name, value, ctx)
        self.suite(node.body, ctx.but(no_grad=no_grad))

    def if_(self, node: cst.If, ctx: _Context) -> None:
        self.expr(node.test, ctx)
        test = node.test
        if isinstance(test, cst.Comparison) and any(
            isinstance(t.operator, cst.Equal) for t in test.comparisons
        ):
            compared = {names.dotted(test.left)} | {names.dotted(t.comparator) for t in test.comparisons}
            self.emit(
                GUARD,
                None,
                node,
                ctx,
                compared=frozenset(compared - {None}),
                branch=(id(node), 0, len(ctx.loops)),
            )
        counters, moduli = _periodic_counters(node.test)
        if counters:
            self.emit(
                PERIODIC,
                None,
                node,
                ctx,
                counters=frozenset(counters),
                counter_vars=frozenset(self.var_key(c) for c in counters),
                moduli=moduli,
            )
        before = dict(self.env)
        body_ctx = ctx.but(
            branches=ctx.branches + ((id(node), 0, len(ctx.loops)),), periodic=ctx.periodic or bool(counters)
        )
        self.suite(node.body, body_ctx)
        after_body = self.env
        self.env = dict(before)
        if node.orelse is not None:
            else_ctx = ctx.but(branches=ctx.branches + ((id(node), 1, len(ctx.loops)),))
            if isinstance(node.orelse, cst.If):
                self.if_(node.orelse, else_ctx)
            else:
                self.suite(node.orelse.body, else_ctx)
        self.merge(after_body)

    def merge(self, other: dict[str, Value]) -> None:
        """The names after two paths meet (an `if`, or a loop body that may not run)."""
        for name, value in other.items():
            mine = self.env.get(name)
            self.env[name] = value if mine is None else join(mine, value)

    def function(self, node: cst.FunctionDef, class_name: str | None, ctx: _Context) -> None:
        parent = self.scope
        assert parent is not None
        no_grad = any(names.is_no_grad_decorator(d.decorator) for d in node.decorators)
        qualname = f"{class_name}.{node.name.value}" if class_name else node.name.value
        if parent.parent is not None and class_name is None:
            qualname = f"{parent.key.split('::', 1)[1]}.<locals>.{node.name.value}"
        if class_name is None:
            # A function defined again (a notebook cell redefining a helper) is another function:
            # the calls after it run the new one.
            base, count = qualname, 1
            while f"{self.model.file}::{qualname}" in self.function_keys:
                count += 1
                qualname = f"{base}#{count}"
            self.function_keys.add(f"{self.model.file}::{qualname}")
        scope = Scope(
            node,
            node.name.value,
            class_name,
            parent,
            key=f"{self.model.file}::{qualname}",
            no_grad=no_grad,
            abstract=_is_abstract(node),
        )
        self.model.scopes.append(scope)
        if class_name is not None:
            self.model.methods[(class_name, node.name.value)] = scope
        elif parent.parent is None:
            self.model.functions[node.name.value] = scope
        else:
            parent.local_functions[node.name.value] = scope
        # The function's name is bound where it is defined.
        if class_name is None:
            self.bind(node.name.value, Ref("function", self.model.file, qualname), ctx, event=False)
        saved = (self.scope, self.env, self.bound_at)
        self.scope, self.env, self.bound_at = scope, {}, {}
        params = node.params
        for param in (*params.posonly_params, *params.params, *params.kwonly_params):
            scope.params.append(param.name.value)
            self.env[param.name.value] = Param(scope.key, param.name.value)
        if isinstance(params.star_arg, cst.Param):  # bound to a tuple of the extra arguments
            scope.star = params.star_arg.name.value
            self.env[scope.star] = Param(scope.key, scope.star)
        if isinstance(params.star_kwarg, cst.Param):
            self.env[params.star_kwarg.name.value] = Unknown(
                ("param", scope.key, params.star_kwarg.name.value)
            )
        self.suite(node.body, _Context(no_grad=no_grad))
        scope.final = self.env
        self.scope, self.env, self.bound_at = saved

    def class_(self, node: cst.ClassDef, ctx: _Context) -> None:
        name = node.name.value
        self.model.classes[name] = node
        self.model.class_bases[name] = [self.expr(arg.value, ctx) for arg in node.bases]
        self.bind(name, Ref("class", self.model.file, name), ctx, event=False)
        saved_env = self.env
        self.env = dict(self.env)  # the class body's own names are not visible to its methods
        self.class_stack.append(name)
        self.suite(node.body, _Context(), name)
        self.class_stack.pop()
        self.env = saved_env

    # ----------------------------------------------------------------- small statements
    def small(self, node: cst.BaseSmallStatement, ctx: _Context) -> None:
        if isinstance(node, cst.Assign):
            value = self.expr(node.value, ctx)
            for target in node.targets:
                self.assign(target.target, node.value, value, node, ctx)
        elif isinstance(node, cst.AnnAssign):
            if node.value is not None:
                value = self.expr(node.value, ctx)
                self.assign(node.target, node.value, value, node, ctx)
        elif isinstance(node, cst.AugAssign):
            self.aug_assign(node, ctx)
        elif isinstance(node, cst.Expr):
            self.expr(node.value, ctx)
        elif isinstance(node, cst.Import):
            for alias in node.names:
                dotted = names.dotted(alias.name) or ""
                self.model.imports.add(dotted.split(".")[0])
                if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                    self.bind(alias.asname.name.value, self.imported(dotted, 0, None), ctx, event=False)
                else:
                    top = dotted.split(".")[0]
                    self.bind(top, self.imported(top, 0, None), ctx, event=False)
        elif isinstance(node, cst.ImportFrom):
            self.import_from(node, ctx)
        elif isinstance(node, (cst.Return, cst.Raise, cst.Assert, cst.Del)):
            for name in ("value", "exc", "test", "target"):
                child = getattr(node, name, None)
                if isinstance(child, cst.CSTNode):
                    value = self.expr(child, ctx)
                    if isinstance(node, cst.Return) and name == "value":
                        assert self.scope is not None
                        self.scope.returns.append(value)
            if isinstance(node, cst.Return):
                self.emit(JUMP, "return", node, ctx)
        elif isinstance(node, (cst.Break, cst.Continue)):
            self.emit(JUMP, "break" if isinstance(node, cst.Break) else "continue", node, ctx)
        elif isinstance(node, (cst.Global, cst.Nonlocal)):
            assert self.scope is not None
            self.scope.global_names.update(item.name.value for item in node.names)

    def import_from(self, node: cst.ImportFrom, ctx: _Context) -> None:
        module = names.dotted(node.module) if node.module is not None else ""
        level = len(node.relative)
        if level == 0 and module:
            self.model.imports.add(module.split(".")[0])
        if isinstance(node.names, cst.ImportStar):
            star = self.imported(module or "", level, None)
            if isinstance(star, Ref):
                self.model.star_imports.append(star)  # `from utils import *`: its names, when asked
            return
        for alias in node.names:
            imported = names.dotted(alias.name) or ""
            bound = (
                alias.asname.name.value
                if alias.asname and isinstance(alias.asname.name, cst.Name)
                else imported
            )
            self.bind(bound, self.imported(module or "", level, imported), ctx, event=False)

    def imported(self, module: str, level: int, name: str | None) -> Value:
        """A project module or one of its names, resolved through the project; else external."""
        project = self.model.project
        if project is not None:
            found = project.resolve_import(self.model.file, module, level, name)
            if found is not None:
                return found
        prefix = "." * level + module
        if name is None:
            return Ext(prefix)
        return Ext(f"{prefix}.{name}" if prefix and not prefix.endswith(".") else f"{prefix}{name}")

    def aug_assign(self, node: cst.AugAssign, ctx: _Context) -> None:
        term = self.expr(node.value, ctx)
        target = names.dotted(node.target)
        if isinstance(node.target, cst.Subscript):
            self.expr(node.target.slice[0].slice if node.target.slice else node.target, ctx)
        if target is None:
            return
        self.declare(target)
        if isinstance(node.operator, cst.AddAssign):
            self.accumulate(target, node.value, term, node, ctx)
        elif isinstance(node.operator, (cst.DivideAssign, cst.FloorDivideAssign)):
            self.emit(DIVIDE, target, node, ctx, var=self.var_key(target))
            divisor = frozenset(names.dotted_names(node.value)) | _literals(node.value)
            self.rebind(target, Bin("div", self.lookup(target), term, divisor), ctx)
        else:  # `loss *= weight`, `x -= y`
            self.rebind(
                target, Bin(_OPERATORS.get(type(node.operator), "other"), self.lookup(target), term), ctx
            )

    def assign(
        self, target: cst.BaseExpression, source: cst.BaseExpression, value: Value, node, ctx: _Context
    ) -> None:
        if isinstance(target, (cst.Tuple, cst.List)):
            # `a, b = x, y` pairs up; `model, opt = prepare(model, opt)` binds each to its item.
            pairs = isinstance(source, (cst.Tuple, cst.List)) and len(source.elements) == len(target.elements)
            for index, element in enumerate(target.elements):
                inner_source = source.elements[index].value if pairs else source
                inner_value = value.items[index] if pairs and isinstance(value, Tup) else Item(value, index)
                if isinstance(element, cst.StarredElement):
                    inner_value = Unknown()
                self.assign(element.value, inner_source, inner_value, node, ctx)
            return
        name = names.dotted(target)
        if name is None:
            if isinstance(target, cst.Subscript):
                self.expr(target, ctx)
            return
        self.declare(name)
        if name.endswith(".grad") and isinstance(source, cst.Name) and source.value == "None":
            self.emit(CLEAR, "*", node, ctx)
            return
        if name.endswith(".requires_grad"):
            owner = name.rsplit(".", 1)[0]
            self.emit(FREEZE, owner, node, ctx, value=self.lookup(owner), frozen=_is_false_literal(source))
        if name.endswith((".desc", ".postfix")):
            self.emit(LOG, name.rsplit(".", 1)[0], node, ctx, logged=value)  # tqdm's bar.desc = "..."
        if (
            isinstance(source, cst.BinaryOperation)
            and isinstance(source.operator, cst.Add)
            and names.dotted(source.left) == name
        ):
            term = value.right if isinstance(value, Bin) else Unknown()
            self.accumulate(name, source.right, term, node, ctx)
            return
        if _divides(source, name):
            # `total = total / n`, `total = gather(total).sum() / n`: the sum is transformed here.
            self.emit(DIVIDE, name, node, ctx, var=self.var_key(name))
        self.emit(ASSIGN, name, node, ctx, value=value, var=self.var_key(name), source=source)
        if isinstance(source, cst.Call):
            callee = names.callee_name(source)
            if callee == "Visdom":
                self.visdom_names.add(name)
            if names.is_optimizer_class(callee):
                self.emit(PARAM_GROUPS, name, source, ctx, groups=_param_groups(source), value=value)
        self.rebind(name, value, ctx)

    def accumulate(self, target: str, source: cst.BaseExpression, term: Value, node, ctx: _Context) -> None:
        before = self.lookup(target)
        binding_loops = self.bound_at.get(target, ())
        spans = len(ctx.loops) > len(binding_loops) and _is_prefix(binding_loops, ctx.loops)
        spanned = ctx.loops[len(binding_loops) :] if spans else ()
        counts = {loop.count_name or str(loop.count) for loop in spanned if loop.counted}
        window = bool(spanned) and (
            (len(counts) == len(spanned) and bool(counts & _divisor_of(term))) or _mean_term(term, spanned)
        )
        total = Accum(before, term, spans, window)
        self.emit(
            ACCUMULATE,
            target,
            node,
            ctx,
            value=total,
            var=self.var_key(target),
            term=term,
            constant=isinstance(source, (cst.Integer, cst.Float)),
            terms=_terms(source),
        )
        self.env[target] = total  # the binding's loops stay where the sum started

    # ----------------------------------------------------------------- names and variables
    def lookup(self, dotted: str) -> Value:
        """What a dotted name holds here."""
        found = self.env.get(dotted)
        if found is not None:
            return found
        if dotted.endswith("[]"):
            return Item(self.lookup(dotted[:-2]), None)
        base_name, _, last = dotted.rpartition(".")
        if base_name:
            cls = self.class_stack_for_scope()
            if base_name == "self" and cls is not None:
                return SelfAttr(f"{self.model.file}::{cls}", last)
            return Attr(self.lookup(base_name), last)
        assert self.scope is not None
        return Name(self.scope, dotted)

    def class_stack_for_scope(self) -> str | None:
        scope = self.scope
        while scope is not None and scope.class_name is None:
            scope = scope.parent
        return scope.class_name if scope is not None else None

    def var_key(self, dotted: str) -> tuple:
        """Which variable a dotted name is: the scope's own, an instance attribute, or a global."""
        assert self.scope is not None
        root = dotted.split(".", 1)[0].replace("[]", "")
        if root == "self" and self.class_stack_for_scope() is not None:
            return ("self", dotted[5:])
        if self.scope.parent is None or root in self.scope.global_names:
            return (self.model.file, dotted)
        if root not in self.scope.locals and root not in self.scope.params and root != self.scope.star:
            return (self.model.file, dotted)  # a global read inside a function
        return (self.scope.key, dotted)

    def bind(self, name: str, value: Value, ctx: _Context, event: bool = True) -> None:
        self.rebind(name, value, ctx)

    def declare(self, name: str) -> None:
        """A plain name bound in a function is the function's own (unless declared global)."""
        assert self.scope is not None
        if "." not in name and "[" not in name and self.scope.parent is not None:
            self.scope.locals.add(name)

    def rebind(self, name: str, value: Value, ctx: _Context) -> None:
        self.declare(name)
        self.env[name] = value
        self.bound_at[name] = ctx.loops
        if name.startswith("self.") and self.scope is not None and self.scope.class_name is not None:
            attr = name[5:].split(".", 1)[0]
            if "." not in name[5:]:
                self.model.self_bindings.setdefault(attr, []).append((self.scope.class_name, value))

    def bind_target(
        self, target: cst.CSTNode, value: Value, ctx: _Context, loop_target: bool = False
    ) -> None:
        if isinstance(target, (cst.Tuple, cst.List)):
            for index, element in enumerate(target.elements):
                self.bind_target(element.value, Item(value, index), ctx, loop_target)
            return
        name = names.dotted(target)
        if name is not None:
            self.rebind(name, value, ctx)

    def site(self, node: cst.CSTNode) -> tuple:
        found = self.sites.get(id(node))
        if found is None:
            found = self.sites[id(node)] = ("site", self.model.file, len(self.sites))
        return found

    def bound(self, target: cst.CSTNode) -> list[str]:
        if isinstance(target, (cst.Tuple, cst.List)):
            return [n for element in target.elements for n in self.bound(element.value)]
        name = names.dotted(target)
        return [name] if name else []

    # ----------------------------------------------------------------- expressions
    def expr(self, node: cst.CSTNode, ctx: _Context) -> Value:
        """Walk an expression, emitting its events; returns the value it computes."""
        if isinstance(node, cst.Call):
            return self.call(node, ctx)
        if isinstance(node, cst.Name) and node.value in ("None", "True", "False"):
            return Lit("none") if node.value == "None" else Lit("bool")
        if isinstance(node, (cst.Name, cst.Attribute, cst.Subscript)):
            name = names.dotted(node)
            if name is not None:
                value = self.lookup(name)
                if isinstance(node, cst.Subscript):
                    key = _literal_key(node)
                    for element in node.slice:
                        self.children(element, ctx)
                    value = Item(self.lookup(name[:-2]) if name.endswith("[]") else value, key)
                self.emit(
                    READ,
                    name,
                    node,
                    ctx,
                    divisors=ctx.divisors,
                    in_log=ctx.in_log,
                    value=value,
                    var=self.var_key(name.replace("[]", "")),
                )
                return value
            if isinstance(node, cst.Attribute):
                return Attr(self.expr(node.value, ctx), node.attr.value)
            base = self.expr(node.value, ctx)
            for element in node.slice:
                self.children(element, ctx)
            return Item(base, _literal_key(node))
        if isinstance(node, cst.BinaryOperation):
            return self.binary(node, ctx)
        if isinstance(node, (cst.Integer, cst.Float)):
            return Lit("zero" if _is_zero_literal(node) else "number")
        if isinstance(node, cst.SimpleString):
            return Lit("str")
        if isinstance(node, cst.ConcatenatedString):  # f"a {x}" f"b {y}"
            return Bin("format", Lit("str"), Tup((self.expr(node.left, ctx), self.expr(node.right, ctx))))
        if isinstance(node, cst.FormattedString):
            parts = tuple(
                self.expr(part.expression, ctx)
                for part in node.parts
                if isinstance(part, cst.FormattedStringExpression)
            )
            return Bin("format", Lit("str"), Tup(parts))
        if isinstance(node, (cst.Tuple, cst.List)):
            return Tup(tuple(self.expr(element.value, ctx) for element in node.elements))
        if isinstance(node, cst.UnaryOperation):
            operand = self.expr(node.expression, ctx)
            return operand if isinstance(node.operator, (cst.Minus, cst.Plus)) else Lit("bool")
        if isinstance(node, cst.Comparison):
            self.children(node, ctx)
            return Lit("bool")
        if isinstance(node, cst.IfExp):
            self.expr(node.test, ctx)
            return join(self.expr(node.body, ctx), self.expr(node.orelse, ctx))
        if isinstance(node, (cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp)):
            self.comprehension(node, ctx)
            return Unknown()
        if isinstance(node, cst.Lambda):
            return Unknown()
        if isinstance(node, cst.NamedExpr):
            value = self.expr(node.value, ctx)
            target = names.dotted(node.target)
            if target:
                self.rebind(target, value, ctx)
            return value
        self.children(node, ctx)
        return Unknown()

    def binary(self, node: cst.BinaryOperation, ctx: _Context) -> Value:
        operator = node.operator
        if isinstance(operator, (cst.Divide, cst.FloorDivide)):
            divisors = frozenset(names.dotted_names(node.right))
            left = self.expr(node.left, ctx.but(divisors=divisors))
            right = self.expr(node.right, ctx if ctx.divisors is None else ctx.but(divisors=None))
            return Bin("div", left, right, divisors | _literals(node.right))
        left = self.expr(node.left, ctx)
        right = self.expr(node.right, ctx)
        if isinstance(operator, cst.Modulo) and isinstance(
            node.left, (cst.SimpleString, cst.ConcatenatedString, cst.FormattedString)
        ):
            return Bin("format", left, right)
        return Bin(_OPERATORS.get(type(operator), "other"), left, right)

    def comprehension(self, node, ctx: _Context) -> None:
        loops = ctx.loops
        clause = node.for_in
        while clause is not None:
            self.expr(clause.iter, ctx.but(loops=loops))
            loops = loops + (
                Loop(
                    node, tuple(self.bound(clause.target)), frozenset(), "the comprehension", "comprehension"
                ),
            )
            clause = clause.inner_for_in
        inner = ctx.but(loops=loops)
        if isinstance(node, cst.DictComp):
            self.expr(node.key, inner)
            self.expr(node.value, inner)
        else:
            self.expr(node.elt, inner)

    def _is_visdom(self, name: str) -> bool:
        """`viz` holds a `visdom.Visdom()`: its plots are logs. (Known by the assignment, since a
        function reading a global sees only its name while the module is being walked.)"""
        return name in self.visdom_names

    def children(self, node: cst.CSTNode, ctx: _Context) -> None:
        for child in names.child_nodes(node):
            self.expr(child, ctx)

    def call(self, node: cst.Call, ctx: _Context) -> Value:
        func = node.func
        method = func.attr.value if isinstance(func, cst.Attribute) else None
        receiver = names.dotted(func.value) if isinstance(func, cst.Attribute) else None
        is_log = names.is_log_call(node) or (
            method in vocabulary.VISDOM_PLOTS and receiver is not None and self._is_visdom(receiver)
        )
        arg_ctx = (
            ctx
            if ctx.divisors is None and (ctx.in_log or not is_log)
            else ctx.but(in_log=ctx.in_log or is_log, divisors=None)
        )
        receiver_value: Value | None = None
        if isinstance(func, cst.Attribute) and receiver is None:
            receiver_value = self.expr(func.value, ctx if ctx.divisors is None else ctx.but(divisors=None))
        elif receiver is not None:
            receiver_value = self.lookup(receiver)
            if method not in ("step", "zero_grad", "backward"):
                self.emit(
                    READ,
                    receiver,
                    func.value,
                    ctx,
                    divisors=ctx.divisors,
                    in_log=ctx.in_log,
                    method=method,
                    value=receiver_value,
                    var=self.var_key(receiver.replace("[]", "")),
                )
        args = tuple(self.expr(a.value, arg_ctx) for a in node.args if a.keyword is None and not a.star)
        kwargs = tuple(
            (a.keyword.value, self.expr(a.value, arg_ctx)) for a in node.args if a.keyword is not None
        )
        for a in node.args:
            if a.keyword is None and a.star:
                self.expr(a.value, arg_ctx)
        func_name = names.dotted(func)
        if func_name is not None:
            func_value: Value = self.lookup(func_name)
        elif isinstance(func, cst.Attribute):
            func_value = Attr(receiver_value if receiver_value is not None else Unknown(), method)
        else:
            func_value = self.expr(func, ctx)
        value = Call(func_value, args, kwargs, self.site(node), ctx.no_grad, names.dotted(func))
        if names.is_optimizer_class(names.callee_name(node)):
            self.model.constructions[self.site(node)] = node
            groups = _param_groups(node)
            self.emit(
                CREATE,
                func_name,
                node,
                ctx,
                value=value,
                sources=frozenset(s for group in groups for s in group if s),
                source_names=frozenset(names.dotted_names(node.args[0].value)) if node.args else frozenset(),
                **self._source_roots(node),
            )
        positional = [a.value for a in node.args if a.keyword is None and not a.star]
        arg_names = [names.dotted(a.value) for a in node.args]
        callee_name = names.callee_name(node)
        # `isinstance(updater, torch.optim.Optimizer)`: in this scope, `updater` is an optimizer
        if callee_name == "isinstance" and len(arg_names) == 2 and arg_names[0] and arg_names[1]:
            checked, kind = arg_names
            if kind.rsplit(".", 1)[-1] == "Optimizer":
                self.model.checked_optimizers.add((self.scope.key, checked))

        if method == "backward" and receiver is not None and receiver.endswith("dist_autograd"):
            pass  # distributed autograd keeps gradients per context: nothing accumulates in .grad
        elif method in ("backward", "manual_backward"):
            target: Value | None
            if (
                receiver is not None
                and positional
                and method == "backward"
                and receiver not in ("torch.autograd", "autograd")
            ):
                self.model.engines.add(receiver)  # accelerator.backward(loss), engine.backward(loss)
                loss, target = _first_name(positional[0]), args[0]
            elif (
                positional
                and method == "manual_backward"
                or receiver in ("torch.autograd", "autograd")
                and positional
            ):
                loss, target = _first_name(positional[0]), args[0]
            else:
                loss = _first_name(func.value) if isinstance(func, cst.Attribute) else None
                target = receiver_value
            self.model.mark_backward(target)
            scaled = (
                isinstance(func, cst.Attribute)
                and isinstance(func.value, cst.Call)
                and isinstance(func.value.func, cst.Attribute)
                and func.value.func.attr.value == "scale"
            )
            self.emit(
                BACKWARD,
                loss,
                node,
                ctx,
                engine=receiver if positional else None,
                value=target,
                scaler=names.dotted(func.value.func.value) if scaled else None,
            )
        elif method == "zero_grad":
            if receiver is not None:
                self.model.cleared.add(receiver)
            self.emit(CLEAR, receiver or "*", node, ctx, value=receiver_value)
        elif method is None and callee_name in names.CLEAR_FUNCTIONS:
            self.emit(CLEAR, "*", node, ctx)  # an imported `zero_grad(model_params)` helper
        elif method == "clear_grad" and receiver is not None:
            self.model.cleared.add(receiver)
            self.emit(CLEAR, receiver, node, ctx, value=receiver_value)
        elif (
            method in ("zero_", "fill_")
            and receiver is not None
            and receiver.endswith((".grad", ".grad.data"))
        ):
            self.emit(CLEAR, "*", node, ctx)
        elif method == "step":
            if receiver is not None and names.looks_like_scaler(receiver) and positional:
                stepped = names.dotted(positional[0])
                if stepped:
                    self.model.scaler_stepped.add(stepped)
                    self.emit(STEP, stepped, node, ctx, via_scaler=True, args=(), value=args[0])
                return value
            if positional and isinstance(positional[0], (cst.Name, cst.Lambda)):
                # opt.step(closure): the closure runs inside the step (LBFGS).
                closure = positional[0]
                if isinstance(closure, cst.Name):
                    self.emit(CALL, closure.value, node, ctx, args=(), value=args[0], call=value)
            if receiver is not None:
                self.model.stepped.add(receiver)
            self.emit(
                STEP,
                receiver,
                node,
                ctx,
                args=tuple(positional) + tuple(a.value for a in node.args if a.keyword),
                has_args=bool(node.args),
                value=receiver_value,
            )
        elif method in names.WRITER_METHODS and receiver is not None:
            self.emit(WRITE, receiver, node, ctx, method=method, value=receiver_value, call=value)
            if is_log:
                self.emit(LOG, receiver, node, ctx, value=receiver_value)
        elif method == "close" and receiver is not None:
            self.emit(CLOSE, receiver, node, ctx, value=receiver_value)
        elif method == "add_param_group" and receiver is not None:
            groups = [_group_from_expr(positional[0])] if positional else []
            self.emit(PARAM_GROUPS, receiver, node, ctx, groups=groups, added=True, value=receiver_value)
        elif callee_name in ("clip_grad_norm_", "clip_grad_value_", "clip_grad_norm", "clip_grad_value"):
            self.emit(CLIP, names.dotted(func), node, ctx, args=args, value=func_value)
        elif method == "unscale_" and receiver is not None:
            self.emit(UNSCALE, receiver, node, ctx, value=args[0] if args else None)
        elif method in ("train", "eval") and isinstance(func, cst.Attribute) and _module_root(func.value):
            # `model.train()`, also `model.to(device).train()`
            training = method == "train" and not (positional and _is_false_literal(positional[0]))
            self.emit(MODE, _module_root(func.value), node, ctx, training=training, value=receiver_value)
        elif method == "requires_grad_" and receiver is not None:
            frozen = bool(positional) and _is_false_literal(positional[0])
            self.emit(FREEZE, receiver, node, ctx, value=receiver_value, frozen=frozen)
        elif method == "append" and receiver is not None and args:
            self.emit(
                APPEND, receiver, node, ctx, value=args[0], var=self.var_key(receiver.replace("[]", ""))
            )
        elif is_log:
            self.emit(LOG, receiver, node, ctx, value=receiver_value)
        else:
            self.emit(
                CALL,
                func_name,
                node,
                ctx,
                args=tuple(a for a in arg_names if a),
                # positional arguments as plain names (None for anything else), which a call
                # bound from another module's summary has no node to read them from
                positional_names=tuple(
                    names.dotted(a.value) for a in node.args if a.keyword is None and not a.star
                ),
                value=func_value,
                call=value,
            )
        return value

    # ----------------------------------------------------------------- helpers
    def _source_roots(self, node: cst.Call) -> dict[str, frozenset[str]]:
        """For an optimizer built inside a function: which roots of its parameters' expression are
        the function's parameters and which its own locals, so that a caller of the function can
        tell what the optimizer is built over."""
        scope = self.scope
        if scope is None or scope.parent is None or not node.args:
            return {}
        roots = {name.split(".", 1)[0].removesuffix("[]") for name in names.dotted_names(node.args[0].value)}
        return {
            "param_roots": frozenset(root for root in roots if root in scope.params),
            "local_roots": frozenset(
                root for root in roots if root in scope.locals and root not in scope.params
            ),
        }

    def emit(self, kind: str, name: str | None, node: cst.CSTNode, ctx: _Context, **data) -> Event:
        assert self.scope is not None
        value = data.pop("value", None)
        var = data.pop("var", None)
        event = Event(
            kind,
            name,
            node,
            ctx.statement,
            ctx.loops,
            ctx.branches,
            ctx.no_grad,
            ctx.periodic,
            self.scope,
            data,
            value,
            var,
        )
        self.scope.events.append(event)
        return event


_OPERATORS = {
    cst.MultiplyAssign: "mul",
    cst.SubtractAssign: "sub",
    cst.PowerAssign: "pow",
    cst.Add: "add",
    cst.Subtract: "sub",
    cst.Multiply: "mul",
    cst.MatrixMultiply: "mul",
    cst.Divide: "div",
    cst.FloorDivide: "div",
    cst.Power: "pow",
    cst.Modulo: "mod",
}


def _is_prefix(short: tuple, long: tuple) -> bool:
    return len(short) <= len(long) and all(a is b for a, b in zip(short, long, strict=False))


def _target_text(target: cst.CSTNode) -> str:
    """How a loop's target reads in a message: `i, (images, labels)`."""
    if isinstance(target, (cst.Tuple, cst.List)):
        parts = []
        for element in target.elements:
            inner = element.value
            text = _target_text(inner)
            parts.append(f"({text})" if isinstance(inner, (cst.Tuple, cst.List)) else text)
        return ", ".join(parts)
    return names.dotted(target) or "..."


def _range_count(iterable: cst.BaseExpression) -> tuple[int | None, bool, str | None]:
    """`range(5)` -> (5, True, None); `range(n)` -> (None, True, 'n'); else (None, False, None)."""
    if (
        isinstance(iterable, cst.Call)
        and isinstance(iterable.func, cst.Name)
        and iterable.func.value == "range"
        and len(iterable.args) == 1
    ):
        argument = iterable.args[0].value
        if isinstance(argument, cst.Integer):
            return int(argument.value.replace("_", ""), 0), True, None
        return None, True, names.dotted(argument)
    return None, False, None


def _literal_key(node: cst.Subscript) -> int | str | None:
    if len(node.slice) != 1 or not isinstance(node.slice[0].slice, cst.Index):
        return None
    key = node.slice[0].slice.value
    if isinstance(key, cst.Integer):
        return int(key.value, 0)
    if (
        isinstance(key, cst.UnaryOperation)
        and isinstance(key.operator, cst.Minus)
        and isinstance(key.expression, cst.Integer)
    ):
        return -int(key.expression.value, 0)
    if isinstance(key, cst.SimpleString):
        evaluated = key.evaluated_value
        return evaluated if isinstance(evaluated, str) else None
    return None


def _terms(value: cst.BaseExpression) -> list[cst.CSTNode]:
    """The nodes of an accumulated expression that are themselves values (for the fix)."""
    return [value]


def _is_abstract(function: cst.CSTNode) -> bool:
    """A body of only a docstring, `pass`, `...` or `raise NotImplementedError`."""
    body = getattr(getattr(function, "body", None), "body", ())
    for statement in body:
        if not isinstance(statement, cst.SimpleStatementLine):
            return False
        for small in statement.body:
            if isinstance(small, cst.Pass):
                continue
            if isinstance(small, cst.Expr) and isinstance(small.value, (cst.SimpleString, cst.Ellipsis)):
                continue
            if isinstance(small, cst.Raise) and "NotImplementedError" in (
                names.dotted_names(small.exc) if small.exc else []
            ):
                continue
            return False
    return True


def _divides(value: cst.BaseExpression, name: str) -> bool:
    """`total = total / n`, `total = gather(total).sum() / n`."""
    if not (
        isinstance(value, cst.BinaryOperation) and isinstance(value.operator, (cst.Divide, cst.FloorDivide))
    ):
        return False
    return name in names.dotted_names(value.left)


def _first_name(node: cst.CSTNode) -> str | None:
    """The loss a backward is about: `(loss / k).backward()` -> 'loss', `scaler.scale(l)` -> 'l'."""
    if isinstance(node, (cst.Name, cst.Attribute)):
        return names.dotted(node)
    if isinstance(node, cst.Call):
        if isinstance(node.func, cst.Attribute) and node.func.attr.value in ("mean", "sum"):
            return _first_name(node.func.value)
        for arg in node.args:
            found = _first_name(arg.value)
            if found:
                return found
        return None
    if isinstance(node, cst.BinaryOperation):
        return _first_name(node.left) or _first_name(node.right)
    return None


def _is_false(call: cst.Call) -> bool:
    return bool(call.args) and _is_false_literal(call.args[0].value)


def _is_false_literal(node: cst.CSTNode) -> bool:
    return isinstance(node, cst.Name) and node.value == "False"


def _is_zero_literal(node: cst.CSTNode) -> bool:
    if isinstance(node, cst.Integer):
        return node.value.replace("_", "") in ("0", "0x0", "0o0", "0b0")
    if isinstance(node, cst.Float):
        try:
            return float(node.value.replace("_", "")) == 0.0
        except ValueError:
            return False
    return False


def _periodic_counters(test: cst.BaseExpression) -> tuple[list[str], list[cst.BaseExpression]]:
    """Counters tested by `x % N == 0`, `(x + 1) % N == 0`, `not x % N`, and their periods N."""
    counters: list[str] = []
    moduli: list[cst.BaseExpression] = []

    def visit(node: cst.CSTNode) -> None:
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Modulo):
            if not isinstance(node.left, (cst.SimpleString, cst.ConcatenatedString, cst.FormattedString)):
                _counter_names(node.left, counters)
                moduli.append(node.right)
            return
        if isinstance(node, cst.Call):
            return
        for child in names.child_nodes(node):
            visit(child)

    visit(test)
    return counters, moduli


def _counter_names(node: cst.CSTNode, found: list[str]) -> None:
    if isinstance(node, (cst.Name, cst.Attribute)):
        name = names.dotted(node)
        if name:
            found.append(name)
        return
    if isinstance(node, cst.Call):
        return
    for child in names.child_nodes(node):
        _counter_names(child, found)


def _param_groups(call: cst.Call) -> list[list[str | None]]:
    """Sources of each parameter group: `[{'params': model.fc.parameters()}, ...]` -> [['model.fc']]."""
    params = None
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "params":
            params = arg.value
            break
        if arg.keyword is None and not arg.star:
            params = arg.value
            break
    if params is None:
        return []
    if isinstance(params, (cst.List, cst.Tuple)) and any(
        isinstance(e.value, cst.Dict) for e in params.elements
    ):
        return [_group_from_expr(e.value) for e in params.elements]
    return [_group_from_expr(params)]


def _group_from_expr(node: cst.CSTNode) -> list[str | None]:
    if isinstance(node, cst.Dict):
        for element in node.elements:
            if (
                isinstance(element, cst.DictElement)
                and isinstance(element.key, cst.SimpleString)
                and element.key.evaluated_value == "params"
            ):
                return _param_sources(element.value)
        return [None]
    return _param_sources(node)


def _param_sources(node: cst.CSTNode) -> list[str | None]:
    """`model.fc.parameters()` -> ['model.fc']; `[m.w, m.b]` -> ['m.w', 'm.b']; unknown -> [None]."""
    if isinstance(node, cst.Call):
        callee = names.callee_name(node)
        if callee in ("parameters", "named_parameters") and isinstance(node.func, cst.Attribute):
            return [_module_path(node.func.value)]
        if callee in ("list", "tuple", "chain") and node.args:
            return [s for arg in node.args for s in _param_sources(arg.value)]
        return [None]
    if isinstance(node, (cst.List, cst.Tuple)):
        return [s for element in node.elements for s in _param_sources(element.value)]
    if isinstance(node, (cst.Attribute, cst.Name, cst.Subscript)):
        return [_module_path(node)]
    return [None]


def _module_path(node: cst.CSTNode) -> str | None:
    """`model.blocks[0].fc` -> 'model.blocks[0].fc'; None when an index is not a literal."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = _module_path(node.value)
        return None if base is None else f"{base}.{node.attr.value}"
    if (
        isinstance(node, cst.Subscript)
        and len(node.slice) == 1
        and isinstance(node.slice[0].slice, cst.Index)
    ):
        index = node.slice[0].slice.value
        base = _module_path(node.value)
        if base is not None and isinstance(index, (cst.Integer, cst.SimpleString)):
            return f"{base}[{index.value}]"
    return None


def _parameters_of(iterable: cst.BaseExpression) -> str | None:
    """`model.fc.parameters()` / `model.named_parameters()` -> 'model.fc' / 'model'."""
    if (
        isinstance(iterable, cst.Call)
        and isinstance(iterable.func, cst.Attribute)
        and iterable.func.attr.value in ("parameters", "named_parameters")
    ):
        return _module_path(iterable.func.value)
    return None


def _literals(node: cst.BaseExpression) -> frozenset[str]:
    """The integer literals of an expression, as written (`4` in `/ 4`)."""
    if isinstance(node, cst.Integer):
        return frozenset({str(int(node.value.replace("_", ""), 0))})
    return frozenset()


def _divisor_of(value: Value) -> frozenset[str]:
    """How the division a value went through was written: `(loss / k).item()` -> {'k'}."""
    value = peeled(value)
    return value.divisor if isinstance(value, Bin) and value.op == "div" else frozenset()


def _mean_term(term: Value, spanned: tuple[Loop, ...]) -> bool:
    """Terms that make the sum a mean: each divided by the length of what the loop runs over
    (`loss.item() / len(loader)`), or a product divided by a total (`loss.item() * n / total`).
    (A term weighted by a fraction that is not the loss, `loss * (w / w_sum)`, is told apart once
    values are known: `Evaluator._accumulated`.)"""
    divisor = _divisor_of(term)
    if "len" in divisor and any(divisor & loop.iter_names for loop in spanned):
        return True
    term = peeled(term)
    if not (isinstance(term, Bin) and term.op == "div"):
        return False
    numerator = peeled(term.left)
    return isinstance(numerator, Bin) and numerator.op == "mul"


def _module_root(node: cst.BaseExpression) -> str | None:
    """The module a chain of calls on it starts from: `model.to(device)` -> 'model'."""
    while isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        node = node.func.value
    return names.dotted(node)


_MODE_WORDS = ("dropout", "batch_norm", "batchnorm", "instance_norm", "instancenorm")


def _built_layers(node: cst.ClassDef) -> frozenset[str]:
    """What the class's `__init__` builds, and the dropout or normalization its other methods
    call (`F.dropout(x, p)`); weight initialization helpers and calls of its own layers aside."""
    found: set[str] = set()
    for statement in node.body.body if isinstance(node.body, cst.IndentedBlock) else ():
        constructor = isinstance(statement, cst.FunctionDef) and statement.name.value == "__init__"
        stack: list[cst.CSTNode] = [statement]
        while stack:
            current = stack.pop()
            if isinstance(current, cst.Call) and not (names.dotted(current.func) or "").startswith("self."):
                callee = names.callee_name(current)
                if callee is not None and not callee.startswith("_"):
                    lowered = callee.lower()
                    if constructor or any(word in lowered for word in _MODE_WORDS):
                        found.add(callee)
            stack.extend(names.child_nodes(current))
    return frozenset(found)
