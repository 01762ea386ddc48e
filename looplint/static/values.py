"""What an expression holds: a small symbolic value per expression, and what it evaluates to.

The model builder turns every expression the rules care about into a tree of `Value` nodes, with
names already replaced by what they were bound to at that point (`avg = total / n` makes `avg`
the division node itself). Nothing is decided while the tree is built: `Evaluator.known()` reads
a tree only once the whole project is known, so a helper defined further down, a method of
another class or a function imported from another module can all give their answer.

A `Known` says what a value certainly is: a loss (and whether it is still on the autograd graph),
a number, a running sum, a mean, or an object with a role (optimizer, writer, ...) and an identity.
Anything not certain is unknown, and the rules never fire on unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from looplint.static import vocabulary

if TYPE_CHECKING:
    from looplint.static.model import Model


class Value:
    """A node of the symbolic value tree. Nodes are compared by identity."""

    __slots__ = ()


class Lit(Value):
    """A literal: 'number', 'zero' (0, 0.0), 'str', 'none' or 'bool'."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind


class Ext(Value):
    """Something imported from outside the project, by its dotted path: 'torch.optim.SGD'."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


class Ref(Value):
    """A function, class or module of the project (see looplint.static.project)."""

    __slots__ = ("kind", "module", "name")

    def __init__(self, kind: str, module: str, name: str) -> None:
        self.kind = kind  # 'function', 'class' or 'module'
        self.module = module  # the module's path
        self.name = name  # qualified name inside the module ('Trainer.fit'); '' for a module


class Unknown(Value):
    """Something the analysis cannot see into; `origin` is its identity, when it has one
    (('param', scope, name), ('free', name), ('self', attr), ('site', path, line, column))."""

    __slots__ = ("origin",)

    def __init__(self, origin: tuple | None = None) -> None:
        self.origin = origin


class Name(Value):
    """A name read before anything in its scope bound it: resolved once the file is built
    (a global assigned further down, a closure variable, a builtin)."""

    __slots__ = ("name", "scope")

    def __init__(self, scope: Any, name: str) -> None:
        self.scope = scope
        self.name = name


class Param(Value):
    """A parameter of a function: unknown inside it, the caller's argument once bound."""

    __slots__ = ("name", "scope")

    def __init__(self, scope: str, name: str) -> None:
        self.scope = scope  # the function's key
        self.name = name


class SelfAttr(Value):
    """`self.attr` inside a method: whatever the class's methods assign to it."""

    __slots__ = ("attr", "cls")

    def __init__(self, cls: str | None, attr: str) -> None:
        self.cls = cls
        self.attr = attr


class Call(Value):
    __slots__ = ("args", "display", "func", "kwargs", "no_grad", "site")

    def __init__(
        self,
        func: Value,
        args: tuple[Value, ...],
        kwargs: tuple[tuple[str, Value], ...],
        site: tuple,
        no_grad: bool,
        display: str | None,
    ) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.site = site  # ('site', path, line-ish key): the identity of what the call creates
        self.no_grad = no_grad  # made under torch.no_grad(): no graph
        self.display = display  # the dotted name of the callee as written, for name conventions


class Attr(Value):
    __slots__ = ("attr", "base")

    def __init__(self, base: Value, attr: str) -> None:
        self.base = base
        self.attr = attr


class Item(Value):
    """`base[key]`; `key` is the literal (int or str) or None."""

    __slots__ = ("base", "key")

    def __init__(self, base: Value, key: int | str | None) -> None:
        self.base = base
        self.key = key


class Bin(Value):
    """Arithmetic: op is 'add', 'sub', 'mul', 'div', 'pow', 'mod', 'cmp', 'format' or 'other'.
    A division knows how its divisor was written (`accumulation_steps`, `4`)."""

    __slots__ = ("divisor", "left", "op", "right")

    def __init__(self, op: str, left: Value, right: Value, divisor: frozenset[str] = frozenset()) -> None:
        self.op = op
        self.left = left
        self.right = right
        self.divisor = divisor


class Tup(Value):
    """A tuple or list literal (`[opt_g, opt_d]`) or a function's tuple return."""

    __slots__ = ("items",)

    def __init__(self, items: tuple[Value, ...]) -> None:
        self.items = items


