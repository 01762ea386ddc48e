"""LL401 scheduler-step-before-optimizer-step, LL402 parameter-in-several-groups,
LL403 scheduler-never-stepped, LL404 optimizer-created-per-step, LL405 optimizer-parameters-frozen."""

from __future__ import annotations

from collections.abc import Iterator

from looplint.findings import Fix
from looplint.static import fixes, names
from looplint.static.model import ASSIGN, CALL, CREATE, FREEZE, PARAM_GROUPS, READ, STEP, Event, Model
from looplint.static.rules import Hit, elsewhere, loop_label
from looplint.static.summaries import argument_nodes

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
    text = fixes.statement_text(source, sched.statement)
    insert = fixes.insert_after(source, anchor, text, indent=source.indent(sched.statement)) if text else None
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
                if names.within(b, a):
                    return a, b
                if names.within(a, b):
                    return b, a
    return None


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
            (e.kind == STEP and model.may_be(e.value, known.origin))
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


def optimizer_created_per_step(model: Model) -> Iterator[Hit]:
    for scope in model.scopes:
        events = model.events(scope)
        reported: set[int] = set()
        for create in events:
            if create.kind != CREATE or not create.loops or id(create.node) in reported:
                continue
            identity = model.identity(create.value)
            if identity is None or model.known(create.value).role != "optimizer":
                continue
            # A new optimizer in each iteration of the loop that steps it (not per training run:
            # a `train()` that builds its optimizer and runs its own loop is called per fold).
            loop = next(
                (
                    e.loops[-1]
                    for e in events
                    if e.kind == STEP
                    and e.loops
                    and model.identity(e.value) == identity
                    and create.in_loop(e.loops[-1])
                ),
                None,
            )
            if loop is None or _fresh_parameters(model, events, create, loop):
                continue
            reported.add(id(create.node))
            yield Hit(
                "LL404",
                create.node,
                f"`{create.name}(...)`{elsewhere(create)} builds a new optimizer on every iteration of "
                f"{loop_label(loop)} for the same parameters: its state (momentum, Adam's moment "
                "estimates, the step count) starts from zero at every step; build the optimizer once, "
                "before the loop",
            )


def _fresh_parameters(model: Model, events: list[Event], create: Event, loop) -> bool:
    """The parameters are made anew each iteration (test-time optimization of a fresh tensor, a
    fresh copy of the model per meta-learning task): a new optimizer for them is right."""
    roots = {name.split(".", 1)[0].removesuffix("[]") for name in create.data.get("source_names", ())}
    if not roots:
        return True  # nothing known about what it optimizes
    via = create.data.get("via", ())
    if via:
        # Built by a helper called per step (in this module or another).
        if roots & create.data.get("local_roots", frozenset()):
            return True  # from the helper's own locals: new at every call, or unknown
        if roots <= create.data.get("param_roots", frozenset()):
            _, helper = model.callee(via[0])
            if len(via) > 1 or helper is None:
                return True  # passed through several helpers, or not followed: unknown
            arguments = argument_nodes(via[0].node, helper)
            passed = {(arguments.get(root, (None, None))[1] or "").split(".", 1)[0] for root in roots}
            return "" in passed or any(
                e.kind == ASSIGN and e.name in passed and e.scope is via[0].scope and e.in_loop(loop)
                for e in events
            )
    own = create.scope.events if create.scope is not None else []
    return any(
        event.kind == ASSIGN and event.name in roots and event.scope is create.scope and event.in_loop(loop)
        for event in own
    )


def optimizer_parameters_frozen(model: Model) -> Iterator[Hit]:
    for scope in model.scopes:
        events = model.events(scope)
        reported: set[tuple] = set()
        for index, step in enumerate(events):
            if step.kind != STEP or model.role(step) != "optimizer":
                continue
            key = model.identity(step.value) or (step.name,)
            if key in reported:
                continue
            sources = model.parameter_sources(step)
            if not sources:
                continue
            freeze = _freezing(events[:index], sources)
            if freeze is None:
                continue
            reported.add(key)
            yield Hit(
                "LL405",
                step.node,
                f"every parameter `{step.name}` updates ({', '.join(f'`{s}`' for s in sorted(sources))}) was "
                f"frozen with `requires_grad = False` ({freeze}) and never unfrozen: no gradient ever "
                f"reaches them, so `{step.name}.step()` changes nothing while the loss prints as usual; "
                "unfreeze what should train, or build the optimizer over the parameters that train",
            )


def _freezing(before: list[Event], sources: set[str]) -> str | None:
    """How the sources were all frozen before the step, or None if some part still trains: a
    part unfrozen again, or a new submodule assigned after the freeze (`model.fc = nn.Linear(...)`
    brings trainable parameters)."""
    frozen: list[tuple[str, Event, set[str]]] = []  # (module, freeze, parts trainable again)
    for event in before:
        if event.kind == CALL and _adds_parameters(event.name):
            frozen = []  # module surgery (`setattr(model, name, LoRALinear(...))`): unknown
            continue
        if event.kind == ASSIGN and event.name:
            changed = event.name
        elif event.kind == FREEZE and (changed := _frozen_target(event)) is not None:
            if event.data.get("frozen"):
                frozen.append((changed, event, set()))
                continue
        else:
            continue
        # A part assigned anew or unfrozen: trainable again, inside whatever froze it.
        frozen = [entry for entry in frozen if not names.within(entry[0], changed)]
        for _, _, trainable in frozen:
            trainable.add(changed)
    covering = []
    for source in sources:
        match = next(
            (
                event
                for module, event, trainable in frozen
                if names.within(source, module)
                and not any(names.within(source, part) or names.within(part, source) for part in trainable)
            ),
            None,
        )
        if match is None:
            return None
        covering.append(match)
    first = covering[0]
    loop = next((loop for loop in first.loops if first.name in loop.targets), None)
    return f"in {loop.label}" if loop is not None else f"`{first.name}.requires_grad_(False)`"


def _adds_parameters(call: str | None) -> bool:
    """Calls that can put new trainable parameters into a module."""
    if call is None:
        return False
    return call == "setattr" or call.rsplit(".", 1)[-1] in (
        "add_module",
        "register_module",
        "register_parameter",
    )


def _frozen_target(event: Event) -> str | None:
    """The module a freeze covers: `for p in model.parameters(): p.requires_grad = False` -> 'model'."""
    for loop in event.loops:
        if event.name in loop.targets and loop.param_source is not None:
            return loop.param_source if event.every_iteration(loop) else None
    return event.name  # `model.backbone.requires_grad_(False)`, `model.fc.weight.requires_grad = False`
