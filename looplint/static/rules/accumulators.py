"""LL201 accumulator-reset-misplaced, LL202 unaveraged-loss-logged, LL203 loss-tensor-accumulated,
LL205 loss-tensors-collected.

A loss accumulator is a variable that gets `+=` a loss (a value computed by a loss function, or
one that `backward()` runs on, or what a helper returns as one) inside a loop deeper than where
it is reset to zero, so it sums the losses of several iterations. Names do not matter: a
`running_total_loss` summed from anything else is not one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import libcst as cst

from looplint.findings import Edit, Fix
from looplint.static import names
from looplint.static.model import (
    ACCUMULATE,
    APPEND,
    ASSIGN,
    BACKWARD,
    DIVIDE,
    LOG,
    READ,
    STEP,
    Event,
    Model,
    Scope,
)
from looplint.static.rules import Hit, elsewhere, is_prefix, loop_label, same_loops
from looplint.static.values import Accum, Attr, Bin, Call, Item, Phi, Tup, unbound


@dataclass
class Accumulator:
    var: tuple
    name: str
    updates: list[Event] = field(default_factory=list)
    resets: list[Event] = field(default_factory=list)
    divides: list[Event] = field(default_factory=list)
    reads: list[Event] = field(default_factory=list)

    def spans_iterations(self, update: Event) -> bool:
        """Updated in a loop the resets are outside of: it sums several iterations."""
        return not self.resets or any(
            len(r.loops) < len(update.loops) and is_prefix(r.loops, update.loops) for r in self.resets
        )


def _reads_variable(event: Event, var: tuple) -> bool:
    """`total`, `total.item()` and `total.data` all read the variable `total`."""
    return (
        event.var is not None
        and event.var[0] == var[0]
        and (event.var[1] == var[1] or event.var[1].startswith(var[1] + "."))
    )


def _accumulators(model: Model, events: list[Event]) -> list[Accumulator]:
    """The loss accumulators of a scope, one per variable and loop nest: a notebook that reuses
    `train_loss` in three training loops has three accumulators, each with the reset that comes
    before its loop (or inside it) and the reads of its loop and of what follows it."""
    found: dict[tuple, Accumulator] = {}
    for event in events:
        if (
            event.kind == ACCUMULATE
            and event.loops
            and event.var is not None
            and not event.data["constant"]
            and model.known(event.data["term"]).loss
        ):
            key = (event.var, id(event.loops[0]))
            found.setdefault(key, Accumulator(event.var, event.name or "")).updates.append(event)
    if not found:
        return []
    position = {id(event): index for index, event in enumerate(events)}
    statements = {id(u.statement) for acc in found.values() for u in acc.updates}
    for (var, _), acc in found.items():
        nest = acc.updates[0].loops[0]
        inside = [e for e in events if e.in_loop(nest)]
        start = position[id(inside[0])]
        end = position[id(inside[-1])]
        # The binding the loop nest starts from, and what follows it until the next binding.
        before = next((e for e in reversed(events[:start]) if e.kind == ASSIGN and e.var == var), None)
        after: list[Event] = []
        for event in events[end + 1 :]:
            if event.kind == ASSIGN and event.var == var:
                break
            after.append(event)
        for event in ([before] if before is not None else []) + inside + after:
            if event.var is None:
                continue
            if event.kind == ASSIGN and event.var == var and model.known(event.value).zero:
                acc.resets.append(event)
            elif event.kind == DIVIDE and event.var == var:
                acc.divides.append(event)
            elif event.kind == READ and id(event.statement) not in statements and _reads_variable(event, var):
                acc.reads.append(event)
    # A sum that is itself differentiated is a loss built from several terms, not a log of losses.
    return [
        acc
        for acc in found.values()
        if acc.resets and not any(model.feeds_backward(u.value) for u in acc.updates)
    ]


def _varies_within(events: list[Event], acc: Accumulator, divisors: frozenset[str]) -> bool:
    """The read divides by a count that moves with the sum and restarts with it (`/ (i + 1)`
    over the loop the sum spans, `/ seen` reset beside it, `/ ((step - 1) % n + 1)`): a
    cumulative mean, correct wherever the sum is reset. A count recomputed the same way each
    time (`num_batches = len(X) // batch_size`) does not move; a batch index that restarts every
    epoch does not count a sum kept across epochs."""
    update = acc.updates[0]
    reset_depth = min(len(r.loops) for r in acc.resets)
    window = update.loops[reset_depth:]
    if not window:
        return False
    in_window = [e for e in events if any(e.in_loop(loop) for loop in window)]

    def moves_with_the_sum(name: str, depth: int = 0) -> bool:
        if name in window[0].targets:
            return True
        if any(e.kind in (ACCUMULATE, DIVIDE) and e.name == name for e in in_window):
            # a counter: it must not restart inside the window while the sum goes on
            return not any(e.kind == ASSIGN and e.name == name for e in in_window)
        if depth < 2:
            for event in in_window:
                if (
                    event.kind == ASSIGN
                    and event.name == name
                    and "source" in event.data
                    and any(moves_with_the_sum(n, depth + 1) for n in _arithmetic_names(event.data["source"]))
                ):
                    return True
        return False

    return any(moves_with_the_sum(divisor) for divisor in divisors)


_ARITHMETIC_CALLS = frozenset({"int", "float", "min", "max", "abs", "round"})


def _arithmetic_names(node: cst.CSTNode) -> list[str]:
    """Names a count is worked out from by arithmetic (`n = i * batch_size + 1`), not the
    arguments of other calls: a loader built from this fold's indices is not a running count."""
    found: list[str] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.Call) and names.dotted(current.func) not in _ARITHMETIC_CALLS:
            continue
        name = names.dotted(current) if isinstance(current, (cst.Name, cst.Attribute)) else None
        if name is not None:
            found.append(name)
        else:
            stack.extend(names.child_nodes(current))
    return found


