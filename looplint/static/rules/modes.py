"""LL105 backward-in-eval-mode."""

from __future__ import annotations

from collections.abc import Iterator

from looplint.static.model import BACKWARD, MODE, STEP, Event, Loop, Model
from looplint.static.rules import Hit, elsewhere, loop_label
from looplint.static.values import Attr, Bin, Call, Item, Value, unbound


def backward_in_eval_mode(model: Model) -> Iterator[Hit]:
    for scope in model.scopes:
        events = model.events(scope)
        reported: set[int] = set()
        for switch in events:
            if switch.kind != MODE or switch.data.get("training") is not False or id(switch.node) in reported:
                continue
            loop = _training_loop(model, events, switch)
            if loop is None or not _behaves_differently_in_eval(model, switch):
                continue
            if any(
                e.kind == MODE
                and e.data.get("training") is not False
                and not _certainly_other(model, e, switch)
                for e in events
                if e.in_loop(loop)
            ):
                continue  # (maybe) switched back to training inside the loop, or in a helper it calls
            reported.add(id(switch.node))
            yield Hit(
                "LL105",
                switch.node,
                f"`{switch.name}.eval()`{elsewhere(switch)} runs inside {loop_label(loop)}, which also trains "
                f"`{switch.name}`, and nothing there switches it back with `{switch.name}.train()`: every "
                "later backward pass runs with dropout off and batch-norm statistics frozen; call "
                f"`{switch.name}.train()` before each epoch's training",
            )


def _training_loop(model: Model, events: list[Event], switch: Event) -> Loop | None:
    """The innermost loop around the switch that also trains the switched model."""
    for loop in reversed(switch.loops):
        trained = [
            e
            for e in events
            if e.in_loop(loop) and e.kind == BACKWARD and not e.no_grad and not e.exclusive_with(switch)
        ]
        steps = [e for e in events if e.in_loop(loop) and e.kind == STEP and model.role(e) == "optimizer"]
        if trained and steps and _trains(model, switch, steps, trained):
            return loop
    return None


def _trains(model: Model, switch: Event, steps: list[Event], backwards: list[Event]) -> bool:
    """Is the switched model the one being trained? Its parameters are the optimizer's, or it
    computes the loss that is differentiated (outside no_grad). A teacher in eval mode is not."""
    name = switch.name or ""
    for step in steps:
        for source in model.parameter_sources(step):
            if source == name or source.startswith(name + ".") or name.startswith(source + "."):
                return True
    identity = model.identity(switch.value)
    if identity is None:
        return False
    return any(_called_in(model, backward.value, identity) for backward in backwards)


def _called_in(model: Model, value: Value | None, identity: tuple, depth: int = 0) -> bool:
    value = unbound(value)
    if value is None or depth > 20:
        return False
    if isinstance(value, Call):
        if not value.no_grad and model.identity(value.func) == identity:
            return True
        return _called_in(model, value.func, identity, depth + 1) or any(
            _called_in(model, argument, identity, depth + 1) for argument in value.args
        )
    if isinstance(value, (Attr, Item)):
        return _called_in(model, value.base, identity, depth + 1)
    if isinstance(value, Bin):
        return _called_in(model, value.left, identity, depth + 1) or _called_in(
            model, value.right, identity, depth + 1
        )
    return False


def _certainly_other(model: Model, a: Event, b: Event) -> bool:
    """Two modules built at two different places of this file (`teacher` and `student`); a
    parameter, an attribute or anything else may be the other one under another name."""
    first, second = model.identity(a.value), model.identity(b.value)
    return first is not None and second is not None and first[0] == second[0] == "site" and first != second


# Layers that compute the same thing in train and eval mode: a model built only from them is
# not changed by eval().
_MODE_FREE = frozenset(
    {
        "Linear",
        "Bilinear",
        "LazyLinear",
        "Conv1d",
        "Conv2d",
        "Conv3d",
        "ConvTranspose1d",
        "ConvTranspose2d",
        "ConvTranspose3d",
        "ReLU",
        "ReLU6",
        "LeakyReLU",
        "PReLU",
        "ELU",
        "SELU",
        "CELU",
        "GELU",
        "SiLU",
        "Mish",
        "Sigmoid",
        "Tanh",
        "Softmax",
        "LogSoftmax",
        "Softplus",
        "Hardtanh",
        "Flatten",
        "Unflatten",
        "MaxPool1d",
        "MaxPool2d",
        "MaxPool3d",
        "AvgPool1d",
        "AvgPool2d",
        "AvgPool3d",
        "AdaptiveAvgPool1d",
        "AdaptiveAvgPool2d",
        "AdaptiveAvgPool3d",
        "AdaptiveMaxPool2d",
        "Embedding",
        "Identity",
        "Sequential",
        "ModuleList",
        "ModuleDict",
        "Upsample",
        "PixelShuffle",
        "ZeroPad2d",
        "LayerNorm",
        "GroupNorm",
        "super",
        "len",
        "range",
        "int",
        "float",
        "print",
        "isinstance",
    }
)


def _mode_free_layer(model: Model, layer) -> bool:
    """`nn.Linear(...)`, or a class of the project (`Reshape()`) that builds only such layers."""
    if not isinstance(layer, Call):
        return False
    known = model.known(layer.func)
    if known.kind == "external" and isinstance(known.target, str):
        return known.target.rsplit(".", 1)[-1] in _MODE_FREE
    if known.kind == "class" and known.target is not None:
        layers = model.class_layers(known.target)
        return layers is not None and all(name in _MODE_FREE or name.endswith("_") for name in layers)
    return False


def _behaves_differently_in_eval(model: Model, switch: Event) -> bool:
    """Unless the switched model is built only from layers that do the same in both modes (no
    dropout, no batch norm: an `nn.Sequential` of them, or a class of the project whose body
    builds nothing else), eval() may change it."""
    known = model.known(switch.value)
    if known.role == "instance" and known.target is not None:
        layers = model.class_layers(known.target)
        # (in-place initializers, `nn.init.xavier_normal_(...)`, build nothing)
        return layers is None or any(name not in _MODE_FREE and not name.endswith("_") for name in layers)
    root = switch.value
    while isinstance(root, Call) and isinstance(root.func, Attr) and root.func.attr in ("to", "cuda", "cpu"):
        root = root.func.base
    if isinstance(root, Call) and model.known(root.func).kind == "external":
        path = model.known(root.func).target or ""
        if path.rsplit(".", 1)[-1] == "Sequential":
            return not all(_mode_free_layer(model, layer) for layer in root.args)
    return True
