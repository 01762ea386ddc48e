"""Function summaries: what a function does to its parameters, `self` and the globals, and what
it returns, computed once per function and bound at each call.

A summary is the function's own events (its calls already bound) that a caller can observe: a
backward pass, clears and steps of optimizers, writes to and closes of writers, logs, gradient
clipping, train/eval switches, updates of `self.x` and of globals. Its locals are left out. At a
call, each parameter is replaced by the caller's argument: `step(opt)` whose body steps its
parameter `optimizer` becomes a step of `opt` at the call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import libcst as cst

from looplint.static import names
from looplint.static.values import (
    Accum,
    Attr,
    Bin,
    Bound,
    Call,
    Elem,
    Item,
    Lit,
    Name,
    Param,
    Phi,
    Tup,
    Unknown,
    Value,
    join,
)

if TYPE_CHECKING:
    from looplint.static.model import Event, Model, Scope

_KEPT = frozenset(
    {
        "backward",
        "clear",
        "step",
        "write",
        "close",
        "log",
        "call",
        "clip",
        "unscale",
        "mode",
        "freeze",
        "periodic",
        "create",
    }
)
_VARIABLE_EVENTS = frozenset({"assign", "accumulate", "divide", "append"})
MAX_EVENTS = 150
MAX_SUBSTITUTED = 400  # nodes rebuilt for one value at one call


@dataclass(eq=False)
class FunctionSummary:
    key: str  # 'path::qualname'
    params: list[str]
    is_method: bool
    events: list[Event] | None = field(default_factory=list)  # None: too large to follow
    returns: Value | None = None
    foreign: bool = False  # from another module: its events have no node in the caller's file
    label: str = ""  # `train_one_epoch()` as messages name it
    star: str | None = None  # `text` of `def log(*text)`
    _mentions: dict[int, bool] = field(default_factory=dict, repr=False)
    _prepared_events: list | None = field(default=None, repr=False)
    _mentioned: list[Value] = field(default_factory=list, repr=False)  # keeps the ids valid

    # ----------------------------------------------------------------- binding
    def lazy(self, value: Value, bindings: dict[str, Value]) -> Value:
        """The value as seen at a call, substituted only if ever looked at."""
        if not bindings or not self.mentions_params(value):
            return value
        return Bound(value, self, bindings)

    def bindings(self, call: Call | None, skip_self: bool = False) -> dict[str, Value]:
        """Parameter -> the argument the call passes."""
        if isinstance(call, Bound):
            call = call.call_view()
        if not isinstance(call, Call):
            return {}
        params = self.params[1:] if (self.is_method or skip_self) and self.params else self.params
        bound: dict[str, Value] = {}
        for name, argument in zip(params, call.args, strict=False):
            bound[name] = argument
        if self.star is not None and len(call.args) > len(params):
            bound[self.star] = Tup(tuple(call.args[len(params) :]))
        for keyword, argument in call.kwargs:
            if keyword in self.params:
                bound[keyword] = argument
        return bound

    def bind_value(
        self, value: Value | None, bindings: dict[str, Value], memo: dict | None = None
    ) -> Value | None:
        """The value with this function's parameters replaced by the caller's arguments."""
        if value is None or not bindings or not self.mentions_params(value):
            return value
        return _substitute(value, self.key, bindings, {} if memo is None else memo, self.mentions_params)

    def mentions_params(self, value: Value, depth: int = 0) -> bool:
        """Does the value involve a parameter of this function? (Remembered: most of a summary
        does not, and is then shared by every call as it is.)"""
        found = self._mentions.get(id(value))
        if found is None:
            found = (
                depth < 60 and any(self.mentions_params(child, depth + 1) for child in _children(value))
                if not isinstance(value, Param)
                else value.scope == self.key
            )
            self._mentions[id(value)] = found
            self._mentioned.append(value)
        return found

    def bind_events(self, call: Event, model: Model) -> Iterator[Event]:
        """The summary's events as they happen at the call `call` of the caller's scope."""
        call_value = call.data.get("call")
        bindings = self.bindings(call_value, skip_self=call.data.get("skip_self", False))
        # A call that happens in another module has no node here to point at its arguments,
        # only the names it passed.
        arguments = _argument_names(call, self) if call.foreign else argument_nodes(call.node, self)
        memo: dict = {}
        shift = len(call.loops)
        for inner, param, value_keys in self._prepared():
            value = self.bind_value(inner.value, bindings, memo) if bindings else inner.value
            node, statement, name, var = inner.node, inner.statement, inner.name, inner.var
            at_argument = False
            if param is not None and param in arguments:
                argument_node, argument_name = arguments[param]
                if inner.kind == "read" and argument_node is not None:
                    node, statement, at_argument = argument_node, call.statement, True
                    var = _caller_var(call, argument_name)
                if argument_name is not None and inner.name is not None and names.within(inner.name, param):
                    name = argument_name + inner.name[len(param) :]
            foreign = inner.foreign
            if self.foreign or foreign:
                if not at_argument:
                    node, statement = call.node, call.statement
                foreign = foreign or self.label
            data = dict(inner.data)
            for key in value_keys:
                data[key] = _bind_data(data[key], self, bindings, memo)
            data["via"] = (call, *inner.data.get("via", ()))
            yield inner.but(
                name=name,
                node=node,
                statement=statement,
                loops=call.loops + inner.loops,
                branches=call.branches + tuple((b[0], b[1], b[2] + shift) for b in inner.branches)
                if inner.branches
                else call.branches,
                no_grad=call.no_grad or inner.no_grad,
                periodic=call.periodic or inner.periodic,
                scope=inner.scope if not self.foreign else call.scope,
                data=data,
                value=value,
                var=var,
                foreign=foreign,
            )

    def _prepared(self) -> list[tuple[Event, str | None, tuple[str, ...]]]:
        """Each event with what binding needs, worked out once: the parameter it acts on, and
        the data entries that hold values."""
        if self._prepared_events is None:
            prepared = []
            for inner in self.events or ():
                param = _param_of(inner.value, self.key) if inner.value is not None else None
                if inner.var is not None and inner.var[0] == self.key:
                    param = inner.var[1].split(".", 1)[0]
                value_keys = tuple(
                    key
                    for key, item in inner.data.items()
                    if key != "via"
                    and (
                        isinstance(item, Value)
                        or (isinstance(item, tuple) and item and isinstance(item[0], Value))
                    )
                )
                prepared.append((inner, param, value_keys))
            self._prepared_events = prepared
        return self._prepared_events


def summarize(model: Model, scope: Scope, local: bool = False) -> FunctionSummary:
    """The summary of one function or method of the model's file (`local`: with only its calls
    into the same file bound)."""
    source = model.local_events(scope) if local else model.events(scope)
    events: list[Event] | None = [event for event in source if _observable(model, event, scope)]
    if events is not None and len(events) > MAX_EVENTS:
        events = None  # a function this large is not a training helper's step: its calls stay unknown
    returns = None
    # An early `return 0.0` / `return float("nan")` (an empty loader) does not make the sum that
    # the function otherwise returns something else.
    for value in [v for v in scope.returns if not _is_constant(v)] or scope.returns:
        returns = value if returns is None else join(returns, value)
    is_method = scope.class_name is not None and not _is_static(scope.node)
    return FunctionSummary(
        key=scope.key,
        params=list(scope.params),
        is_method=is_method,
        events=events,
        returns=returns,
        label=f"`{scope.name}()`",
        star=scope.star,
    )


def _is_constant(value: Value) -> bool:
    """A literal, or `float("nan")` / `int(0)` of one."""
    if isinstance(value, Lit):
        return True
    return (
        isinstance(value, Call)
        and isinstance(value.func, Name)
        and value.func.name in ("float", "int")
        and all(isinstance(arg, Lit) for arg in value.args)
    )


def _observable(model: Model, event: Event, scope: Scope) -> bool:
    """Can a caller see this event? Its locals (variables and jumps) are the function's own; a
    call is kept only when it may reach the caller's objects or other project code."""
    if event.kind == "call":
        if event.data.get("bound"):
            return False  # what it did is in the summary already
        call = event.data.get("call")
        if isinstance(call, Bound):
            call = call.call_view()
        arguments = (*call.args, *(value for _, value in call.kwargs)) if isinstance(call, Call) else ()
        return _reaches_out(model, event.value, functions=False) or any(
            _reaches_out(model, argument, functions=False) for argument in arguments
        )
    if event.kind in _KEPT:
        return True
    var = event.var
    if var is None:
        return False
    if event.kind in _VARIABLE_EVENTS:
        return var[0] != scope.key  # `self.total += ...`, a global
    if event.kind == "read":
        root = var[1].split(".", 1)[0]
        own_param = var[0] == scope.key and (root in scope.params or root == scope.star)
        return bool(event.data.get("in_log")) and (own_param or var[0] != scope.key)
    return False


