"""LL204 periodic-check-outside-step-loop."""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from looplint.static.model import (
    ACCUMULATE,
    BACKWARD,
    LOG,
    PERIODIC,
    STEP,
    WRITE,
    Event,
    Loop,
    Model,
)
from looplint.static.rules import Hit, loop_label


def _advancing_loops(events: list[Event], counter: str) -> list[Loop]:
    """Loops that move the counter on: it is their target, or `counter += ...` runs in them."""
    loops: list[Loop] = []
    for event in events:
        for loop in event.loops:
            if counter in loop.targets and loop not in loops:
                loops.append(loop)
        if event.kind == ACCUMULATE and event.name == counter and event.loops:
            if event.loops[-1] not in loops:
                loops.append(event.loops[-1])
    return loops


def _fixed_count(loop: Loop) -> bool:
    """`for _ in range(k)` advances the counter by a fixed k per pass: the period may be a multiple."""
    node = loop.node
    return (
        isinstance(node, cst.For)
        and isinstance(node.iter, cst.Call)
        and isinstance(node.iter.func, cst.Name)
        and node.iter.func.value == "range"
    )


def _trains(model: Model, events: list[Event], loop: Loop) -> bool:
    """The loop holds a training step or logging: a periodic check there is about training."""
    return any(
        e.in_loop(loop) and (e.kind in (BACKWARD, WRITE, LOG) or (e.kind == STEP and model.role(e)))
        for e in events
    )


def periodic_check_outside_step_loop(model: Model) -> Iterator[Hit]:
    for scope in model.scopes:
        events = model.events(scope)
        for check in (
            e for e in events if e.kind == PERIODIC and e.loops and _trains(model, events, e.loops[-1])
        ):
            for counter in sorted(check.data["counters"]):
                advancing = _advancing_loops(events, counter)
                if not advancing or any(check.in_loop(loop) for loop in advancing):
                    continue
                # Only a counter advanced by a loop nested inside the check's loop.
                inner = [
                    loop
                    for loop in advancing
                    if not _fixed_count(loop)
                    and any(e.in_loop(loop) and e.in_loop(check.loops[-1]) for e in events)
                ]
                if not inner:
                    continue
                yield Hit(
                    "LL204",
                    check.node.test,
                    f"`{counter}` advances in {loop_label(inner[0])}, but this periodic check runs "
                    f"outside it, in {loop_label(check.loops[-1])}: it only sees `{counter}` once per "
                    "pass and is true rarely or never; move the check into the loop that advances it",
                )
                break
