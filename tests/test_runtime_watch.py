"""looplint.watch() on real CPU training loops: each check fires, each trap stays silent."""

from __future__ import annotations

import glob
import os
import re
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

import looplint
from looplint.runtime import RuntimeFindingsError, watch
from looplint.runtime.session import Session

torch.set_num_threads(1)


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(4, 8)
    return x, x.sum(1, keepdim=True)


def codes(report) -> list[str]:
    return sorted(f.code for f in report.findings if f.code < "LL506")


def test_missing_zero_grad_is_confirmed_with_counts_and_call_site():
    model = make_model()
    with watch() as report:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        for _ in range(5):
            x, y = batch()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()  # LINE-STEP
    (finding,) = [f for f in report.findings if f.code == "LL101"]
    assert finding.origin == "runtime"
    assert finding.path == os.path.relpath(__file__)
    source = Path(__file__).read_text().splitlines()
    assert "LINE-STEP" in source[finding.line - 1]
    assert "gradients of 4 parameters accumulated across 5 backward passes" in finding.message
    assert finding.details["steps_affected"] == 4
    assert report.summary["optimizer_steps"] == 5
    assert report.summary["backward_passes"] == 5


def test_optimizer_created_before_watch_is_tracked_from_its_first_step():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, y = batch()
    nn.functional.mse_loss(model(x), y).backward()  # a gradient from before the session
    with watch() as report:
        for _ in range(3):
            x, y = batch()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    assert codes(report) == ["LL101"]


def test_zero_grad_between_backward_and_step():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with watch() as report:
        for _ in range(3):
            x, y = batch()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.zero_grad()
            optimizer.step()
    assert codes(report) == ["LL102"]
    assert "cleared at" in report.findings[0].message


@pytest.mark.parametrize("style", ["set_to_none", "zeros", "model", "grad_none", "grad_zero_", "data_zero_"])
def test_every_way_of_clearing_is_silent(style):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with watch() as report:
        for _ in range(4):
            if style == "set_to_none":
                optimizer.zero_grad(set_to_none=True)
            elif style == "zeros":
                optimizer.zero_grad(set_to_none=False)
            elif style == "model":
                model.zero_grad()
            else:
                for p in model.parameters():
                    if style == "grad_none":
                        p.grad = None
                    elif p.grad is not None:
                        (p.grad if style == "grad_zero_" else p.grad.data).zero_()
            x, y = batch()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    assert codes(report) == []


def test_accumulation_steps_asserted():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)  # before watch(): found in the graph
    with watch(accumulation_steps=3) as good:
        for i in range(9):
            x, y = batch()
            (nn.functional.mse_loss(model(x), y) / 3).backward()
            if (i + 1) % 3 == 0:
                optimizer.step()
                optimizer.zero_grad()
    assert codes(good) == []
    assert good.summary["optimizers"]["SGD"]["backward_passes_per_step"] == {3: 3}
    with watch(accumulation_steps=4) as bad:
        for i in range(9):
            x, y = batch()
            nn.functional.mse_loss(model(x), y).backward()
            if (i + 1) % 3 == 0:
                optimizer.step()
                optimizer.zero_grad()
    assert codes(bad) == ["LL101"]
    assert "expected accumulation_steps=4" in bad.findings[0].message


def test_accumulation_steps_must_be_positive():
    with pytest.raises(ValueError, match="positive integer"):
        watch(accumulation_steps=0)


def test_gan_generator_backward_touching_discriminator_is_silent_and_missing_clear_is_not():
    def run(clear_d: bool):
        torch.manual_seed(0)
        generator, discriminator = nn.Linear(4, 8), nn.Linear(8, 1)
        opt_g = torch.optim.Adam(generator.parameters(), lr=1e-4)
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-4)
        criterion = nn.BCEWithLogitsLoss()
        with watch() as report:
            for _ in range(4):
                if clear_d:
                    opt_d.zero_grad()
                fake = generator(torch.randn(8, 4))
                criterion(discriminator(torch.randn(8, 8)), torch.ones(8, 1)).backward()
                criterion(discriminator(fake.detach()), torch.zeros(8, 1)).backward()
                opt_d.step()
                opt_g.zero_grad()
                criterion(discriminator(fake), torch.ones(8, 1)).backward()  # also fills D's grads
                opt_g.step()
        return report

    assert codes(run(clear_d=True)) == []
    assert codes(run(clear_d=False)) == ["LL101"]


