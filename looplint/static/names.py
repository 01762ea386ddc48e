"""What a name or a call means in a training loop: optimizer, scheduler, writer, loss, logger.

Everything here is a pure function of syntax (dotted names and call shapes), so the model builder
stays one pass and rules never guess on their own.
"""

from __future__ import annotations

import dataclasses

import libcst as cst

# The string-only vocabulary is re-exported so rules read one namespace: `names.X`.
from looplint.static.vocabulary import (  # noqa: F401
    CLEAR_FUNCTIONS,
    IMAGE_METHODS,
    LOG_METHODS,
    NO_GRAD_CONTEXTS,
    OPTIMIZER_CLASSES,
    SCHEDULER_CLASSES,
    WRITER_CLASSES,
    WRITER_METHODS,
    is_loss_call,
    is_optimizer_class,
    is_scheduler_name,
    looks_like_loss,
    looks_like_optimizer,
    looks_like_scaler,
    looks_like_scheduler,
    looks_like_writer,
)


def dotted(node: cst.BaseExpression | None) -> str | None:
    """`self.opt` -> 'self.opt', `opts[0]` -> 'opts[]'; None for anything that is not a plain path."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted(node.value)
        return None if base is None else f"{base}.{node.attr.value}"
    if isinstance(node, cst.Subscript):
        base = dotted(node.value)
        return None if base is None else f"{base}[]"
    return None


def within(name: str, root: str) -> bool:
    """`model.fc.weight` and `model[]` are within `model`, and `model` within itself; `loss_fn` is
    not within `loss`."""
    return name == root or name.startswith((root + ".", root + "["))


def dotted_names(node: cst.CSTNode) -> list[str]:
    """Every plain path read in an expression: `f(a.b, c[0])` -> ['f', 'a.b', 'c[]']."""
    found: list[str] = []
    stack = [node]
    while stack:
        current = stack.pop()
        name = dotted(current) if isinstance(current, (cst.Name, cst.Attribute)) else None
        if name is not None:
            found.append(name)
        else:
            stack.extend(reversed(child_nodes(current)))
    return found


def callee_name(call: cst.Call) -> str | None:
    """The last name of what is called: `torch.optim.SGD(...)` -> 'SGD', `f(...)` -> 'f'."""
    func = call.func
    if isinstance(func, cst.Name):
        return func.value
    if isinstance(func, cst.Attribute):
        return func.attr.value
    return None


def is_scheduler_class(name: str | None, call: cst.Call | None = None) -> bool:
    """A learning-rate scheduler: a torch class, or a `...LR`/`...Scheduler`/`get_..._schedule...`
    factory whose first argument is an optimizer (a `GradientAccumulationScheduler` callback is
    not one)."""
    if not is_scheduler_name(name):
        return False
    if name in SCHEDULER_CLASSES or call is None:
        return True
    first = next((a.value for a in call.args if a.keyword is None and not a.star), None)
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "optimizer":
            first = arg.value
    target = dotted(first) if first is not None else None
    return target is not None and looks_like_optimizer(target)


def is_no_grad_decorator(decorator: cst.BaseExpression) -> bool:
    """`@torch.no_grad()`, `@torch.inference_mode()`, wrappers such as `@smart_inference_mode()`."""
    target = decorator.func if isinstance(decorator, cst.Call) else decorator
    last = (dotted(target) or "").rsplit(".", 1)[-1]
    return "no_grad" in last or "inference_mode" in last


def is_log_call(call: cst.Call) -> bool:
    func = call.func
    if isinstance(func, cst.Name):
        return func.value in ("print", "progress_bar", "tprint")
    if isinstance(func, cst.Attribute):
        return func.attr.value in LOG_METHODS or func.attr.value == "print"
    return False


# Fields that hold only whitespace, punctuation, operators or annotations: never a call or a name
# a rule cares about. Skipping them makes a walk ~10x cheaper than libcst's `children`.
_SKIPPED_FIELDS = (
    "whitespace",
    "lpar",
    "rpar",
    "comma",
    "semicolon",
    "colon",
    "header",
    "footer",
    "leading_lines",
    "lines_after_decorators",
    "newline",
    "equal",
    "star",
    "dot",
    "lbracket",
    "rbracket",
    "lbrace",
    "rbrace",
    "indent",
    "trailing",
    "operator",
    "prefix",
    "quote",
    "asynchronous",
    "walrus",
    "arrow",
    "annotation",
    "returns",
    "decorators",
)
_FIELDS: dict[type, tuple[str, ...]] = {}


def child_nodes(node: cst.CSTNode) -> list[cst.CSTNode]:
    """The children of a node that can hold code, in source order."""
    fields = _FIELDS.get(type(node))
    if fields is None:
        fields = tuple(
            f.name for f in dataclasses.fields(node) if not any(s in f.name for s in _SKIPPED_FIELDS)
        )
        _FIELDS[type(node)] = fields
    found: list[cst.CSTNode] = []
    for name in fields:
        value = getattr(node, name)
        if isinstance(value, cst.CSTNode):
            found.append(value)
        elif isinstance(value, (tuple, list)):
            found.extend(child for child in value if isinstance(child, cst.CSTNode))
    return found