class Accum(Value):
    """`x += term` (or `x = x + term`): `spans` when it runs in a loop that `x`'s binding is
    outside of, so the sum collects several iterations; `window` when each term was divided by
    the number of iterations it sums (`for _ in range(k): total += (loss / k).item()`), so the
    sum is a mean."""

    __slots__ = ("prev", "spans", "term", "window")

    def __init__(self, prev: Value, term: Value, spans: bool, window: bool = False) -> None:
        self.prev = prev
        self.term = term
        self.spans = spans
        self.window = window


class Phi(Value):
    """One of several values (the branches of an `if`): certain only where all agree."""

    __slots__ = ("options",)

    def __init__(self, options: tuple[Value, ...]) -> None:
        self.options = options


class Elem(Value):
    """An element of an iterable (a loop target, `for opt in optimizers`)."""

    __slots__ = ("iterable", "origin")

    def __init__(self, iterable: Value, origin: tuple) -> None:
        self.iterable = iterable
        self.origin = origin


class Bound(Value):
    """A value of a function as seen at one call: its parameters stand for the call's arguments.
    The substitution is made only when the value is looked at (most never are)."""

    __slots__ = ("bindings", "forced", "summary", "value", "view")

    def __init__(self, value: Value, summary: Any, bindings: dict[str, Value]) -> None:
        self.value = value
        self.summary = summary  # the FunctionSummary whose parameters are bound
        self.bindings = bindings
        self.forced: Value | None = None
        self.view: Value | None = None

    def force(self) -> Value:
        """The value with the arguments in place of the parameters."""
        if self.forced is None:
            self.forced = self.summary.bind_value(self.value, self.bindings) or Unknown()
        return self.forced

    def call_view(self) -> Value:
        """For a call: the same call with its function and arguments bound lazily, one by one."""
        if self.view is None:
            value = self.value
            if isinstance(value, Call):
                wrap = self.summary.lazy
                self.view = Call(
                    wrap(value.func, self.bindings),
                    tuple(wrap(a, self.bindings) for a in value.args),
                    tuple((k, wrap(v, self.bindings)) for k, v in value.kwargs),
                    value.site,
                    value.no_grad,
                    value.display,
                )
            else:
                self.view = self.force()
        return self.view


def unbound(value: Value | None) -> Value | None:
    """A Bound value made concrete (for walks over a value's structure)."""
    return value.force() if isinstance(value, Bound) else value


def extends(later: Value, earlier: Value) -> bool:
    """Is `later` a running sum built on `earlier` (so the loop that made it ran)?"""
    current = later
    while isinstance(current, Accum):
        current = current.prev
        if current is earlier:
            return True
    return False


def join(a: Value, b: Value) -> Value:
    """What a name holds after two paths meet."""
    if a is b or extends(b, a):
        return b
    if extends(a, b):
        return a
    options = (a.options if isinstance(a, Phi) else (a,)) + (b.options if isinstance(b, Phi) else (b,))
    return Phi(tuple(dict.fromkeys(options)))


# ----------------------------------------------------------------------------- what it evaluates to


@dataclass(frozen=True)
class Known:
    """What a value certainly is."""

    kind: str = "unknown"  # 'unknown', 'number', 'tensor', 'object', 'function', 'class',
    #                        'module', 'external', 'tuple', 'str', 'none', 'bool'
    role: str | None = None  # objects: 'optimizer', 'scheduler', 'writer', 'scaler', 'engine',
    #                          'model', 'loss_fn', 'pbar', 'logger', 'instance'
    loss: bool = False  # computed from a loss
    attached: bool = False  # a tensor still on the autograd graph
    divided: bool = False  # divided by something: a mean, or a pre-scaled term
    summed: bool = False  # a running sum over several iterations, from a visible zero
    zero: bool = False  # a reset value: 0, 0.0, torch.zeros(...)
    origin: tuple | None = None  # the identity of an object
    target: Any = None  # 'function'/'class'/'module': the Ref; 'external': the dotted path
    items: tuple[Known, ...] | None = None  # 'tuple'

    @property
    def numeric(self) -> bool:
        return self.kind in ("number", "bool")


UNKNOWN = Known()
NUMBER = Known("number")
NONE = Known("none")
STRING = Known("str")