def accumulator_reset_misplaced(model: Model) -> Iterator[Hit]:
    for scope in model.scopes:
        events = model.events(scope)
        for acc in _accumulators(model, events):
            hit = _misplaced_reset(events, acc)
            if hit is not None:
                yield hit


def _misplaced_reset(events: list[Event], acc: Accumulator) -> Hit | None:
    update = acc.updates[0]
    for read in acc.reads:
        if not is_prefix(read.loops, update.loops):
            continue  # read in another loop nest (e.g. a validation loop)
        periodic_peek = same_loops(read.loops, update.loops) and read.periodic
        if len(read.loops) == len(update.loops) and not periodic_peek:
            continue  # a running value read each iteration: not a summary of a window
        if any(same_loops(r.loops, read.loops) for r in acc.resets):
            continue
        if _varies_within(events, acc, read.data.get("divisors") or frozenset()):
            continue
        shallow = [r for r in acc.resets if len(r.loops) < len(read.loops) and is_prefix(r.loops, read.loops)]
        if shallow:
            reset = shallow[-1]
            window = read.loops[len(reset.loops)] if len(read.loops) > len(reset.loops) else read.loops[-1]
            where = (
                "the periodic block that reads it"
                if periodic_peek and window is read.loops[-1]
                else loop_label(window if periodic_peek else read.loops[-1])
            )
            return Hit(
                "LL201",
                reset.node,
                f"`{acc.name}` is reset outside {loop_label(window)}, so the value read there sums "
                f"several iterations of it and keeps growing; reset it inside {where}",
            )
        # Reset inside the very loop that adds to it: the sum never spans two iterations. (A reset
        # per epoch read after training is the last epoch's sum, which is what people mean.)
        too_deep = [
            r
            for r in acc.resets
            if len(r.loops) >= len(update.loops)
            and is_prefix(update.loops, r.loops)
            and len(r.loops) > len(read.loops)
        ]
        if too_deep:
            reset = too_deep[0]
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
        sums = {id(e.value): e.var for e in events if e.kind == ACCUMULATE}
        sum_names = {e.var: e.name for e in events if e.kind == ACCUMULATE}
        sum_values = {e.var: e.value for e in events if e.kind == ACCUMULATE}
        reported: set = set()
        for event in events:
            if event.kind == LOG and event.data.get("logged") is not None:
                value = event.data["logged"]  # `bar.desc = "loss {:.3f}".format(total)`
            elif event.kind == READ and event.data.get("in_log") and event.data.get("divisors") is None:
                value = _logged_item(model, event.value)  # (`print(*parts)` logs each of them)
            else:
                continue
            if not _loss_sum(model, value) or model.feeds_backward(value):
                continue  # (a sum that is differentiated is one loss built from several terms)
            key = _sums_in(value, sums) or event.name
            if key in reported:
                continue  # one finding per sum, however many places log it
            reported.add(key)
            # `epoch_str = "...".format(e, eval_loss)`: name the sum, not the string carrying it
            # (of the sums it carries, the loss sums: `hits` printed beside `loss_sum` is a count)
            carried: list[str] = []
            if isinstance(key, frozenset):
                loss_sums = [var for var in key if _loss_sum(model, sum_values[var])] or list(key)
                carried = sorted(sum_names[var] for var in loss_sums)
            name = event.name if not carried or event.name in carried else carried[0]
            carrier = "in" if model.known(value).kind == "str" else "as"  # a message, or a copy
            through = f" ({carrier} `{event.name}`)" if name != event.name else ""
            passed = _passed_sum(model, events, event) if not carried else None
            if passed is not None:  # `pprint("valid %.4f" % val_loss)`: the helper's parameter
                name, through = passed, f" (by `{event.data['via'][0].name}()`)"
            yield Hit(
                "LL202",
                event.node,
                f"`{name}` is a sum of losses over many batches and is logged{through}{elsewhere(event)} "
                "without dividing by how many it holds, so the curve tracks the number of batches, "
                f"not the loss; log `{name} / <count>`",
            )


