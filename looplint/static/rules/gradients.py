"""LL101 missing-zero-grad, LL102 zero-grad-between-backward-and-step."""

from __future__ import annotations

from collections.abc import Iterator

from looplint.findings import Fix
from looplint.static import fixes, names
from looplint.static.model import BACKWARD, CALL, CLEAR, STEP, Event, Loop, Model
from looplint.static.rules import Hit, loop_label


def _optimizer_steps(model: Model, events: list[Event]) -> Iterator[Event]:
    return (e for e in events if e.kind == STEP and model.role(e.name) == "optimizer")


def _clears(model: Model, event: Event, optimizer: str) -> bool:
    """Could this event clear the optimizer's gradients? Unknown helpers get the benefit of the doubt."""
    if event.kind == CLEAR:
        # model.zero_grad(), self.zero_grad(), `p.grad = None` and `for opt in opts: opt.zero_grad()`
        # clear whatever they cover.
        return (
            model.same(event.name, optimizer)
            or model.role(event.name) != "optimizer"
            or any(event.name in loop.targets for loop in event.loops)
        )
    if event.kind == STEP:
        return model.role(event.name) == "engine"  # DeepSpeed's engine.step() clears gradients
    if event.kind == CALL and model.resolve(event) is None:
        callee = (event.name or "").rsplit(".", 1)[-1]
        if (
            callee in _NEVER_CLEARS
            or callee.startswith(_NEVER_CLEARS_PREFIXES)
            or names.looks_like_scaler((event.name or "").rsplit(".", 1)[0])
        ):
            return False
        return optimizer in event.data.get("args", ()) or (event.name or "").startswith(optimizer + ".")
    return False


# Calls that take the optimizer but are known, or named, not to touch its gradients.
_NEVER_CLEARS_PREFIXES = ("get_", "log", "print", "save", "plot", "show", "format")
_NEVER_CLEARS = frozenset(
    {
        "unscale_",
        "clip_grad_norm_",
        "clip_grad_value_",
        "state_dict",
        "load_state_dict",
        "save",
        "print",
        "len",
        "add_param_group",
        "prepare",
        "accumulate",
        "autocast",
        "get_last_lr",
        "log",
        "info",
        "debug",
        "warning",
        "append",
        "isinstance",
        "getattr",
        "format",
        "str",
    }
)


def _overwrites_gradients(model: Model) -> bool:
    """MXNet's backward writes gradients instead of adding to them: nothing to clear."""
    return "mxnet" in model.imports and "torch" not in model.imports


def missing_zero_grad(model: Model) -> Iterator[Hit]:
    if _overwrites_gradients(model):
        return
    for scope in model.scopes:
        events = model.events(scope)
        backwards = [e for e in events if e.kind == BACKWARD]
        if not backwards:
            continue
        reported: set[tuple[str, int]] = set()
        for step in _optimizer_steps(model, events):
            loop = _innermost_loop_with(step, backwards)
            if loop is None or (step.name, id(loop)) in reported:
                continue
            in_loop = [e for e in events if e.in_loop(loop)]
            if any(_clears(model, e, step.name) for e in in_loop):
                continue
            reported.add((step.name, id(loop)))
            loop_backwards = [e for e in backwards if e.in_loop(loop)]
            yield Hit(
                "LL101",
                step.node,
                f"`{step.name}` steps inside {loop_label(loop)}, which runs `backward()`, but its "
                "gradients are never cleared: each step applies the sum of all earlier batches' "
                f"gradients; call `{step.name}.zero_grad()` once per step",
                fix=lambda source, step=step, b=loop_backwards: _insert_zero_grad(model, source, step, b),
            )


def _innermost_loop_with(step: Event, backwards: list[Event]) -> Loop | None:
    for loop in reversed(step.loops):
        if any(b.in_loop(loop) and not b.exclusive_with(step) for b in backwards):
            return loop
    return None


def _insert_zero_grad(model: Model, source: fixes.Source, step: Event, backwards: list[Event]) -> Fix | None:
    """Before the loop's one backward when it sits beside the step; otherwise right after the step."""
    clear = f"{step.name}.zero_grad()"
    if (
        len(backwards) == 1
        and fixes.sole_statement(backwards[0].statement, backwards[0].node)
        and model.block_of.get(backwards[0].statement, (None,))[0]
        is model.block_of.get(step.statement, (0,))[0]
    ):
        indent = source.indent(backwards[0].statement)
        if indent is not None:
            start, _ = source.lines(backwards[0].statement)
            edit = fixes.Edit(start, start, fixes.line_with_newline(source, clear, indent))
            return Fix(f"Insert `{clear}` before the backward pass", (edit,))
    if not fixes.sole_statement(step.statement, step.node):
        return None
    edit = fixes.insert_after(source, step.statement, clear)
    return Fix(f"Insert `{clear}` after the step", (edit,)) if edit else None


def zero_grad_between_backward_and_step(model: Model) -> Iterator[Hit]:
    for scope in model.scopes:
        events = model.events(scope)
        for index, step in enumerate(events):
            if step.kind != STEP or model.role(step.name) != "optimizer":
                continue
            owned = {step.name} | model.models_of(step.name)
            clear: Event | None = None
            backward: Event | None = None
            for earlier in reversed(events[:index]):
                if earlier.exclusive_with(step):
                    continue
                if earlier.kind == STEP and earlier.name == step.name:
                    break
                if earlier.kind == BACKWARD:
                    backward = earlier
                    break
                if earlier.kind == CLEAR and clear is None and earlier.name in owned:
                    clear = earlier
            if clear is None or backward is None or clear.exclusive_with(backward):
                continue
            yield Hit(
                "LL102",
                clear.node,
                f"`{clear.name}.zero_grad()` runs after `backward()` and before `{step.name}.step()`: "
                "the gradients are wiped before the step can use them, so the step does nothing; "
                "clear them before the backward pass",
                fix=lambda source, evs=events, c=clear, s=step, i=index: _move_clear(
                    model, source, evs, c, s, i
                ),
            )


def _move_clear(
    model: Model, source: fixes.Source, events: list[Event], clear: Event, step: Event, index: int
):
    """Move the clear before the first backward since the optimizer's last step, if in one block."""
    if not fixes.sole_statement(clear.statement, clear.node):
        return None
    block = model.block_of.get(clear.statement, (None,))[0]
    first = None
    for earlier in reversed(events[:index]):
        if earlier.kind == STEP and earlier.name == step.name:
            break
        if earlier.kind == CLEAR and earlier.name == clear.name and earlier is not clear:
            break
        if earlier.kind == BACKWARD:
            if model.block_of.get(earlier.statement, (None,))[0] is not block:
                return None
            first = earlier
    if first is None or first.statement is None:
        return None
    edits = fixes.move_before(source, clear.statement, first.statement)
    return Fix("Move the gradient clearing before the backward pass", edits) if edits else None