def _is_static(node: cst.CSTNode | None) -> bool:
    if not isinstance(node, cst.FunctionDef):
        return False
    for decorator in node.decorators:
        target = decorator.decorator
        if isinstance(target, cst.Name) and target.value in ("staticmethod", "classmethod"):
            return True
    return False


def argument_nodes(call: cst.CSTNode, summary: FunctionSummary) -> dict[str, tuple[cst.CSTNode, str | None]]:
    """Parameter -> (the argument's node at the call, its dotted name if it is a plain name)."""
    if not isinstance(call, cst.Call):
        return {}
    params = summary.params[1:] if summary.is_method and summary.params else summary.params
    found: dict[str, tuple[cst.CSTNode, str | None]] = {}
    positional = [a for a in call.args if a.keyword is None and not a.star]
    for name, argument in zip(params, positional, strict=False):
        found[name] = (argument.value, names.dotted(argument.value))
    if summary.star is not None and len(positional) > len(params):
        # What `*text` holds is reported at the first extra argument that is a name, if any.
        extra = [argument.value for argument in positional[len(params) :]]
        shown = next((value for value in extra if names.dotted(value) is not None), extra[0])
        found[summary.star] = (shown, names.dotted(shown))
    for argument in call.args:
        if argument.keyword is not None and argument.keyword.value in summary.params:
            found[argument.keyword.value] = (argument.value, names.dotted(argument.value))
    return found


