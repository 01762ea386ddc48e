"""The training-loop model: one pass over the CST, per scope, of what happens in which loop.

A scope (the module, each function and method) becomes an ordered list of `Event`s. Every event
knows the loops around it, the `if` branches it sits in, whether it runs under `torch.no_grad()`,
and whether it sits under a step-periodic test (`if step % 100 == 0`). Calls to functions and
methods of the same module are recorded as `call` events and spliced in by `Model.events(scope)`,
so a loop that calls `train_one_epoch(...)` or `self.train_step(...)` sees what happens inside.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import libcst as cst

from looplint.static import names

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
PERIODIC = "periodic"  # if counter % N ...: names of the counters
CALL = "call"  # a call that may be a helper of this module; spliced in by Model.events
PARAM_GROUPS = "param_groups"  # optimizer construction or add_param_group: the group sources
JUMP = "jump"  # break / continue / return: what follows in the block does not run
GUARD = "guard"  # `if x == y:`: the names compared (`if epoch == epochs - 1`)

INLINE_DEPTH = 4
_ZERO_CALLS = frozenset({"zeros", "zeros_like", "tensor", "scalar_tensor"})
_DETACHING = frozenset({"item", "detach", "tolist", "numpy", "float", "int", "cpu"})


@dataclass(eq=False)
class Loop:
    node: cst.CSTNode
    targets: tuple[str, ...]  # names the loop binds (`for i, batch in ...`), in order
    iter_names: frozenset[str]  # dotted names read by the iterable (`for w in writers`)


@dataclass(eq=False)
class Event:
    kind: str
    name: str | None  # the dotted name the event is about (optimizer, accumulator, writer, ...)
    node: cst.CSTNode  # where to report
    statement: cst.CSTNode | None  # the enclosing statement (SimpleStatementLine or compound)
    loops: tuple[Loop, ...]
    branches: tuple[tuple[int, int], ...]  # (id of the if/match, branch index)
    no_grad: bool
    periodic: bool
    scope: Scope
    data: dict = field(default_factory=dict)

    def in_loop(self, loop: Loop) -> bool:
        return any(candidate is loop for candidate in self.loops)

    def exclusive_with(self, other: Event) -> bool:
        """True when the two sit in different branches of the same `if`: both never run together."""
        mine = dict(self.branches)
        return any(key in mine and mine[key] != index for key, index in other.branches)


@dataclass(eq=False)
class Scope:
    node: cst.CSTNode
    name: str
    class_name: str | None
    parent: Scope | None
    no_grad: bool = False
    events: list[Event] = field(default_factory=list)
    local_functions: dict[str, Scope] = field(default_factory=dict)


class _Context:
    """Where the walk is: enclosing loops and branches, and flags. Copied, never mutated."""

    __slots__ = ("loops", "branches", "no_grad", "periodic", "statement", "in_log", "divisors")

    def __init__(self, no_grad: bool = False) -> None:
        self.loops: tuple[Loop, ...] = ()
        self.branches: tuple[tuple[int, int], ...] = ()
        self.no_grad = no_grad
        self.periodic = False
        self.statement: cst.CSTNode | None = None
        self.in_log = False
        self.divisors: frozenset[str] | None = None  # set while reading a numerator of `/`

    def but(self, **changes) -> _Context:
        """A copy with some fields changed (cheaper than dataclasses.replace on a hot path)."""
        copy = _Context.__new__(_Context)
        for slot in _Context.__slots__:
            setattr(copy, slot, changes.get(slot, getattr(self, slot)))
        return copy


class Model:
    """Everything the rules need about one module."""

    def __init__(self, module: cst.Module) -> None:
        self.module = module
        self.scopes: list[Scope] = []
        self.functions: dict[str, Scope] = {}  # module-level functions
        self.methods: dict[tuple[str, str], Scope] = {}  # (class, method)
        self.class_bases: dict[str, list[str]] = {}  # class -> names of its bases in this file
        # Where each statement sits, for fixes: statement -> (owner of the body, index in it).
        self.block_of: dict[cst.CSTNode, tuple[cst.CSTNode, int]] = {}
        self.parent_statement: dict[cst.CSTNode, cst.CSTNode] = {}
        self.optimizers: dict[str, list[Event]] = {}  # constructed optimizers
        self.schedulers: dict[str, list[Event]] = {}
        self.writers: set[str] = set()
        self.engines: set[str] = set()  # receivers of X.backward(loss): Accelerate, DeepSpeed
        self.cleared: set[str] = set()  # receivers of X.zero_grad()
        self.stepped: set[str] = set()  # receivers of X.step()
        self.scaler_stepped: set[str] = set()  # X in scaler.step(X)
        self.loss_tensors: set[str] = set()  # names bound to a loss computation or backwarded
        self.imports: set[str] = set()  # top-level package of every import (`torch`, `mxnet`)
        self.loss_accumulators: set[str] = set()  # names that get `+= <loss>`
        self._aliases: dict[str, set[str]] = {}  # `opt = self.optimizer`: both name one object
        self._expanded: dict[int, list[Event]] = {}
        self._call_sites: dict[int, list[Event]] | None = None
        _Builder(self).build(module)

    def role(self, name: str | None) -> str | None:
        """'optimizer', 'scheduler', 'engine' or None (e.g. `env.step()`) for a `.step()` receiver."""
        if name is None:
            return None
        if name in self.schedulers or (name not in self.optimizers and names.looks_like_scheduler(name)):
            return "scheduler"
        if name in self.optimizers or name in self.scaler_stepped:
            return "optimizer"
        if name in self.engines:
            return "engine"
        if names.looks_like_optimizer(name) or (name in self.cleared and name in self.stepped):
            return "optimizer"
        return None

    def events(self, scope: Scope) -> list[Event]:
        """The scope's events with same-module helper calls spliced in (cached)."""
        cached = self._expanded.get(id(scope))
        if cached is None:
            cached = list(self._expand(scope, (), 0))
            self._expanded[id(scope)] = cached
        return cached

    def _expand(self, scope: Scope, stack: tuple[Scope, ...], depth: int) -> Iterator[Event]:
        for event in scope.events:
            if event.kind != CALL:
                yield event
                continue
            callee = self.resolve(event)
            if callee is None or callee in stack or depth >= INLINE_DEPTH:
                yield event
                continue
            plain_call = not (event.loops or event.branches or event.no_grad or event.periodic)
            for inner in self._expand(callee, (*stack, scope), depth + 1):
                if plain_call:
                    yield inner  # nothing around the call to add
                    continue
                yield Event(
                    inner.kind,
                    inner.name,
                    inner.node,
                    inner.statement,
                    event.loops + inner.loops,
                    event.branches + inner.branches,
                    event.no_grad or inner.no_grad,
                    event.periodic or inner.periodic,
                    inner.scope,
                    inner.data,
                )

    def resolve(self, call: Event) -> Scope | None:
        target = call.name or ""
        if target.startswith("self.") and target.count(".") == 1:
            return self._method(call.scope.class_name, target[5:])
        if "." in target:
            return None
        scope: Scope | None = call.scope
        while scope is not None:
            if target in scope.local_functions:
                return scope.local_functions[target]
            scope = scope.parent
        return self.functions.get(target)

    def _method(self, cls: str | None, name: str) -> Scope | None:
        """`self.name()` in class `cls`: its own method, or the one override in a subclass when its
        own is abstract (a base-class loop calling `self.run_step()`), or an inherited one."""
        if cls is None:
            return None
        own = self.methods.get((cls, name))
        if own is None or _is_abstract(own.node):
            overrides = [
                scope
                for (other, method), scope in self.methods.items()
                if method == name and cls in self.class_bases.get(other, ())
            ]
            if len(overrides) == 1:
                return overrides[0]
        if own is not None:
            return own
        for base in self.class_bases.get(cls, ()):
            inherited = self.methods.get((base, name))
            if inherited is not None:
                return inherited
        return None

    def add_alias(self, name: str, other: str | None) -> None:
        if other is None or other == name:
            return
        group = self._aliases.get(name, {name}) | self._aliases.get(other, {other})
        for member in group:
            self._aliases[member] = group

    def same(self, a: str | None, b: str | None) -> bool:
        """Do the two names refer to one object (`optimizer = self.optimizer`)?"""
        return a == b or (a is not None and b in self._aliases.get(a, ()))

    def call_sites(self, scope: Scope) -> list[Event]:
        """The calls of this module that resolve to the scope (a helper or method)."""
        if self._call_sites is None:
            self._call_sites = {}
            for caller in self.scopes:
                for event in caller.events:
                    if event.kind == CALL:
                        callee = self.resolve(event)
                        if callee is not None:
                            self._call_sites.setdefault(id(callee), []).append(event)
        return self._call_sites.get(id(scope), [])

    def models_of(self, optimizer: str) -> set[str]:
        """Names whose parameters the optimizer was built from (`SGD(model.parameters())`)."""
        models: set[str] = set()
        for event in self.optimizers.get(optimizer, []):
            for source in event.data.get("sources", []):
                if source is not None:
                    models.add(source)
        return models