# Tensor methods and attributes that keep what a value is (a loss stays a loss).
_KEEPING = frozenset(
    {
        "mean",
        "sum",
        "cpu",
        "cuda",
        "to",
        "float",
        "double",
        "half",
        "bfloat16",
        "clone",
        "squeeze",
        "unsqueeze",
        "view",
        "reshape",
        "contiguous",
        "flatten",
        "abs",
        "sqrt",
        "exp",
        "log",
        "mul",
        "div",
        "add",
        "sub",
        "clamp",
        "nan_to_num",
        "type",
        "type_as",
        "squeeze_",
        "requires_grad_",
    }
)
# Module methods that return the module itself.
_SELF_RETURNING = frozenset(
    {
        "train",
        "eval",
        "to",
        "cuda",
        "cpu",
        "float",
        "half",
        "double",
        "bfloat16",
        "requires_grad_",
        "share_memory",
    }
)
# ... and those that leave the graph.
_DETACHING = frozenset({"item", "tolist", "detach", "numpy", "data", "detach_", "asscalar", "asnumpy"})
_NUMBER_BUILTINS = frozenset({"float", "int", "round", "abs"})
MAX_CALL_DEPTH = 4  # nested returns followed through project functions


class Evaluator:
    """Evaluates value trees against one model (and, through it, the project). Memoized."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.memo: dict[int, tuple[Value, Known]] = {}
        self.active: set[int] = set()
        self.call_depth = 0

    def known(self, value: Value | None) -> Known:
        if value is None:
            return UNKNOWN
        key = id(value)
        found = self.memo.get(key)
        if found is not None:
            return found[1]
        if key in self.active or len(self.active) > 200:
            return UNKNOWN  # a cycle (x = f(x) with recursion), or too deep to matter
        self.active.add(key)
        try:
            result = self._known(value)
            if self.model.is_backwarded(value) and result.kind != "number":
                result = replace(result, loss=True, attached=True)
        finally:
            self.active.discard(key)
        self.memo[key] = (value, result)
        return result

    # The dispatch is by node type; each branch is one short rule of what the node means.
    def _known(self, value: Value) -> Known:
        if isinstance(value, Lit):
            if value.kind == "zero":
                return Known("number", zero=True)
            return {"number": NUMBER, "str": STRING, "none": NONE}.get(value.kind, Known("bool"))
        if isinstance(value, Unknown):
            return Known(origin=value.origin)
        if isinstance(value, Ext):
            return Known("external", target=value.path)
        if isinstance(value, Ref):
            return Known(value.kind, target=value)
        if isinstance(value, Name):
            return self.known(self.model.resolve_name(value))
        if isinstance(value, Param):
            return Known(origin=("param", value.scope, value.name))
        if isinstance(value, SelfAttr):
            bound = self.model.self_attribute(value)
            return self.known(bound) if bound is not None else Known(origin=("self", value.attr))
        if isinstance(value, Attr):
            return self._attribute(value)
        if isinstance(value, Item):
            return self._item(value)
        if isinstance(value, Bin):
            return self._arithmetic(value)
        if isinstance(value, Tup):
            return Known("tuple", items=tuple(self.known(item) for item in value.items))
        if isinstance(value, Accum):
            return self._accumulated(value)
        if isinstance(value, Phi):
            return meet([self.known(option) for option in value.options])
        if isinstance(value, Elem):
            iterable = self.known(value.iterable)
            if iterable.kind == "tuple" and iterable.items:
                return meet(list(iterable.items))
            return Known(origin=value.origin)
        if isinstance(value, Call):
            return self._call(value)
        if isinstance(value, Bound):
            return self.known(value.force())
        return UNKNOWN

    def _attribute(self, value: Attr) -> Known:
        base = self._not_none(value.base)
        attr = value.attr
        if base.kind == "external":
            return Known("external", target=f"{base.target}.{attr}")
        if base.kind == "module":
            return self.known(self.model.module_attribute(base.target, attr))
        if base.kind == "class":
            return self.known(self.model.class_attribute(base.target, attr))
        if base.kind == "object" and base.role == "instance":
            bound = self.model.instance_attribute(base.target, attr)
            if bound is not None:
                return self.known(bound)
        if attr in _DETACHING:
            return _detached(base, attr)
        if attr == "loss" and _model_output(value.base, base):
            return Known("tensor", loss=True, attached=not _no_grad(value.base))
        if attr in ("grad", "shape", "device", "dtype"):
            return UNKNOWN
        return Known(origin=("attr", base.origin, attr) if base.origin else None)

    def _not_none(self, value: Value) -> Known:
        """What a value holds where an attribute of it is used: not None, or that would raise
        (`loss_history = LossHistory(...) if rank == 0 else None`, then `loss_history.append_loss`)."""
        choices = unbound(value)
        if isinstance(choices, Phi):
            options = [self.known(option) for option in choices.options]
            kept = [option for option in options if option.kind != "none"]
            if kept and len(kept) < len(options):
                return meet(kept)
        return self.known(value)

    def _item(self, value: Item) -> Known:
        base = self.known(value.base)
        if base.kind == "tuple" and base.items is not None and isinstance(value.key, int):
            if -len(base.items) <= value.key < len(base.items):
                return base.items[value.key]
            return UNKNOWN
        if base.loss:
            return replace(base, origin=None, zero=False)
        if value.key == "loss" and _model_output(value.base, base):
            return Known("tensor", loss=True, attached=not _no_grad(value.base))
        return Known(origin=("item", base.origin, value.key) if base.origin else None)

    def _arithmetic(self, value: Bin) -> Known:
        if value.op == "cmp":
            return Known("bool")
        if value.op == "format":
            return text_of([self.known(value.left), self.known(value.right)])
        left, right = self.known(value.left), self.known(value.right)
        if "str" in (left.kind, right.kind) and value.op == "add":
            return text_of([left, right])
        if value.op == "div":
            kind = "number" if left.numeric and right.numeric else left.kind
            return Known(
                kind if kind in ("number", "tensor") else "unknown",
                loss=left.loss,
                attached=left.attached,
                divided=True,
                summed=left.summed,
            )
        if value.op in ("add", "sub", "mul"):
            both_numbers = left.numeric and right.numeric
            tensor = "tensor" in (left.kind, right.kind)
            kind = "number" if both_numbers else "tensor" if tensor else "unknown"
            if value.op == "mul":
                divided = left.divided or right.divided
            else:
                divided = left.divided and right.divided
            return Known(
                kind,
                loss=left.loss or right.loss,
                attached=left.attached or right.attached,
                divided=divided,
                summed=left.summed or right.summed,
                zero=left.zero and right.zero,
            )
        return Known("number") if left.numeric and right.numeric else UNKNOWN

    def _accumulated(self, value: Accum) -> Known:
        before, term = self.known(value.prev), self.known(value.term)
        weighted = value.spans and self._weighted(value.term)
        if before.kind == "tensor" or term.kind == "tensor":
            kind = "tensor"
        elif before.numeric and term.numeric:
            kind = "number"
        else:
            kind = "unknown"
        return Known(
            kind,
            loss=term.loss or before.loss,
            attached=term.attached or before.attached,
            divided=(term.divided and (value.window or weighted) and before.zero)
            or (before.divided and not value.spans),
            summed=before.summed or (value.spans and self._starts_at_zero(value)),
        )

    def _weighted(self, term: Value) -> bool:
        """`loss.item() * (w / w_sum)`: the term is weighted by a fraction that is not the loss
        (`(loss / accumulation_steps).item() * batch_size` is a scaled loss, not a weight)."""
        term = peeled(term)
        if not (isinstance(term, Bin) and term.op == "mul"):
            return False
        for side in (peeled(term.left), peeled(term.right)):
            if isinstance(side, Bin) and side.op == "div" and not self.known(side).loss:
                return True
        return False

    def _starts_at_zero(self, value: Accum) -> bool:
        current: Value = value
        while isinstance(current, Accum):
            current = current.prev
        return self.known(current).zero

    # ------------------------------------------------------------------------- calls
    def _call(self, call: Call) -> Known:
        func = self.known(call.func)
        if isinstance(call.func, Attr):
            method = self._method(call, call.func)
            if method is not None:
                return method
        if func.kind == "external":
            return self._external_call(call, func.target)
        if func.kind == "function":
            return self._returned(call, func.target)
        if func.kind == "class":
            return self._construct(call, func.target)
        if func.kind == "object":
            if func.role == "loss_fn":
                return Known("tensor", loss=True, attached=not call.no_grad)
            if func.role == "instance" and isinstance(func.target, Ref):
                return self._returned(call, func.target, "__call__")
            if func.role == "model":
                return Known("tensor", origin=call.site)
        if func.kind == "unknown" and self.model.loss_by_convention(call.display):
            return self._conventional_loss(call)
        return Known(origin=call.site)

    def _conventional_loss(self, call: Call) -> Known:
        """The result of an unknown callable named like a loss function: a loss, and a tensor on
        the graph only in code that uses torch."""
        return Known(
            "tensor" if self.model.uses_torch else "unknown",
            loss=True,
            attached=self.model.uses_torch and not call.no_grad,
        )

    def _returned(self, call: Call, target: Ref, method: str | None = None) -> Known:
        """What a project function returns at this call; calls nested deeper than a few levels
        (recursion, long chains of helpers) stay unknown. A function named like a loss function
        (`CE_Loss`, `compute_loss`) whose result cannot be worked out returns a loss."""
        if self.call_depth >= MAX_CALL_DEPTH:
            return Known(origin=call.site)
        self.call_depth += 1
        try:
            result = self.known(self.model.call_result(target, call, method))
        finally:
            self.call_depth -= 1
        if result.kind == "unknown" and not result.loss and self.model.loss_by_convention(target.name):
            return self._conventional_loss(call)
        return result

    def _method(self, call: Call, func: Attr) -> Known | None:
        """Methods whose meaning does not depend on knowing the receiver's class."""
        name = func.attr
        receiver = self.known(func.base)
        if receiver.kind in ("external", "module", "class"):
            return None
        if receiver.kind == "object" and receiver.role == "instance":
            if (
                name in _SELF_RETURNING
                and isinstance(receiver.target, Ref)
                and self.model.instance_attribute(receiver.target, name) is None
            ):
                return receiver  # nn.Module's own `.to(device)`, `.train()`: the same model
            return None  # a method of a project class: its summary answers
        if receiver.kind == "str" and name == "format":
            return text_of(
                [receiver, *(self.known(a) for a in call.args), *(self.known(v) for _, v in call.kwargs)]
            )
        if name in _DETACHING:
            return _detached(receiver, name)
        if name in _SELF_RETURNING and receiver.kind in ("object", "unknown") and not receiver.loss:
            return receiver  # `model = model.to(device).train()` is the same model
        if name in _KEEPING:
            if receiver.kind in ("tensor", "number") or receiver.loss:
                return replace(receiver, origin=None)
            return None
        if name == "scale" and receiver.role == "scaler" and call.args:
            return self.known(call.args[0])
        if name in ("parameters", "named_parameters"):
            return Known("object", role="parameters", origin=("parameters", receiver.origin))
        if name in ("prepare", "setup") and receiver.role == "engine":
            items = tuple(self.known(arg) for arg in call.args)
            return items[0] if len(items) == 1 else Known("tuple", items=items)
        if name in ("gather", "all_gather", "gather_for_metrics", "reduce", "all_reduce") and call.args:
            return replace(self.known(call.args[0]), origin=None)
        if receiver.role == "loss_fn" and name == "forward":
            return Known("tensor", loss=True, attached=not call.no_grad)
        if name == "forward" and receiver.kind == "unknown" and self.model.loss_by_convention(call.display):
            return self._conventional_loss(call)
        return None

    def _external_call(self, call: Call, path: str) -> Known:
        last = path.rsplit(".", 1)[-1]
        top = path.split(".", 1)[0]
        torchish = top in vocabulary.TORCH_ECOSYSTEM
        if vocabulary.is_optimizer_class(last) and (torchish or last in vocabulary.OPTIMIZER_CLASSES):
            return Known("object", role="optimizer", origin=call.site)
        if vocabulary.is_scheduler_name(last):
            first = call.args[0] if call.args else dict(call.kwargs).get("optimizer")
            if last in vocabulary.SCHEDULER_CLASSES or (
                first is not None and self.known(first).role == "optimizer"
            ):
                return Known("object", role="scheduler", origin=call.site)
        if last in vocabulary.WRITER_CLASSES:
            return Known("object", role="writer", origin=call.site)
        if last == "GradScaler":
            return Known("object", role="scaler", origin=call.site)
        if last in ("Accelerator", "Fabric"):
            return Known("object", role="engine", origin=call.site)
        if path == "deepspeed.initialize":
            engine = Known("object", role="engine", origin=call.site)
            optimizer = Known("object", role="optimizer", origin=(*call.site, 1))
            scheduler = Known("object", role="scheduler", origin=(*call.site, 3))
            return Known("tuple", items=(engine, optimizer, Known(), scheduler))
        if last in ("tqdm", "trange"):
            return Known("object", role="pbar", origin=call.site)
        if path in ("logging.getLogger", "logging.Logger"):
            return Known("object", role="logger", origin=call.site)
        if torchish and vocabulary.is_loss_class(last):
            return Known("object", role="loss_fn", origin=call.site)
        if torchish and vocabulary.is_functional_loss(path):
            return Known("tensor", loss=True, attached=not call.no_grad)
        if top == "builtins":
            return self._builtin(call, last)
        if top in ("torch", "numpy", "np", "math", "statistics"):
            return self._tensor_function(call, last, numpy=top != "torch")
        return Known(origin=call.site)

    def _builtin(self, call: Call, name: str) -> Known:
        argument = self.known(call.args[0]) if call.args else UNKNOWN
        if name in _NUMBER_BUILTINS:
            return Known("number", loss=argument.loss, divided=argument.divided, summed=argument.summed)
        if name == "len":
            return NUMBER
        if name in ("str", "repr", "format"):
            return text_of([argument])
        if name == "sum" and argument.kind == "tuple" and argument.items:
            return meet(list(argument.items))
        return Known(origin=call.site)

    def _tensor_function(self, call: Call, name: str, numpy: bool) -> Known:
        if name in ("zeros", "zeros_like") or (
            name in ("tensor", "scalar_tensor", "as_tensor", "array")
            and call.args
            and self.known(call.args[0]).zero
        ):
            return Known("number" if numpy else "tensor", zero=True)
        if call.args and name in (
            "mean",
            "sum",
            "stack",
            "cat",
            "nanmean",
            "nansum",
            "average",
            "tensor",
            "as_tensor",
        ):
            argument = self.known(call.args[0])
            if argument.kind == "tuple" and argument.items:
                argument = meet(list(argument.items))
            if numpy:
                kind = "number" if argument.loss or argument.numeric else "unknown"
                return replace(argument, kind=kind, attached=False, origin=None)
            return replace(argument, kind="tensor", origin=None, zero=False)
        return Known("unknown" if numpy else "tensor", origin=call.site)  # an array (an image?)

    def _construct(self, call: Call, cls: Ref) -> Known:
        role = self.model.class_role(cls)
        if role == "optimizer":
            return Known("object", role="optimizer", origin=call.site)
        if role == "loss_fn":
            return Known("object", role="loss_fn", origin=call.site, target=cls)
        return Known("object", role="instance", origin=call.site, target=cls)


