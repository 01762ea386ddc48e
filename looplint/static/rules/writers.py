"""LL301 writer-close-in-loop, LL302 scalar-logged-as-image, LL303 writer-used-after-close."""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from looplint.findings import Fix
from looplint.static import fixes, names
from looplint.static.model import ASSIGN, CLOSE, GUARD, JUMP, WRITE, Event, Loop, Model
from looplint.static.rules import Hit, elsewhere, loop_label


def _is_writer(model: Model, close: Event, events: list[Event]) -> bool:
    if close.name is None:
        return False
    return model.role(close) == "writer" or any(e.kind == WRITE and model.same(e, close) for e in events)


def _last_iteration_only(events: list[Event], index: int, loop: Loop) -> bool:
    """`if epoch == epochs - 1: writer.close()` or `if done: writer.close(); break`."""
    close = events[index]
    if _jump_after(events, index) in ("break", "return"):
        return True
    branches = {branch[:2] for branch in close.branches}
    return any(
        e.kind == GUARD and e.data["branch"][:2] in branches and e.data["compared"] & set(loop.targets)
        for e in events
    )


def _closing_loop(model: Model, events: list[Event], index: int) -> Loop | None:
    """The outermost loop around the close that also writes with that writer and reuses it."""
    close = events[index]
    for loop in close.loops:
        if close.name in loop.targets or any(close.name.startswith(t + ".") for t in loop.targets):
            return None  # `for w in writers: w.close()`
        in_loop = [e for e in events if e.in_loop(loop)]
        if any(e.kind == ASSIGN and e.name == close.name for e in in_loop):
            continue  # a new writer each iteration
        if _last_iteration_only(events, index, loop):
            return None
        if any(e.kind == WRITE and model.same(e, close) for e in in_loop):
            return loop
    return None


def writer_close_in_loop(model: Model) -> Iterator[Hit]:
    for scope in model.scopes:
        events = model.events(scope)
        closes = [
            (i, e)
            for i, e in enumerate(events)
            if e.kind == CLOSE and e.loops and _is_writer(model, e, events)
        ]
        placed: set[int] = set()
        for index, close in closes:
            loop = _closing_loop(model, events, index)
            if loop is None:
                continue
            first_for_loop = id(loop) not in placed
            placed.add(id(loop))
            yield Hit(
                "LL301",
                close.node,
                f"`{close.name}.close()`{elsewhere(close)} runs inside {loop_label(loop)}, which writes to it again: "
                "the next write silently opens a new event file, and the run is split across files; "
                "close the writer once, after training",
                fix=None
                if close.foreign or loop.node is None
                else lambda source, evs=events, c=close, lp=loop, once=first_for_loop: _move_close(
                    model, source, evs, c, lp, once
                ),
            )


def _move_close(model: Model, source, events, close: Event, loop: Loop, insert: bool) -> Fix | None:
    if not fixes.sole_statement(close.statement, close.node):
        return None
    owner, _ = model.block_of.get(close.statement, (None, 0))
    if owner is None or len(getattr(owner, "body", ())) < 2:
        return None  # the close is alone in its block: deleting it would leave it empty
    edits = [fixes.delete_line(source, close.statement)]
    if insert and not _closed_after(events, close, loop):
        text = fixes.statement_text(source, close.statement)
        edit = fixes.insert_after(source, loop.node, text) if text else None
        if edit is None:
            return None
        edits.insert(0, edit)
    return Fix("Move the close after the training loop", tuple(edits))


def _closed_after(events: list[Event], close: Event, loop: Loop) -> bool:
    after = False
    for event in events:
        if event.in_loop(loop):
            after = True
            continue
        if after and event.kind == CLOSE and event.name == close.name and not event.foreign:
            return True
    return False


def writer_used_after_close(model: Model) -> Iterator[Hit]:
    for scope in model.scopes:
        events = model.events(scope)
        for index, close in enumerate(events):
            if close.kind != CLOSE or not _is_writer(model, close, events):
                continue
            if close.loops and _closing_loop(model, events, index) is not None:
                continue  # reported by LL301
            leaves = _jump_after(events, index)
            if leaves == "return":
                continue
            for later in events[index + 1 :]:
                if leaves and close.loops and later.in_loop(close.loops[-1]):
                    continue  # `close(); break`: the rest of the loop body does not run
                if later.kind == ASSIGN and later.name == close.name:
                    break
                if later.kind != WRITE or not model.same(later, close):
                    continue
                if not later.exclusive_with(close):
                    yield Hit(
                        "LL303",
                        later.node,
                        f"`{later.name}.{later.data['method']}()`{elsewhere(later)} runs after "
                        f"`{close.name}.close()`{elsewhere(close)}: "
                        "SummaryWriter silently opens a new event file for it, which nothing closes "
                        "again, so its last events can be lost; write everything before closing",
                    )
                    break


def _jump_after(events: list[Event], index: int) -> str | None:
    """'break', 'continue' or 'return' when one ends the event's block after it."""
    event = events[index]
    for later in events[index + 1 :]:
        if not (
            later.loops[: len(event.loops)] == event.loops
            and later.branches[: len(event.branches)] == event.branches
        ):
            return None  # left the block
        if later.kind == JUMP and later.loops == event.loops and later.branches == event.branches:
            return later.name
    return None


def scalar_logged_as_image(model: Model) -> Iterator[Hit]:
    for scope in model.scopes:
        for event in scope.events:
            if event.kind != WRITE or event.data["method"] not in names.IMAGE_METHODS:
                continue
            image = _image_argument(event.node)
            value = _image_value(event.data.get("call"))
            if image is None or value is None:
                continue
            known = model.known(value)
            if known.numeric or (known.loss and known.kind in ("tensor", "number")):
                yield Hit(
                    "LL302",
                    image,
                    f"`{event.data['method']}()` receives a number (a loss?), not an image tensor "
                    "of shape (C, H, W): it fails or draws nothing useful; log numbers with "
                    "`add_scalar()`",
                )


def _image_argument(call: cst.Call) -> cst.BaseExpression | None:
    positional = [a for a in call.args if a.keyword is None and not a.star]
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value in ("img_tensor", "image"):
            return arg.value
    return positional[1].value if len(positional) > 1 else None


def _image_value(call):
    """The value of the image argument, from the call's symbolic arguments."""
    if call is None:
        return None
    keywords = dict(call.kwargs)
    for keyword in ("img_tensor", "image"):
        if keyword in keywords:
            return keywords[keyword]
    return call.args[1] if len(call.args) > 1 else None
