"""Documentation of the codes only the runtime hook reports (LL501-LL505, LL508), and of the runtime
checks whose static twins are still to come (LL103-LL105, LL404, LL405)."""

from looplint.catalog import RuleInfo

RULES: tuple[RuleInfo, ...] = (
    RuleInfo(
        code="LL501",
        name="writer-not-closed",
        summary="A SummaryWriter is still open when the run ends.",
        what="""
            At the end of `looplint run` (or of a `looplint.watch()` block, for writers created
            inside it) reports every `torch.utils.tensorboard.SummaryWriter` that was never
            closed, at the line that created it, with how many of its events were not yet on disk
            when the script ended.
        """,
        why="""
            SummaryWriter queues events and writes them from a background thread that does not
            keep the process alive. Events still queued when Python exits are lost: on torch
            2.13/2.14 a writer never closed drops up to ~11 events, which are the last points
            of every curve, the ones you look at. Its file handles also stay open until exit.
        """,
        example="""
            writer = SummaryWriter("runs/exp1")
            for step, (x, y) in enumerate(loader):
                ...
                writer.add_scalar("train/loss", loss.item(), step)
            # end of script: no writer.close()
        """,
        fix="""
            Close the writer once, after training, or let a `with` block do it:

                with SummaryWriter("runs/exp1") as writer:
                    for step, (x, y) in enumerate(loader):
                        ...
                        writer.add_scalar("train/loss", loss.item(), step)

            A run stopped by `looplint run --max-steps` is not reported: looplint closes its
            writers for it.
        """,
        origin="runtime",
    ),
    RuleInfo(
        code="LL502",
        name="global-step-problems",
        summary="Points logged without global_step, or with steps that go backwards for a tag.",
        what="""
            Watches every `add_scalar`, `add_scalars`, `add_histogram`, `add_image(s)`, ... call
            during the run. Reports calls that pass no `global_step` (one finding per call site,
            with the number of calls), and tags whose step does not increase from one point to
            the next (e.g. the batch index, which restarts every epoch), with the first step
            that went back.
        """,
        why="""
            Without a step every point lands on step 0 and TensorBoard draws the whole run as a
            vertical line. A step that restarts each epoch folds the curve back onto itself,
            so epochs overwrite each other and smoothing mixes unrelated points.
        """,
        example="""
            for epoch in range(epochs):
                for i, (x, y) in enumerate(loader):
                    ...
                    writer.add_scalar("train/loss", loss.item(), i)  # restarts every epoch
                    writer.add_scalar("lr", scheduler.get_last_lr()[0])  # no step at all
        """,
        fix="""
            Log against a counter that keeps growing for the whole run:

                global_step = epoch * len(loader) + i
                writer.add_scalar("train/loss", loss.item(), global_step)
                writer.add_scalar("lr", scheduler.get_last_lr()[0], global_step)
        """,
        origin="runtime",
    ),
    RuleInfo(
        code="LL503",
        name="non-finite-loss-or-grad",
        summary="A loss or gradient became inf/nan and an optimizer step used it.",
        what="""
            Records the loss of every backward pass, and the largest weight magnitude after each
            of the first 10 optimizer steps and every 10th step after (a non-finite gradient that
            a step applied leaves non-finite weights), on the device, and checks them once the run
            is over. Reports the first step whose loss or weights were inf or nan, at the backward
            or step call site. A non-finite loss whose step GradScaler skipped is not reported: nothing used
            it. Reading the values only at the end keeps the check free of host-device syncs.
        """,
        why="""
            One non-finite gradient applied by `optimizer.step()` turns the weights it touches
            into nan, and every later loss, prediction and checkpoint with them, while the loop
            keeps running. Knowing the first step (and whether the loss or only the weights
            went first) points at the cause: a log of zero, a division by a zero norm, an LR
            too high, fp16 overflow without GradScaler.
        """,
        example="""
            probs = torch.sigmoid(model(x))
            loss = -torch.log(probs).mean()  # inf once a probability underflows to 0
            loss.backward()
            optimizer.step()
        """,
        fix="""
            Use the numerically stable form (`F.binary_cross_entropy_with_logits`,
            `F.log_softmax`, `torch.clamp(x, min=eps)` before `log`/`sqrt`), lower the LR, clip
            gradients, or train fp16 with `torch.amp.GradScaler`, which skips non-finite steps.
        """,
        origin="runtime",
    ),
    RuleInfo(
        code="LL504",
        name="host-device-syncs",
        summary="Training steps stall on host-device synchronizations (CUDA).",
        what="""
            On CUDA, counts the synchronizations of every optimizer step with torch's sync debug
            mode (`torch.cuda.set_sync_debug_mode("warn")`): `.item()`, `float(t)`, `print(t)`,
            blocking copies to the host or from pageable memory, `nonzero`, and the like. Reports
            the median number per step with the top call sites. The hook itself adds none.
            Not checked on CPU, where there is nothing to wait for.
        """,
        why="""
            A sync makes the Python thread wait until the GPU has finished all queued work, so
            the host cannot run ahead and queue the next kernels: the GPU idles between steps.
            A single `.item()` per step for logging can cost a sizeable share of step time on
            small models.
        """,
        example="""
            for x, y in loader:
                x, y = x.cuda(), y.cuda()  # pageable memory: blocking copy
                ...
                total += loss.item()  # sync every step
        """,
        fix="""
            Accumulate on the device and read once per log interval; copy from pinned memory
            without blocking:

                loader = DataLoader(dataset, batch_size=64, pin_memory=True)
                total = torch.zeros((), device="cuda")
                for i, (x, y) in enumerate(loader):
                    x, y = x.cuda(non_blocking=True), y.cuda(non_blocking=True)
                    ...
                    total += loss.detach()
                    if (i + 1) % 100 == 0:
                        writer.add_scalar("train/loss", total.item() / 100, i)
                        total.zero_()
        """,
        origin="runtime",
    ),
    RuleInfo(
        code="LL505",
        name="writer-on-every-rank",
        summary="Under torchrun, every rank creates a SummaryWriter and logs.",
        what="""
            With `torchrun --nproc_per_node N looplint run train.py`, reports when more than one
            rank wrote TensorBoard events, at the line that created the writer.
        """,
        why="""
            Each rank logs its own copy of the same curves into its own event file (or
            interleaves them in one folder), so TensorBoard shows N near-identical runs or a
            zig-zag of ranks, the disk fills N times faster, and every rank pays for the logging.
        """,
        example="""
            dist.init_process_group("nccl")
            writer = SummaryWriter("runs/exp1")
            ...
            writer.add_scalar("train/loss", loss.item(), step)
        """,
        fix="""
            Create and use the writer on rank 0 only (reduce the metric first if every rank's
            value matters):

                writer = SummaryWriter("runs/exp1") if dist.get_rank() == 0 else None
                ...
                if writer is not None:
                    writer.add_scalar("train/loss", loss.item(), step)
        """,
        origin="runtime",
    ),
    RuleInfo(
        code="LL508",
        name="parameters-without-optimizer",
        summary="Parameters receive gradients at every backward pass but belong to no optimizer.",
        what="""
            At run time, finds the parameters reached by the first backward passes (through the
            graph of the first one) that no optimizer holds, that received a gradient at every
            backward pass of the run's first 10 steps, and that did not change by the end of the
            run; reports them once, with their names, at the first optimizer's creation. Silent
            when they are few (at most 2 tensors and 1% of the trainable values) and nothing in
            their model is frozen (a stray learnable scalar is likely on purpose), when something
            updates them (an EMA, a hand-written update), and when no optimizer stepped at all.
        """,
        why="""
            A layer left out of the optimizer never trains: it keeps its random initial weights
            while the rest of the model works around it, and every step still computes its
            gradients for nothing. It usually comes from building the optimizer from a submodule
            (`model.encoder.parameters()`) or before adding a layer, or from freezing by leaving
            parameters out of the optimizer instead of `requires_grad_(False)`.
        """,
        example="""
            optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)
            for x in loader:
                optimizer.zero_grad()
                loss = criterion(decoder(encoder(x)), x)
                loss.backward()
                optimizer.step()
        """,
        fix="""
            Give the optimizer every parameter you train:

                optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)

            or freeze what you do not train, which also saves its backward pass:

                decoder.requires_grad_(False)
        """,
        origin="runtime",
    ),
)