def test_grad_scaler_with_skipped_inf_step_is_silent():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu")
    with watch() as report:
        for i in range(5):
            optimizer.zero_grad()
            x, y = batch()
            if i == 2:
                x[0, 0] = float("inf")  # the scaler skips this step
            scaler.scale(nn.functional.mse_loss(model(x), y)).backward()
            scaler.step(optimizer)
            scaler.update()
    assert codes(report) == []
    assert report.summary["optimizer_steps"] == 4


def test_lbfgs_closure_and_gradient_penalty_are_silent():
    model = make_model()
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=3)
    x, y = batch()

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    with watch(accumulation_steps=1) as report:
        for _ in range(3):
            optimizer.step(closure)
        adam = torch.optim.Adam(model.parameters())
        for _ in range(3):
            inputs = torch.randn(4, 8, requires_grad=True)
            (grad,) = torch.autograd.grad(model(inputs).sum(), inputs, create_graph=True)
            adam.zero_grad()
            (model(inputs).mean() + grad.norm()).backward()
            adam.step()
    assert codes(report) == []


def test_non_finite_loss_reports_the_first_step():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with watch() as report:
        for i in range(5):
            optimizer.zero_grad()
            x, y = batch()
            loss = nn.functional.mse_loss(model(x), y) * (float("nan") if i == 3 else 1.0)
            loss.backward()
            optimizer.step()
    (finding,) = [f for f in report.findings if f.code == "LL503"]
    assert "loss is nan at backward pass 4 (after 3 optimizer steps)" in finding.message


def test_non_finite_gradient_with_finite_loss():
    param = nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([param], lr=1e-3)
    with watch() as report:
        for _ in range(2):
            optimizer.zero_grad()
            param.sqrt().sum().backward()  # d sqrt(x)/dx at 0 is inf; the loss is 0
            optimizer.step()
    (finding,) = [f for f in report.findings if f.code == "LL503"]
    assert "gradients or weights are not finite (inf or nan) at optimizer step 1" in finding.message