def _argument_names(call: Event, summary: FunctionSummary) -> dict[str, tuple[None, str | None]]:
    """Parameter -> (no node, the name passed) for a call made in another module."""
    params = summary.params[1:] if summary.is_method and summary.params else summary.params
    passed = call.data.get("positional_names", ())
    return {name: (None, argument) for name, argument in zip(params, passed, strict=False) if argument}


def _caller_var(call: Event, argument: str | None) -> tuple | None:
    """The caller's variable an argument names (`log(total)` -> the caller's `total`)."""
    if argument is None:
        return None
    for event in call.scope.events:
        if event.var is not None and event.var[1] == argument.replace("[]", ""):
            return event.var
    return (call.scope.key, argument)


def _param_of(value: Value, key: str) -> str | None:
    """The parameter a value is (or is an attribute of): `optimizer`, `self.writer`."""
    current = value
    while isinstance(current, Attr):
        current = current.base
    if isinstance(current, Param) and current.scope == key:
        return current.name
    return None


def _bind_data(item, summary: FunctionSummary, bindings: dict[str, Value], memo: dict):
    """Data values are bound lazily: most (the arguments of a nested call, say) are never read."""
    if isinstance(item, Value):
        return summary.lazy(item, bindings)
    if isinstance(item, tuple) and item and all(isinstance(element, Value) for element in item):
        return tuple(summary.lazy(element, bindings) for element in item)
    return item


