"""LL401 scheduler-step-before-optimizer-step, LL402 parameter-in-several-groups,
LL403 scheduler-never-stepped."""

from __future__ import annotations

from collections.abc import Iterator

from looplint.findings import Fix
from looplint.static import fixes
from looplint.static.model import ASSIGN, PARAM_GROUPS, READ, STEP, Event, Model
from looplint.static.rules import Hit

# Reading these does not hand the scheduler to code that could step it.
_INERT_METHODS = frozenset({"get_last_lr", "get_lr", "state_dict", "load_state_dict", "last_epoch"})


def scheduler_step_before_optimizer_step(model: Model) -> Iterator[Hit]:
    for scope in model.scopes:
        events = model.events(scope)
        for index, sched in enumerate(events):
            if sched.kind != STEP or model.role(sched) != "scheduler" or sched.data.get("has_args"):
                continue  # step(epoch) and ReduceLROnPlateau.step(metric) do not depend on the order
            # `for scheduler in schedulers: scheduler.step()` is one step of each, not a window.
            loops = [loop for loop in sched.loops if sched.name not in loop.targets]
            window = loops[-1] if loops else None
            optimizer_steps = [
                (i, e)
                for i, e in enumerate(events)
                if e.kind == STEP
                and model.role(e) == "optimizer"
                and (window is None or e.in_loop(window))
                and not e.exclusive_with(sched)
            ]
            if any(i < index for i, _ in optimizer_steps):
                continue
            later = [e for i, e in optimizer_steps if i > index]
            if not later:
                continue
            optimizer = later[0]
            yield Hit(
                "LL401",
                sched.node,
                f"`{sched.name}.step()` runs before `{optimizer.name}.step()` in the same "
                f"{'iteration' if window is not None else 'run'}: the first learning rate of the "
                "schedule is skipped and every later one comes a step early; step the scheduler "
                "after the optimizer",
                fix=None
                if sched.foreign or optimizer.foreign
                else lambda source, s=sched, o=optimizer: _move_after(model, source, s, o),
            )


def _move_after(model: Model, source, sched: Event, optimizer: Event) -> Fix | None:
    """Move the scheduler step after the statement of its block that holds the optimizer step."""
    if not fixes.sole_statement(sched.statement, sched.node) or optimizer.statement is None:
        return None
    owner, _ = model.block_of.get(sched.statement, (None, 0))
    anchor = optimizer.statement
    while anchor is not None and model.block_of.get(anchor, (None,))[0] is not owner:
        anchor = model.parent_statement.get(anchor)
    if anchor is None or len(getattr(owner, "body", ())) < 2:
        return None
    insert = fixes.insert_after(
        source, anchor, source.code(sched.node), indent=source.indent(sched.statement)
    )
    if insert is None:
        return None
    # Swapping with the step beside it changes nothing else; moving past a whole loop also moves
    # the learning rate every other statement of that loop sees, so it needs --unsafe-fixes.
    safe = anchor is optimizer.statement
    return Fix(
        "Step the scheduler after the optimizer",
        (insert, fixes.delete_line(source, sched.statement)),
        safe=safe,
    )


def parameter_in_several_groups(model: Model) -> Iterator[Hit]:
    for scope in model.scopes:
        seen: dict[str, list[list[str | None]]] = {}  # optimizer -> its groups so far
        reported: set[str] = set()
        for event in scope.events:
            if event.kind != PARAM_GROUPS or event.name in reported:
                continue
            groups = seen.setdefault(event.name, []) if event.data.get("added") else []
            seen[event.name] = groups
            for group in event.data["groups"]:
                overlap = _overlap(group, groups)
                groups.append(group)
                if overlap is not None:
                    reported.add(event.name)
                    first, second = overlap
                    yield Hit(
                        "LL402",
                        event.node,
                        f"parameters of `{second}` are in two parameter groups (also via `{first}`): "
                        "torch raises `ValueError: some parameters appear in more than one parameter "
                        "group`; give each group disjoint parameters",
                    )
                    break


def _overlap(group: list[str | None], others: list[list[str | None]]) -> tuple[str, str] | None:
    for other in others:
        for a in group:
            for b in other:
                if a is None or b is None:
                    continue
                if _contains(a, b):
                    return a, b
                if _contains(b, a):
                    return b, a
    return None


def _contains(outer: str, inner: str) -> bool:
    """`model` holds `model.fc`'s parameters; `model.fc` holds `model.fc.weight`."""
    return inner == outer or inner.startswith(outer + ".")


def scheduler_never_stepped(model: Model) -> Iterator[Hit]:
    own = [e for scope in model.scopes for e in scope.events]
    bound = [e for scope in model.scopes for e in model.events(scope)]
    trains_here = any(e.kind == STEP and model.role(e) == "optimizer" for e in bound)
    seen: set[tuple] = set()
    for construction in own:
        if construction.kind != ASSIGN or construction.name in (None, "_"):
            continue
        known = model.known(construction.value)
        if known.role != "scheduler" or known.origin is None or known.origin in seen:
            continue
        seen.add(known.origin)
        name = construction.name
        if not trains_here and construction.scope.parent is None:
            continue  # a module-level scheduler in a config module: the importer steps it
        used = any(
            (e.kind == STEP and model.identity(e.value) == known.origin)
            or (e.kind == READ and e.name == name and e.data.get("method") not in _INERT_METHODS)
            or (e.kind == READ and e.name != name and is_prefix_name(name, e.name))
            for e in own + bound
        )
        if used:
            continue
        yield Hit(
            "LL403",
            construction.data["source"],
            f"the scheduler `{name}` is created but never stepped: the learning rate stays at its "
            f"initial value for the whole run; call `{name}.step()` after `optimizer.step()` (per "
            "epoch or per batch, as the schedule expects)",
        )


def is_prefix_name(name: str, other: str) -> bool:
    """`sched` read as `sched_list` does not count; read as `self.sched` inside something does not."""
    return other.startswith(name + ".") and other[len(name) + 1 :] not in _INERT_METHODS