def test_writer_closed_in_loop_reopens_event_files(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with watch() as report:
        writer = SummaryWriter(str(tmp_path))
        for epoch in range(3):
            for i in range(2):
                writer.add_scalar("train/acc", 0.5 + epoch, epoch * 2 + i)
            writer.close()
    # One bug, one finding: the writes after the close in the loop are LL301's evidence, not LL303.
    (finding,) = report.findings
    assert finding.code == "LL301"
    files = glob.glob(str(tmp_path / "events.out.tfevents.*"))
    assert len(files) == 3
    assert "ran 3 times" in finding.message and "written to again twice" in finding.message
    assert "(3 event files in" in finding.message
    steps = []
    for path in sorted(files):
        accumulator = EventAccumulator(path)
        accumulator.Reload()
        steps += [event.step for event in accumulator.Scalars("train/acc")]
    assert sorted(steps) == list(range(6))  # the data is split over three files


def test_write_after_a_single_close_is_ll303_alone(tmp_path):
    with watch() as report:
        writer = SummaryWriter(str(tmp_path))
        writer.add_scalar("train/acc", 0.5, 0)
        writer.close()
        writer.add_scalar("train/acc", 0.6, 1)  # reopens the writer: a second event file
        writer.close()
    (finding,) = report.findings
    assert finding.code == "LL303"
    assert "a write after the close silently opened a new event file (2 event files in" in finding.message


def test_writer_left_open_and_missing_or_backwards_steps(tmp_path):
    with watch() as report:
        writer = SummaryWriter(str(tmp_path))
        for epoch in range(2):
            for i in range(3):
                writer.add_scalar("loss", 1.0 / (1 + i + epoch), i)  # i restarts every epoch
            writer.add_scalar("lr", 0.1)
    found = sorted((f.code, f.message.split(":")[0]) for f in report.findings)
    assert [code for code, _ in found] == ["LL501", "LL502", "LL502"]
    messages = " ".join(f.message for f in report.findings)
    assert "step 0 logged after step 2" in messages
    assert "without global_step (2 calls)" in messages
    (open_writer,) = [f.message for f in report.findings if f.code == "LL501"]
    # However many the flush timer wrote in time, the count reads right.
    assert re.search(
        r"\((\d of 8 events (was|were) not on disk|this time all 8 events were on disk) when", open_writer
    )
    writer.close()


def test_writer_created_before_watch_and_closed_after_is_not_reported(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    with watch() as report:
        for step in range(3):
            writer.add_scalar("loss", 1.0 / (step + 1), step)
    writer.close()
    assert codes(report) == []


def test_running_sum_of_losses_logged_is_reported_and_average_is_not(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    with watch() as report, SummaryWriter(str(tmp_path)) as writer:
        step = 0
        for epoch in range(3):
            total = torch.zeros(())
            for i in range(6):
                optimizer.zero_grad()
                x, y = batch()
                loss = nn.functional.mse_loss(model(x), y)
                loss.backward()
                optimizer.step()
                total += loss.detach()  # a tensor updated in place: logged values must be copies
                step += 1
                writer.add_scalar("train/loss_sum", total, step)
                writer.add_scalar("train/loss_avg", total / (i + 1), step)
    (finding,) = [f for f in report.findings if f.code == "LL202"]
    assert "'train/loss_sum'" in finding.message


def instrumented_state() -> tuple:
    """Everything watch() patches or hooks, as it is now."""
    from torch.optim import optimizer as optim_module

    return (
        torch.autograd.backward,
        torch.optim.Optimizer.zero_grad,
        torch.optim.Optimizer.__init__,
        torch.nn.Module.zero_grad,
        torch.Tensor.zero_,
        SummaryWriter.add_scalar,
        SummaryWriter.close,
        SummaryWriter.__init__,
        len(optim_module._global_optimizer_pre_hooks),
        len(optim_module._global_optimizer_post_hooks),
    )


def test_patches_and_hooks_are_removed_even_after_keyboard_interrupt(tmp_path):
    before = instrumented_state()
    model = make_model()
    with pytest.raises(KeyboardInterrupt), watch():
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        assert instrumented_state() != before  # the hooks really were in place
        x, y = batch()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        raise KeyboardInterrupt
    assert instrumented_state() == before
    assert all(not p._post_accumulate_grad_hooks for p in model.parameters())
    assert "zero_" not in torch.Tensor.__dict__ or torch.Tensor.zero_ is before[4]


def test_hook_errors_become_one_warning_never_an_exception():
    class BrokenObserver:
        def on_backward(self, loss):
            raise RuntimeError("observer bug")

        def on_optimizer_step(self, optimizer):
            raise RuntimeError("observer bug")

    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    session = Session(observers=[BrokenObserver()])
    from looplint.runtime.session import RuntimeReport

    report = RuntimeReport()
    session.start()
    try:
        for _ in range(2):
            optimizer.zero_grad()
            x, y = batch()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    finally:
        session.stop()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session.finish(report)
    assert len(caught) == 1 and "observer bug" in str(caught[0].message)
    assert report.summary["optimizer_steps"] == 2


def test_observer_sees_backward_steps_writers_and_schedulers(tmp_path):
    seen: list[str] = []

    class Recorder:
        def on_backward(self, loss):
            seen.append("backward")
            assert loss.requires_grad

        def on_optimizer_step(self, optimizer):
            seen.append("step")

        def on_scheduler_created(self, scheduler):
            seen.append("scheduler")

        def on_writer(self, writer):
            seen.append("writer")

        def finish(self):
            return [looplint.Finding("x.py", 1, 1, "LL507", "lr never changes")]

        def summary(self):
            return {"optimizers": []}

    model = make_model()
    session = Session(observers=[Recorder()])
    from looplint.runtime.session import RuntimeReport

    report = RuntimeReport()
    session.start()
    try:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        torch.optim.lr_scheduler.StepLR(optimizer, 10)
        with SummaryWriter(str(tmp_path)):
            x, y = batch()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    finally:
        session.stop()
    session.finish(report)
    assert seen == ["scheduler", "writer", "backward", "step"]
    assert [f.origin for f in report.findings] == ["runtime"]
    assert report.summary["learning rates"] == {"optimizers": []}


def test_decorator_and_strict_mode():
    model = make_model()

    @watch(strict=True)
    def train(clear: bool) -> str:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        for _ in range(3):
            if clear:
                optimizer.zero_grad()
            x, y = batch()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
        return "done"

    assert train(clear=True) == "done"
    assert train.looplint_watch.report.summary["optimizer_steps"] == 3
    with pytest.raises(RuntimeFindingsError, match="LL101"):
        train(clear=False)


def test_top_level_watch_is_the_runtime_watch():
    with looplint.watch() as report:
        pass
    assert report.findings == [] and report.summary["optimizer_steps"] == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_host_device_syncs_are_counted_per_step_on_cuda():
    model = make_model().cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with watch() as quiet:
        for _ in range(4):
            optimizer.zero_grad()
            x = torch.randn(4, 8, device="cuda")
            nn.functional.mse_loss(model(x), x.sum(1, keepdim=True)).backward()
            optimizer.step()
    assert [f for f in quiet.findings if f.code == "LL504"] == []  # the hooks add no sync
    with watch() as noisy:
        for _ in range(4):
            optimizer.zero_grad()
            x = torch.randn(4, 8, device="cuda")
            loss = nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
            loss.backward()
            optimizer.step()
            print(loss.item(), float(loss))  # two syncs per step
    (finding,) = [f for f in noisy.findings if f.code == "LL504"]
    assert finding.details["syncs_per_step"] == 2


def test_late_non_finite_gradients_and_bounded_bookkeeping():
    model = make_model()
    session = Session(observers=[])
    from looplint.runtime.session import RuntimeReport

    report = RuntimeReport()
    session.start()
    try:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        for step in range(1, 26):
            optimizer.zero_grad()
            x, y = batch()
            nn.functional.mse_loss(model(x), y).backward()
            if step == 15:
                model[0].bias.grad[0] = float("inf")  # the loss of this step was finite
            optimizer.step()
    finally:
        session.stop()
    session.finish(report)
    # One tracked .grad address per parameter, however many tensors set_to_none allocated.
    session.grads._rebuild_grad_ptrs()
    assert len(session.grads._grad_ptrs) <= 4
    (finding,) = [f for f in report.findings if f.code == "LL503"]
    assert "by optimizer step 20 (checked every 10 steps)" in finding.message


def test_stepping_twice_on_the_same_gradients():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with watch() as report:
        for _ in range(2):
            optimizer.zero_grad()
            x, y = batch()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
            optimizer.step()
    (finding,) = report.findings
    assert (
        finding.code == "LL101" and "applied the gradients of 4 parameters a second time" in finding.message
    )


def test_weights_are_checked_every_100th_step_late_and_once_at_the_end():
    def run(steps: int, bad_step: int) -> str:
        model = make_model()
        with watch() as report:
            optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
            for step in range(1, steps + 1):
                optimizer.zero_grad()
                x, y = batch()
                nn.functional.mse_loss(model(x), y).backward()
                if step == bad_step:
                    model[0].bias.grad[0] = float("inf")  # the loss of this step was finite
                optimizer.step()
        (finding,) = [f for f in report.findings if f.code == "LL503"]
        return finding.message

    assert "by optimizer step 200 (checked every 100 steps)" in run(230, 120)
    assert "by optimizer step 230 (checked every 100 steps)" in run(230, 210)  # the check at the end


def test_strict_mode_raises_the_error_exported_by_looplint():
    import looplint

    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    expected = pytest.raises(looplint.RuntimeFindingsError, match=r"looplint found 1 problem:\n  .*LL101")
    with expected, looplint.watch(strict=True):
        for _ in range(3):
            x, y = batch()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    assert looplint.RuntimeFindingsError is RuntimeFindingsError
    assert issubclass(looplint.RuntimeFindingsError, AssertionError)


def test_the_report_cannot_be_read_before_the_block_ends():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with watch() as report:
        x, y = batch()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        assert repr(report) == "RuntimeReport(<filled when the watched block exits>)"
        with pytest.raises(RuntimeError, match="filled when the watched block exits"):
            report.findings  # noqa: B018
        with pytest.raises(RuntimeError, match="filled when the watched block exits"):
            report.summary  # noqa: B018
    assert report.findings == [] and report.summary["optimizer_steps"] == 1
