"""Documentation of the static rules (LL0xx-LL4xx)."""

from looplint.catalog import RuleInfo

RULES: tuple[RuleInfo, ...] = (
    RuleInfo(
        code="LL000",
        name="syntax-error",
        summary="The file does not parse.",
        what="Reports a file that Python cannot parse, at the line the parser stopped.",
        why="""
            Nothing else in the file can be checked. The other files of the run are still linted.
        """,
        example="""
            writer.add_scalar(tag='step_loss', avg_step_loss,
                              running_loss1 = 0.0
        """,
        fix="Close the bracket, or fix what the message names.",
    ),
    RuleInfo(
        code="LL101",
        name="missing-zero-grad",
        summary="A loop runs backward() and optimizer.step() but never clears that optimizer's gradients.",
        what="""
            Finds loops (for, while, comprehensions) that run a backward pass and step an optimizer,
            where nothing in the loop clears that optimizer's gradients: no `optimizer.zero_grad()`,
            no `model.zero_grad()`, no `p.grad = None`. Each optimizer is checked on its own, so the
            generator of a GAN is caught even when the discriminator is cleared.

            Calls are followed: a helper, a method (`self.train_step()`), a callable object
            (`loss_scaler(loss, optimizer)`) or a function imported from another module of the
            project that backpropagates, steps or clears its argument does so to the caller's
            optimizer, at the call. The optimizer is known by what it is (built by an optimizer
            class, passed in, stored on `self`), not by its name; an unknown helper that receives
            the optimizer may clear it, so it is not reported.
        """,
        why="""
            `backward()` adds into `.grad`; it never overwrites. Without a clear, the gradient used
            at step N is the sum of the gradients of batches 1..N: the effective learning rate grows
            every step and training diverges or stalls, while the loop runs without any error.
        """,
        example="""
            for inputs, targets in loader:
                loss = criterion(model(inputs), targets)
                loss.backward()
                optimizer.step()
        """,
        fix="""
            Clear once per step, before the backward pass or right after the step:

                for inputs, targets in loader:
                    optimizer.zero_grad()
                    loss = criterion(model(inputs), targets)
                    loss.backward()
                    optimizer.step()

            Intentional accumulation (`if (i + 1) % k == 0: optimizer.step(); optimizer.zero_grad()`)
            is not reported. At run time, `looplint run` and `looplint.watch()` confirm it by
            counting the backward passes each step consumed; `watch(accumulation_steps=k)` also
            reports a step that consumed any other number than k.
        """,
        fixable="safe",
        origin="both",
    ),
    RuleInfo(
        code="LL102",
        name="zero-grad-between-backward-and-step",
        summary="Gradients are cleared after backward() and before the step that should use them.",
        what="""
            Finds `optimizer.zero_grad()` (or the zero_grad of the model the optimizer was built
            from) placed after the backward pass and before `optimizer.step()`, also when the
            clear or the step happens in a helper the loop calls.

            Also finds gradient accumulation defeated across iterations: the step runs every k-th
            iteration (`if (i + 1) % k == 0: optimizer.step()`) while the clear runs on every
            iteration, so each clear wipes what the coming step was to sum.
        """,
        why="""
            The clear wipes the gradients the backward pass just computed, so the step sees zeros
            (or `None`, with `set_to_none=True`) and does nothing: the loss stays flat, with no
            error. Momentum and weight decay may still move the weights, which hides it further.
            With accumulation, each step uses only the last micro-batch's gradients: the effective
            batch is k times smaller than intended, and the k-1 other backward passes are wasted.
        """,
        example="""
            loss.backward()
            optimizer.zero_grad()
            optimizer.step()
        """,
        fix="""
            Clear before the backward pass:

                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

            With accumulation, clear right after the step, inside the same `if`:

                loss.backward()
                if (i + 1) % k == 0:
                    optimizer.step()
                    optimizer.zero_grad()

            `looplint run` confirms both: a step that ran with no gradient right after a backward
            pass had filled them, or backward passes whose gradients were cleared before any step
            used them.
        """,
        fixable="safe",
        origin="both",
    ),
    RuleInfo(
        code="LL103",
        name="clip-before-backward",
        summary="Gradients are clipped before the backward pass whose gradients the step applies.",
        what="""
            Finds `torch.nn.utils.clip_grad_norm_` / `clip_grad_value_` (or a project helper that
            calls them) placed before the backward pass of its step: after `zero_grad()`, or at
            the end of the loop body where the next iteration's backward comes before the next
            step. A clip inside an LBFGS closure after its backward is fine.

            At run time, every clip is tied to the optimizers whose parameters it clips, and a
            clip after which a backward pass filled those gradients again before the optimizer
            stepped is reported at the clip call.
        """,
        why="""
            Clipping acts on the gradients present at that moment: zeros just after the clear, or
            the previous step's. The backward that follows adds fresh, unclipped gradients, and
            the step applies them: exploding gradients are never tamed, and nothing errors.
        """,
        example="""
            optimizer.zero_grad()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
        """,
        fix="""
            Clip between the backward pass and the step (with a GradScaler, after
            `scaler.unscale_(optimizer)`):

                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()

            The autofix moves the clip right before the step when both sit in one block. At run
            time, `looplint run` confirms it: the clip ran while no backward pass of that step had.
        """,
        fixable="safe",
        origin="both",
    ),
    RuleInfo(
        code="LL104",
        name="clip-without-unscale",
        summary="Gradients are clipped under a GradScaler without unscaling them first.",
        what="""
            Finds a gradient clip between `scaler.scale(loss).backward()` and `scaler.step(optimizer)`
            with no `scaler.unscale_(optimizer)` before it. `accelerator.clip_grad_norm_` unscales
            on its own and is not reported.

            At run time, a clip of gradients from a backward pass of `scaler.scale(loss)` that
            `scaler.unscale_(optimizer)` had not unscaled yet is reported at the clip call.
        """,
        why="""
            Under a GradScaler the gradients are multiplied by the loss scale (65536 at the start,
            then adapted). A threshold of 1.0 applied to them clips almost every step to a tiny
            update, or, as the scale changes, clips nothing: training silently slows down or stays
            unprotected.
        """,
        example="""
            scaler.scale(loss).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
        """,
        fix="""
            Unscale first:

                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                scaler.step(optimizer)
                scaler.update()

            The autofix inserts the `unscale_` line. `looplint run` confirms it at run time.
        """,
        fixable="safe",
        origin="both",
    ),
    RuleInfo(
        code="LL105",
        name="backward-in-eval-mode",
        summary="A model is switched to eval mode inside the training loop and never back to train mode.",
        what="""
            Finds `model.eval()` (or `model.train(False)`) inside a loop that also trains that model
            (its parameters are the optimizer's, or it computes the loss being differentiated), with
            no `model.train()` anywhere in that loop, including in the helpers the loop calls. A
            frozen teacher kept in eval mode, whose output is computed under `torch.no_grad()`, is
            not reported.

            At run time, an `.eval()` / `.train(False)` that switched dropout or batch norm layers
            out of training mode is reported, at that call, when backward passes later run through
            those layers still in eval mode, with the step it switched at and how many backward
            passes followed. Layers switched one by one (batch norm statistics frozen on purpose),
            a model trained in eval mode from the start, and batch norm layers whose parameters
            are all frozen stay silent.
        """,
        why="""
            The usual shape is a validation pass at the end of each epoch. From the second epoch
            on, every training step runs with dropout disabled and BatchNorm using (and no longer
            updating) its running statistics: the model trains differently from the first epoch,
            regularization is gone, and nothing errors.
        """,
        example="""
            model.train()
            for epoch in range(20):
                for x, y in train_loader:
                    ...
                    loss.backward()
                    optimizer.step()
                model.eval()
                validate(model)
        """,
        fix="""
            Switch to train mode at the start of each epoch (or right after validating):

                for epoch in range(20):
                    model.train()
                    for x, y in train_loader:
                        ...
                    model.eval()
                    validate(model)

            `looplint run` confirms it: a backward pass ran while a module with dropout or batch
            norm was in eval mode.
        """,
        origin="both",
    ),
    RuleInfo(
        code="LL201",
        name="accumulator-reset-misplaced",
        summary="A loss accumulator is reset at the wrong loop level.",
        what="""
            Finds a loss accumulator (`running_loss += loss.item()`) whose reset
            (`running_loss = 0.0`) sits outside the loop whose iterations each read of it should
            summarize, or inside the very loop that adds to it (so the value read after that loop
            holds one term). Not reported when the value is divided by a count that moves with it
            (`/ (i + 1)`, `/ seen`, `/ ((step - 1) % n + 1)`: a cumulative mean is correct), nor
            when a sum reset per epoch is read after training (the last epoch's value is what
            people mean to report).

            An accumulator is a variable that sums losses: values computed by a loss function or
            criterion, values that `backward()` runs on, a model's `.loss`, or what a helper
            returns as one. A helper's own accumulator is its own: the caller's variable of the
            same name is another variable.
        """,
        why="""
            Reset outside the epoch loop, the number logged each epoch is the sum of all epochs so
            far: the curve climbs even while the model improves. Reset inside the batch loop, the
            number logged after the loop holds only the last batch.
        """,
        example="""
            running_loss = 0.0
            for epoch in range(100):
                for img, target in loader:
                    ...
                    running_loss += loss.item()
                writer.add_scalar("epoch_loss", running_loss / len(loader), epoch)
        """,
        fix="""
            Reset at the level where the value is read:

                for epoch in range(100):
                    running_loss = 0.0
                    for img, target in loader:
                        ...
                        running_loss += loss.item()
                    writer.add_scalar("epoch_loss", running_loss / len(loader), epoch)
        """,
    ),
    RuleInfo(
        code="LL202",
        name="unaveraged-loss-logged",
        summary="A sum of losses is logged without dividing by its count.",
        what="""
            Finds a sum of losses over several iterations that goes to `add_scalar`, `add_scalars`,
            `print` (also through f-strings, `%` and `.format`), `logging`, `wandb.log`,
            `accelerator.log`, `mlflow.log_metric`, a progress bar (`set_postfix`,
            `set_description`, `bar.desc = ...`), a plot of a `visdom.Visdom()` (`viz.line`) or
            another logger without being divided by how many terms it holds.

            The sum is followed as a value: through variables (`epoch_loss = train_loss`), through
            a helper that returns it undivided (`evaluate()` returning `total_test_loss`, logged by
            the caller), and into logging helpers of the project (`log_scalar(writer, tag,
            running_loss, epoch)`, `pprint(*text)` given a formatted message), across modules. A
            helper that divides before it returns, or terms that were each divided first (by the
            iteration count, by `len(loader)`, or weighted by a fraction such as
            `x.size(0) / n_samples`), make a mean, and nothing is reported. A loss is known by
            where it comes from, never by its name: `Total_loss_of_equipment` summed in a
            data-analysis notebook is not one.
        """,
        why="""
            The logged number scales with the number of batches: it changes when the batch size or
            the dataset changes, and cannot be compared with a per-batch loss or a validation loss.
            A running sum logged each step climbs like a ramp.
        """,
        example="""
            total_test_loss = 0
            with torch.no_grad():
                for imgs, targets in test_loader:
                    total_test_loss += loss_fn(model(imgs), targets).item()
            writer.add_scalar("test_loss", total_test_loss, epoch)
        """,
        fix="""
            Log the mean:

                writer.add_scalar("test_loss", total_test_loss / len(test_loader), epoch)
        """,
        origin="both",
    ),
    RuleInfo(
        code="LL203",
        name="loss-tensor-accumulated",
        summary="A loss tensor that requires grad is summed across iterations.",
        what="""
            Finds `total += loss` (or `total = total + criterion(...)`) across loop iterations where
            the loss is still attached to the autograd graph: no `.item()`, `.detach()` or `.data`,
            not under `torch.no_grad()` / `torch.inference_mode()`, and the sum is not itself
            differentiated later (a multi-term loss built in a loop and then backwarded is fine).
            A sum that restarts in each call of a function stepping once, summed over loops that
            run no backward pass (per-domain terms of one update), dies with the call and is not
            reported either.

            What is added is followed as a value: `cost += train(...)` where `train()` returns
            `output.item()` adds a number; `loss = loss.data.cpu().numpy()` makes the name hold an
            array from then on; a helper (of this file or another module) that returns the loss
            tensor itself adds a tensor.
        """,
        why="""
            The sum keeps a reference to every iteration's graph, with all its saved activations:
            memory grows with every batch until the epoch ends or the process runs out of memory.
        """,
        example="""
            for x, y in loader:
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
                running_loss += loss
        """,
        fix="""
            Accumulate a number (`running_loss += loss.item()`), or a detached tensor
            (`running_loss += loss.detach()`) to avoid a device sync per step.
        """,
        fixable="safe",
    ),
    RuleInfo(
        code="LL204",
        name="periodic-check-outside-step-loop",
        summary="A step-periodic check sits outside the loop that advances its counter.",
        what="""
            Finds `if step % N == 0` (also `(i + 1) % N`, `not step % N`) placed in an outer loop,
            while `step` is advanced (`step += 1`, or the loop variable) by a loop nested inside it:
            a data loop, a `while` loop, or `for _ in range(n)`. Not reported when the inner loop is
            `for _ in range(k)` and N is a multiple of k (`LOG_EVERY = ROLLOUT * 100` with
            `range(ROLLOUT)`): the check then falls on pass boundaries.
        """,
        why="""
            The check sees the counter once per outer iteration, and is true only when the end of
            an epoch happens to land on a multiple of N: the logging or checkpointing it guards
            runs rarely or never.
        """,
        example="""
            for epoch in range(100):
                for img, target in loader:
                    ...
                    steps += 1
                if steps % 100 == 0:
                    writer.add_scalar("step_loss", loss.item(), steps)
        """,
        fix="Move the check into the loop that advances the counter.",
    ),
    RuleInfo(
        code="LL205",
        name="loss-tensors-collected",
        summary="Loss tensors that require grad are kept in a list across iterations.",
        what="""
            Finds `losses.append(loss)` inside a loop, into a list created outside that loop, where
            the appended loss is still on the autograd graph (no `.item()`, `.detach()`, not under
            `no_grad`). A list of loss terms that is summed and differentiated is fine.
        """,
        why="""
            Each appended tensor keeps its whole graph and saved activations alive. The list grows
            by one graph per batch, and so does memory, until the process runs out of it; the
            values are usually only meant for a mean printed at the end of the epoch.
        """,
        example="""
            losses = []
            for x, y in loader:
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
                losses.append(loss)
            print(sum(losses) / len(losses))
        """,
        fix="""
            Keep numbers or detached tensors: `losses.append(loss.item())`, or
            `losses.append(loss.detach())` (the autofix) to avoid a device sync per step.
        """,
        fixable="safe",
    ),
    RuleInfo(
        code="LL301",
        name="writer-close-in-loop",
        summary="writer.close() runs inside a loop that writes to the writer again.",
        what="""
            Finds `writer.close()` inside a loop that writes to the same writer, also when the close
            or the writes happen in a helper the loop calls (in this file or another module). Not
            reported for `for w in writers: w.close()`, nor when the loop creates a new writer each
            iteration, nor for a close guarded to run on the last iteration only.
        """,
        why="""
            torch's SummaryWriter does not fail when written after `close()`: it silently opens a
            new event file. A close in the epoch loop splits the run into one file per epoch (100
            closes make 101 files), and TensorBoard shows them as overlapping pieces.
        """,
        example="""
            for epoch in range(10):
                ...
                writer.add_scalar("loss", loss.item(), epoch)
                writer.close()
        """,
        fix="""
            Close once, after the outermost training loop (or use `with SummaryWriter() as writer:`):

                for epoch in range(10):
                    ...
                    writer.add_scalar("loss", loss.item(), epoch)
                writer.close()
        """,
        fixable="safe",
        origin="both",
    ),
    RuleInfo(
        code="LL302",
        name="scalar-logged-as-image",
        summary="add_image/add_images receives a number or a loss.",
        what="""
            Finds `add_image()` / `add_images()` whose image argument is a number or a loss, also
            through variables: `avg = running_loss / len(loader)` or
            `acc = correct / len(testset)` passed as the image.
        """,
        why="""
            An image must be a (C, H, W) tensor or array: a scalar raises deep inside tensorboard
            or produces an empty image, and the number you wanted to follow is not plotted.
        """,
        example="""
            writer.add_image("epoch_loss", loss_result, epoch)
        """,
        fix="""
            Numbers go to `add_scalar`:

                writer.add_scalar("epoch_loss", loss_result.item(), epoch)
        """,
    ),
    RuleInfo(
        code="LL303",
        name="writer-used-after-close",
        summary="A writer is written to after it was closed.",
        what="""
            Finds a write (`add_scalar`, `add_hparams`, ...) that runs after `writer.close()` on
            the same writer, with no new writer assigned in between: later in the same block or
            after the loop in module-level code, and through helpers that write or close the
            writer they are given.
        """,
        why="""
            SummaryWriter silently opens a new event file for the late write; the data lands in a
            separate file of the run, and a writer nobody closes again can lose its last events.
        """,
        example="""
            writer.close()
            writer.add_hparams({"lr": 0.1}, {"final_loss": final_loss})
        """,
        fix="Write everything first, then close.",
        origin="both",
    ),
    RuleInfo(
        code="LL401",
        name="scheduler-step-before-optimizer-step",
        summary="scheduler.step() runs before optimizer.step() in the same iteration or epoch.",
        what="""
            Finds a learning-rate scheduler stepped before the optimizer steps it schedules, in the
            same loop iteration (or before the training loop).
        """,
        why="""
            Since PyTorch 1.1 the scheduler must step after the optimizer. Stepping it first skips
            the first value of the schedule and shifts every later one a step early (torch only
            warns once: "Detected call of `lr_scheduler.step()` before `optimizer.step()`").
        """,
        example="""
            for epoch in range(90):
                scheduler.step()
                for x, y in loader:
                    ...
                    optimizer.step()
        """,
        fix="""
            Step the scheduler after the optimizer steps (after the batch loop for a per-epoch
            schedule). The autofix is safe when it swaps two neighbouring statements; moving the
            step past a loop needs `--unsafe-fixes`. `scheduler.step(epoch)` and
            `ReduceLROnPlateau.step(metric)` do not depend on the order and are not reported.
        """,
        fixable="safe (unsafe when the step moves past a loop)",
    ),
    RuleInfo(
        code="LL402",
        name="parameter-in-several-groups",
        summary="Optimizer parameter groups overlap.",
        what="""
            Finds optimizer parameter groups (at construction or through `add_param_group`) where
            one group's parameters contain another's, e.g. `model.parameters()` and
            `model.fc.parameters()`.
        """,
        why="""
            torch refuses it at construction (`ValueError: some parameters appear in more than one
            parameter group`); caught statically, it fails before a long data-loading start-up.
        """,
        example="""
            optim.SGD([
                {"params": model.parameters()},
                {"params": model.fc.parameters(), "lr": 1e-2},
            ], lr=1e-3)
        """,
        fix="""
            Give each group disjoint parameters:

                optim.SGD([
                    {"params": model.base.parameters()},
                    {"params": model.fc.parameters(), "lr": 1e-2},
                ], lr=1e-3)
        """,
    ),
    RuleInfo(
        code="LL403",
        name="scheduler-never-stepped",
        summary="A learning-rate scheduler is created and never stepped.",
        what="""
            Finds a scheduler assigned to a name that is never stepped and never handed to other
            code (returned, passed to a trainer, stored), so nothing can step it.
        """,
        why="""
            The learning rate stays at its initial value for the whole run: the decay or warm-up
            you configured never happens, silently.
        """,
        example="""
            scheduler = CosineAnnealingLR(optimizer, T_max=100)
            for epoch in range(100):
                train_one_epoch()
        """,
        fix="""
            Step it after the optimizer, as the schedule expects (per epoch or per batch):

                for epoch in range(100):
                    train_one_epoch()
                    scheduler.step()
        """,
    ),
    RuleInfo(
        code="LL404",
        name="optimizer-created-per-step",
        summary="An optimizer is built inside the training loop or the step function.",
        what="""
            Finds an optimizer constructed in the same loop iteration that steps it, directly or in
            a step function the loop calls (`def update(x, y): opt = optim.Adam(model.parameters())`),
            for parameters that are not themselves made anew each iteration (optimizing a fresh
            tensor per sample, as in style transfer or test-time optimization, is fine; so is
            an inner optimizer for a fresh copy of the model per meta-learning task). A helper
            that builds the optimizer from what it is given (`make_opt(model)`, in this module
            or another) is judged by what the caller passes.

            At run time, a line that built at least 3 optimizers of one type for the same
            parameters, each used for at most one step, is reported at that line when they keep
            per-parameter state (momentum buffers, Adam's moments and step count, LBFGS's
            history). A stateless optimizer (SGD without momentum) rebuilt every step changes
            nothing and stays silent, as does an optimizer rebuilt per epoch or per stage.
        """,
        why="""
            The optimizer's state is created with it: SGD's momentum buffers, Adam's first and
            second moment estimates and its step count. Rebuilt every step, Adam takes its
            bias-corrected first step every time (an update of about `lr` in every coordinate,
            whatever the gradient's size), momentum never builds up, and LR schedulers attached
            to the old object stop acting. Training runs and the loss moves, just badly.
        """,
        example="""
            def update(x, y, lr):
                opt = optim.Adam(model.parameters(), lr)
                opt.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                opt.step()

            for x, y in loader:
                update(x, y, 1e-3)
        """,
        fix="""
            Build the optimizer once, before the loop, and pass it in:

                opt = optim.Adam(model.parameters(), lr=1e-3)

                def update(x, y):
                    opt.zero_grad()
                    ...

            There is no autofix: hoisting a construction out of a loop or a function changes which
            values its arguments see, and may need a new parameter; it is a decision to make by
            hand. `looplint run` confirms it: a new optimizer object for the same parameters at
            each step.
        """,
        origin="both",
    ),
    RuleInfo(
        code="LL405",
        name="optimizer-parameters-frozen",
        summary="Every parameter an optimizer updates was frozen, so its steps change nothing.",
        what="""
            Finds an optimizer step where everything the optimizer was built from was set to
            `requires_grad = False` before it (`for p in model.parameters(): p.requires_grad =
            False`, `model.requires_grad_(False)`) and never unfrozen. Fine-tuning that freezes a
            backbone and gives the optimizer only the head, or unfreezes the head after freezing
            everything, is not reported; neither are new modules put in after the freeze
            (`model.fc = nn.Linear(...)`, `model[0] = LoRALinear(...)`, a helper calling
            `setattr` or `add_module`, as LoRA does), which bring trainable parameters.

            At run time, an optimizer that stepped at least 3 times while none of its parameters
            received a gradient is reported at the `optimizer.step()` call, with how many of them
            are frozen and where the optimizer was created. A step that found its gradients
            cleared after a backward pass reached them is LL102's, not this.
        """,
        why="""
            Frozen parameters receive no gradient, and an optimizer skips parameters without one:
            every `step()` does nothing. The loss prints, the loop runs, and the weights never
            change. The usual cause is freezing the whole model (the new head included) after
            building the optimizer, meaning to freeze only the backbone.
        """,
        example="""
            model.fc = torch.nn.Linear(512, 10)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            for param in model.parameters():
                param.requires_grad = False
        """,
        fix="""
            Freeze the backbone only, or unfreeze what should train, and give the optimizer the
            trainable parameters:

                for param in model.parameters():
                    param.requires_grad = False
                for param in model.fc.parameters():
                    param.requires_grad = True
                optimizer = torch.optim.SGD(model.fc.parameters(), lr=0.01)

            `looplint run` confirms it: no parameter of the optimizer received a gradient at any of
            its steps.
        """,
        origin="both",
    ),
)
