"""LL204 periodic-check-outside-step-loop."""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from looplint.static import names
from looplint.static.model import (
    ACCUMULATE,
    ASSIGN,
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
        if (
            event.kind == ACCUMULATE
            and event.name == counter
            and event.loops
            and event.loops[-1] not in loops
        ):
            loops.append(event.loops[-1])
    return loops


def _period_fits(loop: Loop, check: Event, events: list[Event]) -> bool:
    """`for _ in range(k)` advances the counter by k per pass: a period that is a multiple of k
    (`LOG_EVERY = ROLLOUT * 100` with `range(ROLLOUT)`) is met on a pass boundary."""
    if not loop.counted:
        return False
    for modulus in check.data.get("moduli", ()):
        if (
            loop.count
            and isinstance(modulus, cst.Integer)
            and int(modulus.value.replace("_", ""), 0) % loop.count == 0
        ):
            return True
        if loop.count_name is not None and loop.count_name in _defining_names(modulus, events):
            return True
    return False


def _defining_names(modulus: cst.BaseExpression, events: list[Event]) -> set[str]:
    """The names a period is written with, and those its names were assigned from."""
    found = set(names.dotted_names(modulus))
    for event in events:
        if event.kind == ASSIGN and event.name in found and "source" in event.data:
            found |= set(names.dotted_names(event.data["source"]))
    return found


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
                    if not _period_fits(loop, check, model.events(model.root) + events)
                    and any(e.in_loop(loop) and e.in_loop(check.loops[-1]) for e in events)
                ]
                if not inner:
                    continue
                test = getattr(check.node, "test", check.node)
                # `if step % n:` without `== 0` is true off the period, so nearly always.
                bare = isinstance(test, cst.BinaryOperation) and isinstance(test.operator, cst.Modulo)
                effect = "true at nearly every pass, not once per period" if bare else "true rarely or never"
                yield Hit(
                    "LL204",
                    test,
                    f"`{counter}` advances in {loop_label(inner[0])}, but this periodic check runs "
                    f"outside it, in {loop_label(check.loops[-1])}: it only sees `{counter}` once per "
                    f"pass and is {effect}; move the check into the loop that advances it",
                )
                break