def _children(value: Value) -> tuple[Value, ...]:
    if isinstance(value, Bound):
        return tuple(value.bindings.values())  # its own parameters are bound already
    if isinstance(value, Call):
        return (value.func, *value.args, *(v for _, v in value.kwargs))
    if isinstance(value, (Attr, Item)):
        return (value.base,)
    if isinstance(value, Bin):
        return (value.left, value.right)
    if isinstance(value, Tup):
        return value.items
    if isinstance(value, Accum):
        return (value.prev, value.term)
    if isinstance(value, Phi):
        return value.options
    if isinstance(value, Elem):
        return (value.iterable,)
    return ()


def _substitute(value: Value, key: str, bindings: dict[str, Value], memo: dict, mentions) -> Value:
    if not mentions(value):
        return value
    found = memo.get(id(value))
    if found is not None:
        return found[1]
    if len(memo) > MAX_SUBSTITUTED:
        return Unknown()  # a value this large (a library's return) is not worth following
    result = _rebuild(value, key, bindings, memo, mentions)
    memo[id(value)] = (value, result)
    return result


def _rebuild(value: Value, key: str, bindings: dict[str, Value], memo: dict, mentions) -> Value:
    def sub(child: Value) -> Value:
        return _substitute(child, key, bindings, memo, mentions)

    if isinstance(value, Param):
        if value.scope == key and value.name in bindings:
            return bindings[value.name]
        return value
    if isinstance(value, Bound):  # bound at an inner call: bind its arguments in turn
        inner = {name: sub(argument) for name, argument in value.bindings.items()}
        if all(inner[name] is argument for name, argument in value.bindings.items()):
            return value
        return Bound(value.value, value.summary, inner)
    if isinstance(value, Call):
        func = sub(value.func)
        args = tuple(sub(a) for a in value.args)
        kwargs = tuple((k, sub(v)) for k, v in value.kwargs)
        if (
            func is value.func
            and all(a is b for a, b in zip(args, value.args, strict=True))
            and all(a[1] is b[1] for a, b in zip(kwargs, value.kwargs, strict=True))
        ):
            return value
        return Call(func, args, kwargs, value.site, value.no_grad, value.display)
    if isinstance(value, Attr):
        base = sub(value.base)
        return value if base is value.base else Attr(base, value.attr)
    if isinstance(value, Item):
        base = sub(value.base)
        return value if base is value.base else Item(base, value.key)
    if isinstance(value, Bin):
        left, right = sub(value.left), sub(value.right)
        return (
            value
            if (left is value.left and right is value.right)
            else Bin(value.op, left, right, value.divisor)
        )
    if isinstance(value, Tup):
        items = tuple(sub(item) for item in value.items)
        return value if all(a is b for a, b in zip(items, value.items, strict=True)) else Tup(items)
    if isinstance(value, Accum):
        prev, term = sub(value.prev), sub(value.term)
        return (
            value
            if (prev is value.prev and term is value.term)
            else Accum(prev, term, value.spans, value.window)
        )
    if isinstance(value, Phi):
        options = tuple(sub(option) for option in value.options)
        return value if all(a is b for a, b in zip(options, value.options, strict=True)) else Phi(options)
    if isinstance(value, Elem):
        iterable = sub(value.iterable)
        return value if iterable is value.iterable else Elem(iterable, value.origin)
    return value


def _reaches_out(model: Model, value: Value | None, functions: bool = True, depth: int = 0) -> bool:
    """Does the value involve a parameter, `self`, or (`functions`) a function of the project?"""
    from looplint.static.values import Ref, SelfAttr

    if value is None or depth > 12:
        return False
    if isinstance(value, (Param, SelfAttr, Bound)):
        return True  # (a Bound value stands for arguments of the caller's)
    if isinstance(value, Ref):
        return functions
    if isinstance(value, Name):
        return functions and isinstance(model.resolve_name(value), (Ref, Attr))
    if isinstance(value, (Attr, Item)):
        return _reaches_out(model, value.base, functions, depth + 1)
    if isinstance(value, Call):
        return _reaches_out(model, value.func, functions, depth + 1)
    if isinstance(value, Bin):
        return _reaches_out(model, value.left, functions, depth + 1) or _reaches_out(
            model, value.right, functions, depth + 1
        )
    return False