def text_of(parts: list[Known]) -> Known:
    """A string made from values: it shows an undivided sum of losses if one of them is one
    (`mesg = "loss {:.3f}".format(total)` then `print(mesg)`)."""
    for part in parts:
        if part.kind == "tuple" and part.items:
            found = text_of(list(part.items))
            if found.summed:
                return found
        elif part.summed and part.loss and not part.divided:
            return Known("str", loss=True, summed=True)
    return STRING


def _detached(base: Known, how: str) -> Known:
    """`.item()`, `.detach()`, `.data`, `.numpy()`: the same quantity, off the graph."""
    if how in ("item", "asscalar"):
        kind = "number"  # `.item()` always gives a Python number
    elif how in ("detach", "detach_", "data"):
        kind = "tensor" if base.kind in ("tensor", "unknown") and base.loss else base.kind
    else:
        kind = "number" if base.loss or base.numeric else "unknown"
    if kind in ("object", "external", "function", "class", "module"):
        kind = "unknown"
    return Known(kind, loss=base.loss, divided=base.divided, summed=base.summed, zero=base.zero)


def _model_output(value: Value, known: Known) -> bool:
    """`outputs.loss` / `outputs["loss"]` of what a model call returned (Hugging Face style)."""
    return isinstance(value, Call) and known.kind in ("unknown", "tensor") and not known.loss


