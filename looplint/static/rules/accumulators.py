"""LL201 accumulator-reset-misplaced, LL202 unaveraged-loss-logged, LL203 loss-tensor-accumulated.

A loss accumulator is a name that gets `+=` a loss inside a loop deeper than where it is reset to
zero, so it sums the losses of several iterations.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import libcst as cst

from looplint.findings import Edit, Fix
from looplint.static import names
from looplint.static.model import (
    ACCUMULATE,
    ASSIGN,
    BACKWARD,
    DIVIDE,
    READ,
    Event,
    Model,
    Scope,
)
from looplint.static.rules import Hit, is_prefix, loop_label, same_loops


@dataclass
class Accumulator:
    name: str
    updates: list[Event] = field(default_factory=list)
    resets: list[Event] = field(default_factory=list)
    divides: list[Event] = field(default_factory=list)
    reads: list[Event] = field(default_factory=list)

    @property
    def spans_iterations(self) -> bool:
        """Updated in a loop the resets are outside of: it sums several iterations."""
        update = self.updates[0]
        return not self.resets or any(
            len(r.loops) < len(update.loops) and is_prefix(r.loops, update.loops) for r in self.resets
        )


def _accumulators(model: Model, events: list[Event]) -> list[Accumulator]:
    found: dict[str, Accumulator] = {}
    for event in events:
        if (
            event.kind == ACCUMULATE
            and event.loops
            and not event.data["constant"]
            and (event.data["loss_term"] or names.looks_like_loss(event.name or ""))
        ):
            found.setdefault(event.name, Accumulator(event.name)).updates.append(event)
    if not found:
        return []
    statements = {id(u.statement) for acc in found.values() for u in acc.updates}
    for event in events:
        acc = found.get(event.name or "")
        if acc is None:
            if event.kind == READ and event.name and "." in event.name:
                acc = found.get(event.name.rsplit(".", 1)[0])
                if acc is not None and event.data.get("method") is None:
                    acc = None
            if acc is None:
                continue
        if event.kind == ASSIGN and event.data["value_kind"] == "zero":
            acc.resets.append(event)
        elif event.kind == DIVIDE:
            acc.divides.append(event)
        elif event.kind == READ and id(event.statement) not in statements:
            acc.reads.append(event)
    backwarded = {e.name for e in events if e.kind == BACKWARD and e.name}
    # A sum that is itself differentiated is a loss built from several terms, not a log of losses.
    return [
        acc
        for acc in found.values()
        if acc.resets and acc.name not in backwarded and not _feeds_backward(events, acc.name, backwarded)
    ]


def _counter_spans(model: Model, events: list[Event], acc: Accumulator, read: Event) -> bool:
    """The read divides by a count that restarts with the sum: a cumulative mean is correct."""
    divisors = read.data.get("divisors") or frozenset()
    if not divisors:
        return False
    update = acc.updates[0]
    reset_depth = min(len(r.loops) for r in acc.resets)
    restarting = update.loops[reset_depth:]
    for divisor in divisors:
        if any(divisor in loop.targets for loop in restarting):
            return True
        counter_updates = [e for e in events if e.kind == ACCUMULATE and e.name == divisor]
        counter_resets = [e for e in events if e.kind == ASSIGN and e.name == divisor]
        if counter_updates and all(
            any(same_loops(c.loops, r.loops) for r in acc.resets) for c in counter_resets
        ):
            return True
    return False


def accumulator_reset_misplaced(model: Model) -> Iterator[Hit]:
    for scope in model.scopes:
        events = model.events(scope)
        for acc in _accumulators(model, events):
            hit = _misplaced_reset(model, events, acc)
            if hit is not None:
                yield hit


def _misplaced_reset(model: Model, events: list[Event], acc: Accumulator) -> Hit | None:
    update = acc.updates[0]
    for read in acc.reads:
        if not is_prefix(read.loops, update.loops):
            continue  # read in another loop nest (e.g. a validation loop)
        periodic_peek = same_loops(read.loops, update.loops) and read.periodic
        if len(read.loops) == len(update.loops) and not periodic_peek:
            continue  # a running value read each iteration: not a summary of a window
        if any(same_loops(r.loops, read.loops) for r in acc.resets):
            continue
        if _counter_spans(model, events, acc, read):
            continue
        shallow = [r for r in acc.resets if len(r.loops) < len(read.loops) and is_prefix(r.loops, read.loops)]
        if shallow:
            reset = shallow[-1]
            window = read.loops[len(reset.loops)] if len(read.loops) > len(reset.loops) else read.loops[-1]
            where = "the periodic block that reads it" if periodic_peek else loop_label(read.loops[-1])
            return Hit(
                "LL201",
                reset.node,
                f"`{acc.name}` is reset outside {loop_label(window)}, so the value read there sums "
                f"several iterations of it and keeps growing; reset it inside {where}",
            )
        deep = [r for r in acc.resets if len(r.loops) > len(read.loops) and is_prefix(read.loops, r.loops)]
        if deep:
            reset = deep[0]
            return Hit(
                "LL201",
                reset.node,
                f"`{acc.name}` is reset inside {loop_label(reset.loops[-1])}, so the value read after it "
                "holds only its last iteration; reset it before that loop",
            )
    return None


def unaveraged_loss_logged(model: Model) -> Iterator[Hit]:
    for scope in model.scopes:
        events = model.events(scope)
        for acc in _accumulators(model, events):
            if not acc.spans_iterations or _prescaled(events, acc):
                continue
            aliases = _aliases(events, acc.name)
            for index, event in enumerate(events):
                if (
                    event.kind != READ
                    or not event.data.get("in_log")
                    or event.data.get("divisors") is not None
                ):
                    continue
                if (
                    event.name != acc.name
                    and event.name not in aliases
                    and not (
                        event.name.startswith(acc.name + ".")
                        and event.data.get("method") in ("item", "cpu", None)
                    )
                ):
                    continue
                if _divided_since_update(events[:index], acc.name):
                    continue
                yield Hit(
                    "LL202",
                    event.node,
                    f"`{acc.name}` is a sum of losses over many batches and is logged without dividing "
                    "by how many it holds, so the curve tracks the number of batches, not the loss; "
                    f"log `{acc.name} / <count>`",
                )
                break


def _prescaled(events: list[Event], acc: Accumulator) -> bool:
    """Each term is already divided (`loss = loss / k; total += loss.item()`): the sum is a mean."""
    for update in acc.updates:
        if update.data["divided"]:
            return True
        position = next(i for i, e in enumerate(events) if e is update)
        for name in update.data["variables"]:
            for earlier in reversed(events[:position]):
                if earlier.kind == ASSIGN and earlier.name == name:
                    if earlier.data["divided"]:
                        return True
                    break
    return False


def _aliases(events: list[Event], name: str) -> set[str]:
    """`epoch_loss = running_loss` or `= running_loss.item()` / `float(running_loss)`."""
    aliases = set()
    for event in events:
        if event.kind != ASSIGN:
            continue
        value = event.data["value"]
        if isinstance(value, cst.Call) and names.callee_name(value) in ("item", "float"):
            inner = (
                value.func.value
                if isinstance(value.func, cst.Attribute) and not value.args
                else (value.args[0].value if value.args else None)
            )
            value = inner
        if value is not None and names.dotted(value) == name:
            aliases.add(event.name)
    return aliases


def _divided_since_update(before: list[Event], name: str) -> bool:
    for event in reversed(before):
        if event.name != name:
            continue
        if event.kind == DIVIDE:
            return True
        if event.kind == ACCUMULATE:
            return False
    return False


def loss_tensor_accumulated(model: Model) -> Iterator[Hit]:
    for scope in model.scopes:
        events = model.events(scope)
        always_no_grad = _always_no_grad(model, scope)
        for acc in _accumulators(model, events):
            if not acc.spans_iterations or _returned_as_loss(scope, acc):
                continue
            for update in acc.updates:
                if update.no_grad or always_no_grad:
                    continue
                raw = [t for t in update.data["raw_loss_terms"] if _attached(model, events, update, t)]
                if not raw:
                    continue
                suffix = ".detach()" if _tensor_accumulator(events, acc) else ".item()"
                yield Hit(
                    "LL203",
                    update.node,
                    f"`{acc.name} += ...` adds a loss tensor that still requires grad: every iteration's "
                    f"autograd graph stays alive and memory grows; add `{suffix}`",
                    fix=lambda source, u=update, s=suffix: _detach_fix(source, u, s),
                )
                break


def _returned_as_loss(scope: Scope, acc: Accumulator) -> bool:
    """Loss functions and forward passes build a loss from terms for the caller to differentiate;
    so does any function that returns the plain sum."""
    name = scope.name.lower()
    if "loss" in name or name in ("forward", "__call__"):
        return True
    returned = [r for r in acc.reads if _is_return(r.statement)]
    return any(r.data.get("divisors") is None for r in returned)


def _is_return(statement: cst.CSTNode | None) -> bool:
    return isinstance(statement, cst.SimpleStatementLine) and any(
        isinstance(small, cst.Return) for small in statement.body
    )


def _attached(model: Model, events: list[Event], update: Event, term: cst.CSTNode) -> bool:
    """Is this term a loss tensor still on the graph? Decided by the name's last binding."""
    if isinstance(term, cst.Call):
        return True  # criterion(out, y) straight into the sum
    name = names.dotted(term)
    if name is None:
        return False
    if any(e.kind == BACKWARD and e.name == name for e in events):
        return True
    position = next(i for i, e in enumerate(events) if e is update)
    for earlier in reversed(events[:position]):
        if earlier.kind == ASSIGN and earlier.name == name:
            return earlier.data["value_kind"] == "loss"
    return False