def _passed_sum(model: Model, events: list[Event], event: Event) -> str | None:
    """For a log inside a helper, reached through an argument that is not a plain name (a
    formatted message): the caller's variable in that argument that holds the sum."""
    via = event.data.get("via")
    if not via or names.dotted(event.node) is not None:
        return None
    read = set(names.dotted_names(event.node))
    return next(
        (
            other.name
            for other in events
            if other.kind == READ
            and other.statement is event.statement
            and other.name in read
            and _loss_sum(model, other.value)
        ),
        None,
    )


def _logged_item(model: Model, value):
    """The value a log shows; of a tuple (`log(*parts)`), the first that is a sum of losses."""
    if isinstance(unbound(value), Tup):
        return next((item for item in unbound(value).items if _loss_sum(model, item)), value)
    return value


def _loss_sum(model: Model, value) -> bool:
    known = model.known(value)
    return known.summed and known.loss and not known.divided


def _sums_in(value, sums: dict[int, tuple], depth: int = 0) -> frozenset:
    """The accumulator variables a logged value is made from."""
    value = unbound(value)
    if value is None or depth > 20:
        return frozenset()
    if id(value) in sums:
        return frozenset({sums[id(value)]})
    children: tuple = ()
    if isinstance(value, (Attr, Item)):
        children = (value.base,)
    elif isinstance(value, Call):
        children = (value.func, *value.args)
    elif isinstance(value, Bin):
        children = (value.left, value.right)
    elif isinstance(value, (Tup, Phi)):
        children = value.items if isinstance(value, Tup) else value.options
    elif isinstance(value, Accum):
        children = (value.prev,)
    return frozenset().union(*(_sums_in(child, sums, depth + 1) for child in children))


def loss_tensor_accumulated(model: Model) -> Iterator[Hit]:
    for scope in model.scopes:
        events = model.events(scope)
        always_no_grad = _always_no_grad(model, scope)
        for acc in _accumulators(model, events):
            if _returned_as_loss(model, scope) or _restarted_every_step(model, events, acc):
                continue
            for update in acc.updates:
                if update.no_grad or always_no_grad or not acc.spans_iterations(update):
                    continue
                if not model.known(update.data["term"]).attached:
                    continue
                suffix = ".detach()" if _tensor_accumulator(model, acc) else ".item()"
                yield Hit(
                    "LL203",
                    update.node,
                    f"`{acc.name} += ...` adds a loss tensor that still requires grad: every iteration's "
                    f"autograd graph stays alive and memory grows; add `{suffix}`",
                    fix=None
                    if update.foreign
                    else lambda source, u=update, s=suffix: _detach_fix(source, u, s),
                )
                break