def _no_grad(value: Value) -> bool:
    return isinstance(value, Call) and value.no_grad


def meet(options: list[Known]) -> Known:
    """What several possible values all certainly are."""
    if not options:
        return UNKNOWN
    first = options[0]
    if all(option == first for option in options[1:]):
        return first
    kinds = {option.kind for option in options}
    roles = {option.role for option in options}
    origins = {option.origin for option in options}
    targets = {id(option.target) for option in options}
    kind = kinds.pop() if len(kinds) == 1 else "unknown"
    if kind in ("external", "function", "class", "module", "tuple") and len(targets) > 1:
        kind = "unknown"  # one of several functions: which one is not known
    return Known(
        kind,
        target=first.target if len(targets) == 1 else None,
        role=roles.pop() if len(roles) == 1 else None,
        loss=all(option.loss for option in options),
        attached=all(option.attached for option in options),
        divided=any(option.divided for option in options),
        summed=all(option.summed for option in options),
        zero=all(option.zero for option in options),
        origin=origins.pop() if len(origins) == 1 else None,
    )


def peeled(value: Value) -> Value:
    """The value under `.item()`, `.detach()`, attributes and indexing."""
    for _ in range(8):
        if isinstance(value, Call) and isinstance(value.func, Attr):
            value = value.func.base
        elif isinstance(value, (Attr, Item)):
            value = value.base
        else:
            break
    return value