class _Builder:
    """Walks the CST once. Statements are walked by hand; expressions by a cached field walk."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.scope: Scope | None = None

    # ----------------------------------------------------------------- statements
    def build(self, module: cst.Module) -> None:
        root = Scope(module, "<module>", None, None)
        self.model.scopes.append(root)
        self.scope = root
        self.block(module, module.body, _Context(), None)

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
            self.expr(node.iter, ctx)
            loop = Loop(node, tuple(self.bound(node.target)), frozenset(names.dotted_names(node.iter)))
            self.suite(node.body, ctx.but(loops=ctx.loops + (loop,)))
            if node.orelse is not None:
                self.suite(node.orelse.body, ctx)
        elif isinstance(node, cst.While):
            loop = Loop(node, (), frozenset())
            inner = ctx.but(loops=ctx.loops + (loop,))
            self.expr(node.test, inner)
            self.suite(node.body, inner)
            if node.orelse is not None:
                self.suite(node.orelse.body, ctx)
        elif isinstance(node, cst.With):
            no_grad = ctx.no_grad
            for item in node.items:
                self.expr(item.item, ctx)
                call = item.item
                if isinstance(call, cst.Call):
                    callee = names.callee_name(call)
                    if callee in names.NO_GRAD_CONTEXTS or (callee == "set_grad_enabled" and _is_false(call)):
                        no_grad = True
                    if callee in names.WRITER_CLASSES and item.asname is not None:
                        target = names.dotted(item.asname.name)
                        if target:
                            self.model.writers.add(target)
            self.suite(node.body, ctx.but(no_grad=no_grad))
        elif isinstance(node, (cst.Try, cst.TryStar)):
            self.suite(node.body, ctx)
            for handler in node.handlers:
                self.suite(handler.body, ctx)
            if node.orelse is not None:
                self.suite(node.orelse.body, ctx)
            if node.finalbody is not None:
                self.suite(node.finalbody.body, ctx)
        elif isinstance(node, cst.FunctionDef):
            self.function(node, class_name)
        elif isinstance(node, cst.ClassDef):
            bases = [names.dotted(arg.value) for arg in node.bases]
            self.model.class_bases[node.name.value] = [b.rsplit(".", 1)[-1] for b in bases if b]
            self.suite(node.body, _Context(), node.name.value)
        elif isinstance(node, cst.Match):
            self.expr(node.subject, ctx)
            for index, case in enumerate(node.cases):
                self.suite(
                    case.body,
                    ctx.but(branches=ctx.branches + ((id(node), index),)),
                )

    def if_(self, node: cst.If, ctx: _Context) -> None:
        self.expr(node.test, ctx)
        test = node.test
        if isinstance(test, cst.Comparison) and any(
            isinstance(t.operator, cst.Equal) for t in test.comparisons
        ):
            compared = {names.dotted(test.left)} | {names.dotted(t.comparator) for t in test.comparisons}
            self.emit(GUARD, None, node, ctx, compared=frozenset(compared - {None}), branch=(id(node), 0))
        counters = _periodic_counters(node.test)
        if counters:
            self.emit(PERIODIC, None, node, ctx, counters=counters)
        body_ctx = ctx.but(branches=ctx.branches + ((id(node), 0),), periodic=ctx.periodic or bool(counters))
        self.suite(node.body, body_ctx)
        if node.orelse is not None:
            else_ctx = ctx.but(branches=ctx.branches + ((id(node), 1),))
            if isinstance(node.orelse, cst.If):
                self.if_(node.orelse, else_ctx)
            else:
                self.suite(node.orelse.body, else_ctx)

    def function(self, node: cst.FunctionDef, class_name: str | None) -> None:
        parent = self.scope
        assert parent is not None
        no_grad = any(names.is_no_grad_decorator(d.decorator) for d in node.decorators)
        scope = Scope(node, node.name.value, class_name, parent, no_grad=no_grad)
        self.model.scopes.append(scope)
        if class_name is not None:
            self.model.methods[(class_name, node.name.value)] = scope
        elif parent.node is self.model.module:
            self.model.functions[node.name.value] = scope
        else:
            parent.local_functions[node.name.value] = scope
        self.scope = scope
        self.suite(node.body, _Context(no_grad=no_grad))
        self.scope = parent

    # ----------------------------------------------------------------- small statements
    def small(self, node: cst.BaseSmallStatement, ctx: _Context) -> None:
        if isinstance(node, cst.Assign):
            self.expr(node.value, ctx)
            for target in node.targets:
                self.assign(target.target, node.value, node, ctx)
        elif isinstance(node, cst.AnnAssign):
            if node.value is not None:
                self.expr(node.value, ctx)
                self.assign(node.target, node.value, node, ctx)
        elif isinstance(node, cst.AugAssign):
            self.expr(node.value, ctx)
            target = names.dotted(node.target)
            if isinstance(node.target, cst.Subscript):
                self.expr(node.target.slice[0].slice if node.target.slice else node.target, ctx)
            if target is None:
                return
            if isinstance(node.operator, cst.AddAssign):
                self.accumulate(target, node.value, node, ctx)
            elif isinstance(node.operator, (cst.DivideAssign, cst.FloorDivideAssign)):
                self.emit(DIVIDE, target, node, ctx)
        elif isinstance(node, cst.Expr):
            self.expr(node.value, ctx)
        elif isinstance(node, cst.Import):
            for alias in node.names:
                self.model.imports.add((names.dotted(alias.name) or "").split(".")[0])
        elif isinstance(node, cst.ImportFrom) and node.module is not None and not node.relative:
            self.model.imports.add((names.dotted(node.module) or "").split(".")[0])
        elif isinstance(node, (cst.Return, cst.Raise, cst.Assert, cst.Del)):
            for name in ("value", "exc", "test", "target"):
                child = getattr(node, name, None)
                if isinstance(child, cst.CSTNode):
                    self.expr(child, ctx)
            if isinstance(node, cst.Return):
                self.emit(JUMP, "return", node, ctx)
        elif isinstance(node, (cst.Break, cst.Continue)):
            self.emit(JUMP, "break" if isinstance(node, cst.Break) else "continue", node, ctx)

    def assign(self, target: cst.BaseExpression, value: cst.BaseExpression, node, ctx: _Context) -> None:
        if isinstance(target, (cst.Tuple, cst.List)):
            # `a, b = x, y` pairs up; `model, opt = prepare(model, opt)` binds each to the call.
            pairs = isinstance(value, (cst.Tuple, cst.List)) and len(value.elements) == len(target.elements)
            for index, element in enumerate(target.elements):
                self.assign(element.value, value.elements[index].value if pairs else value, node, ctx)
            return
        name = names.dotted(target)
        if name is None:
            if isinstance(target, cst.Subscript):
                self.expr(target, ctx)
            return
        if name.endswith(".grad") and isinstance(value, cst.Name) and value.value == "None":
            self.emit(CLEAR, "*", node, ctx)
            return
        if (
            isinstance(value, cst.BinaryOperation)
            and isinstance(value.operator, cst.Add)
            and names.dotted(value.left) == name
        ):
            self.accumulate(name, value.right, node, ctx)
            return
        kind = _value_kind(value)
        if kind == "alias":
            self.model.add_alias(name, names.dotted(value))
        if _divides(value, name):
            # `total = total / n`, `total = gather(total).sum() / n`: the sum is transformed here.
            self.emit(DIVIDE, name, node, ctx)
        event = self.emit(ASSIGN, name, node, ctx, value=value, value_kind=kind, divided=_has_division(value))
        if isinstance(value, cst.Call):
            callee = names.callee_name(value)
            if names.is_optimizer_class(callee):
                self.model.optimizers.setdefault(name, []).append(event)
                event.data["sources"] = _param_group_sources(value)
                self.emit(PARAM_GROUPS, name, value, ctx, groups=_param_groups(value))
            elif names.is_scheduler_class(callee, value) and name != "_":
                self.model.schedulers.setdefault(name, []).append(event)
            elif callee in names.WRITER_CLASSES:
                self.model.writers.add(name)
        if kind == "loss":
            self.model.loss_tensors.add(name)

    def accumulate(self, target: str, value: cst.BaseExpression, node, ctx: _Context) -> None:
        raw, any_loss = _loss_terms(value, self.model.loss_tensors)
        if any_loss:
            self.model.loss_accumulators.add(target)
        self.emit(
            ACCUMULATE,
            target,
            node,
            ctx,
            value=value,
            raw_loss_terms=raw,
            loss_term=any_loss,
            divided=_has_division(value),
            variables=_variables(value),
            constant=isinstance(value, (cst.Integer, cst.Float)),
        )

    # ----------------------------------------------------------------- expressions
    def expr(self, node: cst.CSTNode, ctx: _Context) -> None:
        if isinstance(node, cst.Call):
            self.call(node, ctx)
        elif isinstance(node, (cst.Name, cst.Attribute, cst.Subscript)):
            name = names.dotted(node)
            if name is not None:
                self.emit(READ, name, node, ctx, divisors=ctx.divisors, in_log=ctx.in_log)
                if isinstance(node, cst.Subscript):
                    for element in node.slice:
                        self.children(element, ctx)
                return
            self.children(node, ctx)
        elif isinstance(node, cst.BinaryOperation) and isinstance(
            node.operator, (cst.Divide, cst.FloorDivide)
        ):
            divisors = frozenset(names.dotted_names(node.right))
            self.expr(node.left, ctx.but(divisors=divisors))
            self.expr(node.right, ctx if ctx.divisors is None else ctx.but(divisors=None))
        elif isinstance(node, (cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp)):
            loops = ctx.loops
            clause = node.for_in
            while clause is not None:
                self.expr(clause.iter, ctx.but(loops=loops))
                loops = loops + (Loop(node, tuple(self.bound(clause.target)), frozenset()),)
                clause = clause.inner_for_in
            inner = ctx.but(loops=loops)
            if isinstance(node, cst.DictComp):
                self.expr(node.key, inner)
                self.expr(node.value, inner)
            else:
                self.expr(node.elt, inner)
        else:
            self.children(node, ctx)

    def children(self, node: cst.CSTNode, ctx: _Context) -> None:
        for child in names.child_nodes(node):
            self.expr(child, ctx)

    def call(self, node: cst.Call, ctx: _Context) -> None:
        func = node.func
        method = func.attr.value if isinstance(func, cst.Attribute) else None
        receiver = names.dotted(func.value) if isinstance(func, cst.Attribute) else None
        is_log = names.is_log_call(node)
        arg_ctx = (
            ctx
            if ctx.divisors is None and (ctx.in_log or not is_log)
            else ctx.but(in_log=ctx.in_log or is_log, divisors=None)
        )
        if isinstance(func, cst.Attribute) and receiver is None:
            self.expr(func.value, ctx if ctx.divisors is None else ctx.but(divisors=None))
        elif receiver is not None and method not in ("step", "zero_grad", "backward"):
            self.emit(
                READ,
                receiver,
                func.value,
                ctx,
                divisors=ctx.divisors,
                in_log=ctx.in_log,
                method=method,
            )
        for arg in node.args:
            self.expr(arg.value, arg_ctx)
        positional = [a.value for a in node.args if a.keyword is None and not a.star]
        arg_names = [names.dotted(a.value) for a in node.args]

        if method == "backward" and receiver is not None and receiver.endswith("dist_autograd"):
            pass  # distributed autograd keeps gradients per context: nothing accumulates in .grad
        elif method == "backward" or method == "manual_backward":
            if (
                receiver is not None
                and positional
                and method == "backward"
                and receiver not in ("torch.autograd", "autograd")
            ):
                self.model.engines.add(receiver)  # accelerator.backward(loss), engine.backward(loss)
                loss = _first_name(positional[0])
            elif positional and method == "manual_backward":
                loss = _first_name(positional[0])
            else:
                loss = _first_name(func.value) if isinstance(func, cst.Attribute) else None
            if loss:
                self.model.loss_tensors.add(loss)
            self.emit(BACKWARD, loss, node, ctx, engine=receiver if positional else None)
        elif method == "zero_grad":
            if receiver is not None:
                self.model.cleared.add(receiver)
            self.emit(CLEAR, receiver or "*", node, ctx)
        elif method is None and names.callee_name(node) in names.CLEAR_FUNCTIONS:
            self.emit(CLEAR, "*", node, ctx)  # an imported `zero_grad(model_params)` helper
        elif method == "clear_grad" and receiver is not None:
            self.model.cleared.add(receiver)
            self.emit(CLEAR, receiver, node, ctx)
        elif (
            method in ("zero_", "fill_")
            and receiver is not None
            and (receiver.endswith(".grad") or receiver.endswith(".grad.data"))
        ):
            self.emit(CLEAR, "*", node, ctx)
        elif method == "step":
            if receiver is not None and names.looks_like_scaler(receiver) and positional:
                stepped = names.dotted(positional[0])
                if stepped:
                    self.model.scaler_stepped.add(stepped)
                    self.emit(STEP, stepped, node, ctx, via_scaler=True, args=())
                return
            if positional and isinstance(positional[0], (cst.Name, cst.Lambda)):
                # opt.step(closure): the closure runs inside the step (LBFGS).
                closure = positional[0]
                if isinstance(closure, cst.Name):
                    self.emit(CALL, closure.value, node, ctx, args=())
            if receiver is not None:
                self.model.stepped.add(receiver)
            self.emit(
                STEP,
                receiver,
                node,
                ctx,
                args=tuple(positional) + tuple(a.value for a in node.args if a.keyword),
            )
        elif method in names.WRITER_METHODS and receiver is not None:
            self.emit(WRITE, receiver, node, ctx, method=method)
            if is_log:
                self.emit(LOG, receiver, node, ctx)
        elif method == "close" and receiver is not None:
            self.emit(CLOSE, receiver, node, ctx)
        elif method == "add_param_group" and receiver is not None:
            groups = [_group_from_expr(positional[0])] if positional else []
            self.emit(PARAM_GROUPS, receiver, node, ctx, groups=groups, added=True)
        elif is_log:
            self.emit(LOG, receiver, node, ctx)
        else:
            target = names.dotted(func)
            if target is not None:
                self.emit(CALL, target, node, ctx, args=tuple(a for a in arg_names if a))
        if not isinstance(func, cst.Attribute) and not isinstance(func, cst.Name):
            self.expr(func, ctx)

    # ----------------------------------------------------------------- helpers
    def emit(self, kind: str, name: str | None, node: cst.CSTNode, ctx: _Context, **data) -> Event:
        assert self.scope is not None
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
        )
        self.scope.events.append(event)
        return event

    def bound(self, target: cst.CSTNode) -> list[str]:
        if isinstance(target, (cst.Tuple, cst.List)):
            return [n for element in target.elements for n in self.bound(element.value)]
        name = names.dotted(target)
        return [name] if name else []


def _has_division(node: cst.CSTNode) -> bool:
    """A `/` in the arithmetic of a value (`loss / k`, `loss.item() / k`), not inside a call."""
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, (cst.Divide, cst.FloorDivide)):
        return True
    if isinstance(node, cst.Call):
        return False
    return any(_has_division(child) for child in names.child_nodes(node))


def _variables(node: cst.CSTNode) -> list[str]:
    """Plain variable names used in an expression (`loss` in `loss.item() * n`)."""
    if isinstance(node, cst.Name):
        return [node.value]
    if isinstance(node, cst.Attribute):
        return _variables(node.value)
    return [name for child in names.child_nodes(node) for name in _variables(child)]


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
    return (
        bool(call.args) and isinstance(call.args[0].value, cst.Name) and call.args[0].value.value == "False"
    )


def _value_kind(value: cst.BaseExpression) -> str:
    """'zero' for a reset (0, 0.0, torch.zeros(...)), 'loss' for a loss computation, else 'other'."""
    if isinstance(value, cst.Integer) and value.value in ("0", "0x0"):
        return "zero"
    if isinstance(value, cst.Float) and float(value.value) == 0.0:
        return "zero"
    if isinstance(value, cst.Call):
        callee = names.callee_name(value)
        if callee in _ZERO_CALLS and value.args and _is_zero_literal(value.args[0].value):
            return "zero"
        if callee in ("zeros", "zeros_like"):
            return "zero"
        if callee in _DETACHING:
            return "detached"
        if names.is_loss_call(callee):
            return "loss"
    if isinstance(value, cst.BinaryOperation):
        left, right = _value_kind(value.left), _value_kind(value.right)
        if "loss" in (left, right):
            return "loss"
    if isinstance(value, (cst.Name, cst.Attribute)):
        return "alias"
    return "other"


def _is_zero_literal(node: cst.CSTNode) -> bool:
    return (isinstance(node, cst.Integer) and node.value == "0") or (
        isinstance(node, cst.Float) and float(node.value) == 0.0
    )


def _loss_terms(value: cst.BaseExpression, loss_tensors: set[str]) -> tuple[list[cst.CSTNode], bool]:
    """Loss terms of an accumulated value: those still attached to the graph, and whether any loss."""
    raw: list[cst.CSTNode] = []
    found = [False]

    def visit(node: cst.CSTNode, detached: bool) -> None:
        if isinstance(node, cst.Call):
            callee = names.callee_name(node)
            if callee in _DETACHING:
                detached = True
            if names.is_loss_call(callee):
                found[0] = True
                if not detached:
                    raw.append(node)
                return
        if isinstance(node, cst.Attribute) and node.attr.value == "data":
            detached = True
        if isinstance(node, (cst.Name, cst.Attribute)):
            name = names.dotted(node)
            if name is not None and (names.looks_like_loss(name) or name in loss_tensors):
                found[0] = True
                if not detached:
                    raw.append(node)
                return
        for child in names.child_nodes(node):
            visit(child, detached)

    visit(value, False)
    return raw, found[0]


def _periodic_counters(test: cst.BaseExpression) -> frozenset[str]:
    """Counters tested by `x % N == 0`, `(x + 1) % N == 0`, `not x % N`."""
    counters: list[str] = []

    def visit(node: cst.CSTNode) -> None:
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Modulo):
            if not isinstance(node.left, (cst.SimpleString, cst.ConcatenatedString, cst.FormattedString)):
                _counter_names(node.left, counters)
            return
        if isinstance(node, cst.Call):
            return
        for child in names.child_nodes(node):
            visit(child)

    visit(test)
    return frozenset(counters)


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


def _param_group_sources(call: cst.Call) -> list[str | None]:
    return [source for group in _param_groups(call) for source in group]


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