def _restarted_every_step(model: Model, events: list[Event], acc: Accumulator) -> bool:
    """The sum restarts in each iteration of the loop that runs the backward pass: the terms of
    one training step (over classes, layers, environments), used within that step. Also when a
    function that steps once per call, outside any loop, restarts the sum at its start and sums
    in loops that run no backward pass and no step: the sum dies with the call. (Micro-batches
    with a backward pass each are not that: summing them keeps every micro-batch's graph.)"""
    for backward in events:
        if backward.kind == BACKWARD and backward.loops:
            step_loop = backward.loops[-1]
            if all(r.in_loop(step_loop) for r in acc.resets) and all(
                u.in_loop(step_loop) for u in acc.updates
            ):
                return True
    if not acc.resets or any(r.loops for r in acc.resets):
        return False
    training = [e for e in events if e.kind == BACKWARD or (e.kind == STEP and model.role(e) == "optimizer")]
    summing_loops = {id(loop) for u in acc.updates for loop in u.loops}
    return any(not t.loops for t in training) and not any(
        id(loop) in summing_loops for t in training for loop in t.loops
    )


def _returned_as_loss(model: Model, scope: Scope) -> bool:
    """Loss functions and forward passes build a loss from terms for the caller to differentiate;
    so does any function that returns a plain sum still on the graph (not one averaged for a log,
    `final_loss /= len(loader); return final_loss`)."""
    name = scope.name.lower()
    if "loss" in name or name in ("forward", "__call__"):
        return True
    for value in scope.returns:
        returned = (
            [model.known(item) for item in value.items] if isinstance(value, Tup) else [model.known(value)]
        )
        if any(known.summed and known.attached and not known.divided for known in returned):
            return True
    return False


def _tensor_accumulator(model: Model, acc: Accumulator) -> bool:
    """Reset with torch.zeros/tensor, or used as a tensor later (`.item()`): keep it a tensor."""
    if any(model.known(reset.value).kind == "tensor" for reset in acc.resets):
        return True
    return any(read.data.get("method") in ("item", "cpu", "detach", "numpy") for read in acc.reads)


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


def loss_tensors_collected(model: Model) -> Iterator[Hit]:
    for scope in model.scopes:
        events = model.events(scope)
        lists = {
            e.var: e for e in events if e.kind == ASSIGN and e.var is not None and isinstance(e.value, Tup)
        }
        reported: set[tuple] = set()
        for append in events:
            if append.kind != APPEND or append.no_grad or append.var in reported or append.var not in lists:
                continue
            created = lists[append.var]
            if not (len(created.loops) < len(append.loops) and is_prefix(created.loops, append.loops)):
                continue  # a fresh list each iteration
            known = model.known(append.value)
            if not (known.loss and known.attached):
                continue
            if _returned_as_loss(model, scope) or any(
                _sums_in(value, {id(created.value): created.var}) for value in scope.returns
            ):
                continue  # the terms of a loss the function returns (`torch.stack(terms).mean()`)
            if known.summed or model.feeds_backward(created.value):
                # (a running sum that keeps graphs is LL203's; a list summed into a loss that is
                # differentiated keeps them on purpose)
                continue
            reported.add(append.var)
            yield Hit(
                "LL205",
                append.node,
                f"`{append.name}.append(...)`{elsewhere(append)} keeps a loss tensor that still requires "
                f"grad, across the iterations of {loop_label(append.loops[-1])}: every iteration's "
                "autograd graph stays alive and memory grows; append `.item()` or `.detach()`",
                fix=None if append.foreign else lambda source, a=append: _append_detach_fix(source, a),
            )


def _append_detach_fix(source, append: Event) -> Fix | None:
    call = append.node
    if not isinstance(call, cst.Call) or len(call.args) != 1 or call.args[0].keyword is not None:
        return None
    value = call.args[0].value
    start, end = source.span(value)
    if isinstance(value, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)):
        edit = Edit(end, end, ".detach()")
    else:
        edit = Edit(start, end, f"({source.text[start:end]}).detach()")
    return Fix("Append the detached loss", (edit,))
