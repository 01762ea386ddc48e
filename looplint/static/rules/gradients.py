"""LL101 missing-zero-grad, LL102 zero-grad-between-backward-and-step, LL103 clip-before-backward,
LL104 clip-without-unscale."""

from __future__ import annotations

from collections.abc import Iterator

from looplint.findings import Fix
from looplint.static import fixes, names
from looplint.static.model import BACKWARD, CALL, CLEAR, CLIP, STEP, UNSCALE, Event, Loop, Model
from looplint.static.rules import Hit, elsewhere, loop_label
from looplint.static.values import Attr, Call, unbound


def _optimizer_steps(model: Model, events: list[Event]) -> Iterator[Event]:
    return (e for e in events if e.kind == STEP and model.role(e) == "optimizer")


def _clears(model: Model, event: Event, step: Event) -> bool:
    """Could this event clear the step's gradients? Unknown helpers get the benefit of the doubt."""
    if event.kind == CLEAR:
        # model.zero_grad(), self.zero_grad(), `p.grad = None` and `for opt in opts: opt.zero_grad()`
        # clear whatever they cover.
        if model.same(event, step) or model.role(event) != "optimizer":
            return True
        identity = model.identity(step.value)
        if identity is not None and model.may_be(event.value, identity):
            return True
        return any(event.name in loop.targets for loop in event.loops)
    if event.kind == STEP:
        return model.role(event) == "engine"  # DeepSpeed's engine.step() clears gradients
    if event.kind == CALL and not event.data.get("bound"):
        callee = (event.name or "").rsplit(".", 1)[-1]
        if (
            callee in _NEVER_CLEARS
            or callee.startswith(_NEVER_CLEARS_PREFIXES)
            or names.looks_like_scaler((event.name or "").rsplit(".", 1)[0])
        ):
            return False
        call = unbound(event.data.get("call"))
        identity = model.identity(step.value)
        passed = [model.identity(argument) for argument in (call.args if isinstance(call, Call) else ())]
        by_name = step.name in event.data.get("args", ())
        return (
            (identity is not None and identity in passed)
            or by_name
            or (step.name is not None and (event.name or "").startswith(step.name + "."))
        )
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
        reported: set[tuple] = set()
        for step in _optimizer_steps(model, events):
            loop = _innermost_loop_with(step, backwards)
            key = (model.identity(step.value) or step.name, id(loop))
            if loop is None or key in reported:
                continue
            in_loop = [e for e in events if e.in_loop(loop)]
            if any(_clears(model, e, step) for e in in_loop):
                continue
            reported.add(key)
            loop_backwards = [e for e in backwards if e.in_loop(loop)]
            yield Hit(
                "LL101",
                step.node,
                f"`{step.name}` steps{elsewhere(step)} inside {loop_label(loop)}, which runs "
                "`backward()`, but its gradients are never cleared: each step applies the sum of all "
                f"earlier batches' gradients; call `{step.name}.zero_grad()` once per step",
                fix=None
                if step.foreign
                else lambda source, step=step, b=loop_backwards: _insert_zero_grad(model, source, step, b),
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
        and not backwards[0].foreign
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


def _clears_for(model: Model, clear: Event, step: Event) -> bool:
    """Does this clear wipe the gradients the step uses (its optimizer, or the model it trains)?"""
    if clear.kind != CLEAR or clear.name == "*":
        return False
    if model.same(clear, step):
        return True
    return clear.name in model.parameter_sources(step)


def zero_grad_between_backward_and_step(model: Model) -> Iterator[Hit]:
    for scope in model.scopes:
        events = model.events(scope)
        reported: set[int] = set()
        for index, step in enumerate(events):
            if step.kind != STEP or model.role(step) != "optimizer":
                continue
            hit = _cleared_before_step(model, events, index, step) or _accumulation_defeated(
                model, events, step
            )
            if hit is not None and id(hit.node) not in reported:
                reported.add(id(hit.node))
                yield hit


def _cleared_before_step(model: Model, events: list[Event], index: int, step: Event) -> Hit | None:
    """`loss.backward(); optimizer.zero_grad(); optimizer.step()`."""
    clear: Event | None = None
    backward: Event | None = None
    for earlier in reversed(events[:index]):
        if step.loops and not earlier.in_loop(step.loops[-1]):
            break  # the backward of another iteration, or from before the loop
        if earlier.exclusive_with(step):
            continue
        if earlier.kind == STEP and model.same(earlier, step):
            break
        if earlier.kind == BACKWARD:
            backward = earlier
            break
        if clear is None and _clears_for(model, earlier, step):
            clear = earlier
    if clear is None or backward is None or clear.exclusive_with(backward):
        return None
    return Hit(
        "LL102",
        clear.node,
        f"`{clear.name}.zero_grad()`{elsewhere(clear)} runs after `backward()` and before "
        f"`{step.name}.step()`: the gradients are wiped before the step can use them, so the step "
        "does nothing; clear them before the backward pass",
        fix=None
        if clear.foreign or step.foreign
        else lambda source, evs=events, c=clear, s=step, i=index: _move_clear(model, source, evs, c, s, i),
    )


def _accumulation_defeated(model: Model, events: list[Event], step: Event) -> Hit | None:
    """`if (i + 1) % k == 0: optimizer.step()` and an unconditional `optimizer.zero_grad()` in the
    same loop: every iteration wipes the gradients the next step was to sum."""
    loop = _periodic_loop(events, step)
    if loop is None:
        return None
    depth = step.loops.index(loop) + 1
    same_pass = [e for e in events if e.in_loop(loop) and e.loops[:depth] == step.loops[:depth]]
    if not any(e.kind == BACKWARD and e.every_iteration(loop) for e in same_pass):
        return None
    guard = _innermost_guard(step, depth)
    if any(e.kind == BACKWARD and guard in e.branches for e in same_pass):
        return None  # the step's own backward runs with it (a WGAN generator every n_critic steps)
    clears = [e for e in same_pass if _clears_for(model, e, step)]
    every_iteration = [c for c in clears if c.every_iteration(loop)]
    if not every_iteration or len(every_iteration) < len(clears):
        return None
    clear = every_iteration[0]
    return Hit(
        "LL102",
        clear.node,
        f"`{clear.name}.zero_grad()`{elsewhere(clear)} runs on every iteration of {loop_label(loop)}, "
        f"but `{step.name}.step()` only under a periodic condition: the gradients summed since the "
        "last step are wiped before the next step can use them, so gradient accumulation does "
        "nothing; clear right after the step, inside the same `if`",
    )


def _innermost_guard(step: Event, depth: int) -> tuple:
    """The `if` inside the loop (depth `depth`) that holds the step."""
    inside = [branch for branch in step.branches if branch[2] >= depth]
    return inside[0] if inside else ()


def _periodic_loop(events: list[Event], step: Event) -> Loop | None:
    """The loop whose iterations the step's periodic test (`if (i + 1) % k == 0`) counts."""
    if not step.periodic:
        return None
    tests = {branch[0]: branch[2] for branch in step.branches}
    for event in events:
        if event.kind == "periodic" and not event.foreign and id(event.node) in tests:
            depth = tests[id(event.node)]
            if depth and step.loops[:depth] == event.loops[:depth]:
                return step.loops[depth - 1]
    return None


def _move_clear(
    model: Model, source: fixes.Source, events: list[Event], clear: Event, step: Event, index: int
):
    """Move the clear before the first backward since the optimizer's last step, if in one block."""
    if not fixes.sole_statement(clear.statement, clear.node):
        return None
    block = model.block_of.get(clear.statement, (None,))[0]
    first = None
    for earlier in reversed(events[:index]):
        if earlier.kind == STEP and model.same(earlier, step):
            break
        if earlier.kind == CLEAR and earlier.name == clear.name and earlier is not clear:
            break
        if earlier.kind == BACKWARD:
            if earlier.foreign or model.block_of.get(earlier.statement, (None,))[0] is not block:
                return None
            first = earlier
    if first is None or first.statement is None:
        return None
    edits = fixes.move_before(source, clear.statement, first.statement)
    return Fix("Move the gradient clearing before the backward pass", edits) if edits else None


def clip_before_backward(model: Model) -> Iterator[Hit]:
    for scope in model.scopes:
        events = model.events(scope)
        for index, clip in enumerate(events):
            if clip.kind != CLIP or _backward_before(model, events, index):
                continue
            step = _step_after_backward(model, events, index)
            if step is None:
                continue
            yield Hit(
                "LL103",
                clip.node,
                f"`{_clip_name(clip)}()`{elsewhere(clip)} runs before `backward()`: it clips the "
                "gradients that are already there (cleared, or the last step's), and the gradients "
                f"`{step.name}.step()` then applies are never clipped; clip after the backward pass, "
                "right before the step",
                fix=None
                if clip.foreign or step.foreign
                else lambda source, c=clip, s=step: _move_before_step(model, source, c, s),
            )


def clip_without_unscale(model: Model) -> Iterator[Hit]:
    for scope in model.scopes:
        events = model.events(scope)
        for index, clip in enumerate(events):
            if clip.kind != CLIP or _clips_itself(model, clip):
                continue
            backward = _backward_before(model, events, index)
            if backward is None or not backward.data.get("scaler"):
                continue
            start = events.index(backward)
            if any(e.kind == UNSCALE and not e.exclusive_with(clip) for e in events[start:index]):
                continue
            scaler = backward.data["scaler"]
            step = _step_after(model, events, index)
            optimizer = step.name if step is not None else "optimizer"
            yield Hit(
                "LL104",
                clip.node,
                f"`{_clip_name(clip)}()`{elsewhere(clip)} runs on gradients that `{scaler}` has "
                "multiplied by the loss scale (65536 at the start): the threshold means nothing, so "
                "it clips everything or nothing; call "
                f"`{scaler}.unscale_({optimizer})` before clipping",
                fix=None
                if clip.foreign
                else lambda source, c=clip, sc=scaler, o=optimizer: _insert_unscale(model, source, c, sc, o),
            )


def _clip_name(clip: Event) -> str:
    return (clip.name or "clip_grad_norm_").rsplit(".", 1)[-1]


def _clips_itself(model: Model, clip: Event) -> bool:
    """`accelerator.clip_grad_norm_(...)` unscales first on its own."""
    if not isinstance(clip.value, Attr):
        return False
    base = clip.value.base
    receiver = (clip.name or "").rsplit(".", 1)[0]
    return model.role(base, receiver) == "engine" or receiver in model.engines or "accelerator" in receiver


def _backward_before(model: Model, events: list[Event], index: int) -> Event | None:
    """The backward pass of this iteration that ran before the event, if any."""
    event = events[index]
    loop = event.loops[-1] if event.loops else None
    for earlier in reversed(events[:index]):
        if loop is not None and not earlier.in_loop(loop):
            return None
        if earlier.exclusive_with(event):
            continue
        if earlier.kind == BACKWARD:
            return earlier
        if (earlier.kind == STEP and model.role(earlier) == "optimizer") or earlier.kind == CLEAR:
            return None
    return None


def _step_after(model: Model, events: list[Event], index: int) -> Event | None:
    event = events[index]
    for later in events[index + 1 :]:
        if later.kind == STEP and model.role(later) == "optimizer" and not later.exclusive_with(event):
            return later
    return None


def _step_after_backward(model: Model, events: list[Event], index: int) -> Event | None:
    """The optimizer step that follows a backward pass run after the event (wrapping around the
    event's loop: a clip at the end of the body clips before the next iteration's backward)."""
    event = events[index]
    loop = event.loops[-1] if event.loops else None
    following = events[index + 1 :]
    if loop is not None:
        following = [e for e in following if e.in_loop(loop)] + [e for e in events[:index] if e.in_loop(loop)]
    backward_seen = False
    for later in following:
        if later.exclusive_with(event):
            continue
        if later.kind == BACKWARD:
            backward_seen = True
        elif later.kind == STEP and model.role(later) == "optimizer":
            return later if backward_seen else None
    return None


def _move_before_step(model: Model, source: fixes.Source, clip: Event, step: Event) -> Fix | None:
    if not fixes.sole_statement(clip.statement, clip.node) or step.statement is None:
        return None
    if model.block_of.get(clip.statement, (None,))[0] is not model.block_of.get(step.statement, (0,))[0]:
        return None
    edits = fixes.move_before(source, clip.statement, step.statement)
    return Fix("Clip after the backward pass, right before the step", edits) if edits else None


def _insert_unscale(
    model: Model, source: fixes.Source, clip: Event, scaler: str, optimizer: str
) -> Fix | None:
    if not fixes.sole_statement(clip.statement, clip.node):
        return None
    indent = source.indent(clip.statement)
    if indent is None:
        return None
    start, _ = source.lines(clip.statement)
    line = f"{scaler}.unscale_({optimizer})"
    return Fix(
        f"Insert `{line}` before clipping",
        (fixes.Edit(start, start, fixes.line_with_newline(source, line, indent)),),
    )