def _tensor_accumulator(events: list[Event], acc: Accumulator) -> bool:
    """Reset with torch.zeros/tensor, or used as a tensor later (`.item()`): keep it a tensor."""
    for reset in acc.resets:
        value = reset.data["value"]
        if isinstance(value, cst.Call):
            return True
    return any(read.data.get("method") in ("item", "cpu", "detach", "numpy") for read in acc.reads)


def _feeds_backward(events: list[Event], name: str, backwarded: set[str]) -> bool:
    """`loss = total / k; loss.backward()`: the sum itself is what gets differentiated."""
    for event in events:
        if event.kind == ASSIGN and event.name in backwarded:
            if name in names.dotted_names(event.data["value"]):
                return True
    return False


def _always_no_grad(model: Model, scope: Scope) -> bool:
    """A helper every caller of which runs it under no_grad (an evaluation function)."""
    if scope.no_grad:
        return True
    calls = model.call_sites(scope)
    return bool(calls) and all(call.no_grad for call in calls)


def _detach_fix(source, update: Event, suffix: str) -> Fix | None:
    node = update.node
    if not isinstance(node, cst.AugAssign):
        return None
    value = node.value
    start, end = source.span(value)
    text = source.text[start:end]
    if isinstance(value, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)):
        edit = Edit(end, end, suffix)
    else:
        edit = Edit(start, end, f"({text}){suffix}")
    return Fix(f"Add `{suffix}` to the accumulated loss", (edit,))
