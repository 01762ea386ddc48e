"""Documentation of the learning-rate diagnostics (LL506, LL507)."""

from looplint.catalog import RuleInfo

RULES: tuple[RuleInfo, ...] = (
    RuleInfo(
        code="LL506",
        name="loss-diverging",
        summary="The training loss grows or turns non-finite: the learning rate is likely too high.",
        what="""
            Watches the loss of every optimizer step during `looplint run` / `looplint.watch()`.
            Reports when the median loss over a window of steps rises to at least twice its
            lowest earlier value (and gives back at least half of the progress made since the
            start), or when the loss becomes inf/nan shortly after the learning rate was
            raised (a warm-up or a schedule that goes too high). The message names the learning
            rate of every parameter group at that moment and the step where the LR rose. When
            the same run shows a bug that inflates the steps (gradients never cleared, LL101),
            the message names that bug as the cause instead of the learning rate.
        """,
        why="""
            A step size past the stable range makes every update overshoot: the loss climbs,
            oscillates with growing amplitude, and finally overflows to inf and nan. From then
            on the weights are garbage, yet the loop keeps running and logging. Catching the
            first window where the loss turned upward tells you which LR did it, instead of
            discovering a nan checkpoint hours later.
        """,
        example="""
            optimizer = torch.optim.SGD(model.parameters(), lr=5.0)  # far too high
            for x, y in loader:
                loss = criterion(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        """,
        fix="""
            Lower the learning rate; run the range test on your own loop:

                looplint run train.py --lr-find

            It says, per parameter group, whether the script's LR (a scheduler's peak) is too
            large, good or too small, and suggests one. With a warm-up, end it at a smaller
            peak LR. Gradient clipping (torch.nn.utils.clip_grad_norm_) limits the damage of
            single bad batches but does not make a too-high LR stable.
        """,
        origin="runtime",
    ),
    RuleInfo(
        code="LL507",
        name="lr-never-changes",
        summary="An LR scheduler was created but the learning rate never moved during the run.",
        what="""
            Reports an LR scheduler (StepLR, CosineAnnealingLR, OneCycleLR, ...) whose
            optimizer took two or more steps while no parameter group's learning rate ever
            changed. The message says whether `scheduler.step()` was never called or was called
            without its schedule reaching a change. ReduceLROnPlateau is exempt: keeping the LR
            while the metric improves is its job.
        """,
        why="""
            The schedule was written to decay (or warm up) the learning rate, and the run
            silently trained at a constant LR instead: usually `scheduler.step()` is missing,
            sits in a branch that never runs, or is stepped per epoch while `step_size` was
            counted in batches (or the other way round), so the first change lies beyond the
            end of training. The model ends with a large LR and a worse final loss.
        """,
        example="""
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30)
            for epoch in range(90):
                for x, y in loader:
                    loss = criterion(model(x), y)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                # scheduler.step() is missing
        """,
        fix="""
            Call `scheduler.step()` once per epoch (or once per batch for per-iteration
            schedules such as OneCycleLR), after `optimizer.step()`:

                for epoch in range(90):
                    for x, y in loader:
                        ...
                        optimizer.step()
                    scheduler.step()

            If it is already called, check that its period (step_size, T_max, milestones)
            is counted in the same unit as the calls.
        """,
        origin="runtime",
    ),
)
