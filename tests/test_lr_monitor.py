"""LRMonitor on real training loops: LR tracking, TensorBoard logging, LL506 and LL507."""

from __future__ import annotations

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn, optim
from torch.utils.tensorboard import SummaryWriter

import looplint
from looplint.catalog import RULES, render
from looplint.lrfind.monitor import LRMonitor


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(256, 1, generator=g)
    return x, y


def train(
    monitor,
    optimizer,
    model,
    *,
    steps=120,
    scheduler=None,
    step_scheduler=True,
    seed=0,
    spike_at=None,
):
    """A plain regression loop that reports to the monitor the way watch() does."""
    x, y = _data(seed)
    for i in range(steps):
        rows = slice((i * 32) % 256, (i * 32) % 256 + 32)
        loss = nn.functional.mse_loss(model(x[rows]), y[rows])
        if i == spike_at:
            loss = loss + 100.0  # one outlier loss value (a constant: same gradient)
        optimizer.zero_grad()
        monitor.on_backward(loss)
        loss.backward()
        optimizer.step()
        monitor.on_optimizer_step(optimizer)
        if scheduler is not None and step_scheduler:
            if isinstance(scheduler, optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(loss.item())
            else:
                scheduler.step()
    return monitor.finish()


def _model():
    torch.manual_seed(0)
    return nn.Linear(8, 1)


def codes(findings):
    return [finding.code for finding in findings]


# --- LL506 loss-diverging -------------------------------------------------------------------


def test_ll506_constant_lr_too_high():
    model = _model()
    findings = train(LRMonitor(), optim.SGD(model.parameters(), lr=5.0), model)
    (finding,) = findings
    assert finding.code == "LL506" and finding.origin == "runtime"
    assert "the learning rate is likely too high" in finding.message
    assert "with lr 5" in finding.message
    assert finding.path.endswith("test_lr_monitor.py")
    assert finding.details["lr"] == [5.0]


def test_ll506_warmup_that_goes_too_high():
    model = _model()
    optimizer = optim.SGD(model.parameters(), lr=0.01)
    warmup = optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.1**step)
    monitor = LRMonitor()
    monitor.on_scheduler_created(warmup)
    (finding,) = train(monitor, optimizer, model, scheduler=warmup)
    assert finding.code == "LL506"
    assert "after the lr rose from" in finding.message
    assert finding.details["lr"][0] > 0.3  # the stable bound of this problem is about 0.5


def test_ll506_non_finite_right_after_an_lr_jump():
    model = _model()
    optimizer = optim.SGD(model.parameters(), lr=0.05)
    jump = optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 if step < 60 else 1e12)
    monitor = LRMonitor()
    (finding,) = train(monitor, optimizer, model, scheduler=jump)
    assert finding.code == "LL506"
    assert "steps after the lr rose from 0.05 to 5e+10" in finding.message
    assert finding.details["non_finite"] is True and finding.details["lr"] == [5e10]


@pytest.mark.parametrize("lr", [0.01, 0.1, 0.4])
def test_ll506_silent_on_healthy_training(lr):
    model = _model()
    assert train(LRMonitor(), optim.SGD(model.parameters(), lr=lr), model, steps=200) == []


def test_ll506_silent_on_a_single_bad_batch_and_noise_near_zero():
    model = _model()
    optimizer = optim.SGD(model.parameters(), lr=0.3, momentum=0.5)
    assert train(LRMonitor(), optimizer, model, steps=300, spike_at=150) == []


@pytest.mark.parametrize("seed", range(8))
def test_ll506_silent_on_a_short_run_with_noisy_batches(seed):
    # 30 steps on batches of 4: single losses jump by 2x and more while training is fine.
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(8, 1)
    optimizer = optim.SGD(model.parameters(), lr=1e-2)
    monitor = LRMonitor()
    for _ in range(30):
        x = torch.randn(4, 8, generator=g)
        loss = nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
        optimizer.zero_grad()
        monitor.on_backward(loss)
        loss.backward()
        optimizer.step()
        monitor.on_optimizer_step(optimizer)
    assert monitor.finish() == []


def test_ll506_silent_on_nan_without_an_lr_cause():
    model = _model()
    optimizer = optim.SGD(model.parameters(), lr=0.05)
    monitor = LRMonitor()
    x, y = _data()
    for i in range(60):
        loss = nn.functional.mse_loss(model(x[:32]), y[:32])
        if i == 50:
            loss = loss * float("nan")  # a data problem, not the LR: LL503's business
        optimizer.zero_grad()
        monitor.on_backward(loss)
        loss.backward()
        optimizer.step()
        monitor.on_optimizer_step(optimizer)
    assert monitor.finish() == []


# --- LL507 lr-never-changes -----------------------------------------------------------------


def test_ll507_scheduler_never_stepped():
    model = _model()
    optimizer = optim.SGD(model.parameters(), lr=0.05)
    monitor = LRMonitor()
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=10)
    monitor.on_scheduler_created(scheduler)
    (finding,) = train(monitor, optimizer, model, scheduler=scheduler, step_scheduler=False)
    assert finding.code == "LL507" and finding.origin == "runtime"
    assert "StepLR was created for SGD but the lr stayed 0.05 for all 120" in finding.message
    assert "scheduler.step() was never called" in finding.message
    assert finding.path.endswith("test_lr_monitor.py")


def test_ll507_schedule_that_never_reaches_a_change():
    model = _model()
    optimizer = optim.SGD(model.parameters(), lr=0.05)
    monitor = LRMonitor()
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=10_000)
    monitor.on_scheduler_created(scheduler)
    (finding,) = train(monitor, optimizer, model, scheduler=scheduler)
    assert "scheduler.step() ran 120 times" in finding.message


def test_ll507_found_from_the_optimizer_when_the_scheduler_was_not_reported():
    model = _model()
    optimizer = optim.SGD(model.parameters(), lr=0.05)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=50)
    findings = train(LRMonitor(), optimizer, model, scheduler=scheduler, step_scheduler=False)
    assert codes(findings) == ["LL507"]


@pytest.mark.parametrize(
    "make",
    [
        lambda opt: optim.lr_scheduler.StepLR(opt, step_size=30),
        lambda opt: optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100),
        lambda opt: optim.lr_scheduler.ReduceLROnPlateau(opt),  # keeping the LR is its job
        lambda opt: None,
    ],
)
def test_ll507_silent(make):
    model = _model()
    optimizer = optim.SGD(model.parameters(), lr=0.05)
    monitor = LRMonitor()
    scheduler = make(optimizer)
    if scheduler is not None:
        monitor.on_scheduler_created(scheduler)
    assert train(monitor, optimizer, model, scheduler=scheduler) == []


# --- LR tracking, TensorBoard, no reads before finish ---------------------------------------


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.base = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
        self.classifier = nn.Linear(16, 1)

    def forward(self, x):
        return self.classifier(self.base(x))


def per_layer_sgd(model):
    """The seed notes' example: per-layer learning rates through param groups."""
    return optim.SGD(
        [
            {"params": model.base.parameters(), "lr": 1e-2},
            {"params": model.classifier.parameters()},
        ],
        lr=1e-3,
        momentum=0.9,
    )


def test_per_layer_lrs_are_tracked_and_logged_to_tensorboard(tmp_path):
    torch.manual_seed(0)
    model = Net()
    optimizer = per_layer_sgd(model)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=40, gamma=0.1)
    monitor = LRMonitor()
    monitor.on_scheduler_created(scheduler)
    writer = SummaryWriter(str(tmp_path))
    monitor.on_writer(writer)
    assert train(monitor, optimizer, model, scheduler=scheduler) == []
    writer.close()

    (summary,) = monitor.summary()["optimizers"]
    base, classifier = summary["groups"]
    assert (base["initial_lr"], classifier["initial_lr"]) == (1e-2, 1e-3)
    assert base["history"] == [[1, 1e-2], [41, pytest.approx(1e-3)], [81, pytest.approx(1e-4)]]
    assert classifier["final_lr"] == pytest.approx(1e-5)
    lines = monitor.summary_lines()
    assert lines[0].startswith("SGD group 0: lr 0.01 -> 0.0001 (2 changes")
    assert lines[1].startswith("SGD group 1: lr 0.001 -> 1e-05")

    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert {"lr/group0", "lr/group1"} <= set(events.Tags()["scalars"])
    logged = [(e.step, round(e.value, 8)) for e in events.Scalars("lr/group1")]
    assert logged == [(1, 1e-3), (40, 1e-3), (41, 1e-4), (80, 1e-4), (81, 1e-5)]


def test_no_logging_into_a_closed_writer(tmp_path):
    model = _model()
    optimizer = optim.SGD(model.parameters(), lr=0.05)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=10)
    monitor = LRMonitor()
    writer = SummaryWriter(str(tmp_path))
    monitor.on_writer(writer)
    writer.close()
    train(monitor, optimizer, model, scheduler=scheduler, steps=30)
    assert writer.file_writer is None  # writing would have reopened it
    assert len(list(tmp_path.iterdir())) == 1


def test_losses_are_not_read_before_finish():
    # Meta tensors have no values: any read (item, float, bool, tolist) raises.
    monitor = LRMonitor()
    param = nn.Parameter(torch.ones(3))
    optimizer = optim.SGD([param], lr=0.1)
    for _ in range(3 * 1024 + 5):  # also goes through the compaction of kept losses
        monitor.on_backward(torch.empty((), device="meta"))
        monitor.on_optimizer_step(optimizer)
    assert monitor.summary()["optimizers"][0]["steps"] == 3 * 1024 + 5


def test_through_watch_shows_both_groups():
    torch.manual_seed(0)
    model = Net()
    x, y = _data()
    with looplint.watch() as report:
        optimizer = per_layer_sgd(model)
        scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=5)
        for i in range(20):
            loss = nn.functional.mse_loss(model(x[:32]), y[:32])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    groups = report.summary["learning rates"]["optimizers"][0]["groups"]
    assert [g["initial_lr"] for g in groups] == [1e-2, 1e-3]
    assert "LL507" in codes(report.findings)  # scheduler.step() is missing
    del scheduler


def test_rule_docs():
    for code in ("LL506", "LL507"):
        info = RULES[code]
        assert info.origin == "runtime"
        page = render(info)
        for part in ("What it does", "Why is this bad?", "Example", "Fix"):
            assert part in page


def test_ll506_silent_when_a_grad_scaler_grows_its_scale():
    # The scale doubles every 10 steps: the scaled loss grows 4096x over the run.
    model = _model()
    optimizer = optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=10)
    monitor = LRMonitor()
    x, y = _data()
    for i in range(120):
        rows = slice((i * 32) % 256, (i * 32) % 256 + 32)
        loss = nn.functional.mse_loss(model(x[rows]), y[rows])
        optimizer.zero_grad()
        scaled = scaler.scale(loss)
        monitor.on_backward(scaled)
        scaled.backward()
        scaler.step(optimizer)
        scaler.update()
        monitor.on_optimizer_step(optimizer)
    assert scaler.get_scale() > 2.0**20
    assert monitor.finish() == []


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_monitor_adds_no_host_device_sync_on_cuda():
    model = nn.Linear(8, 1).cuda()
    optimizer = optim.SGD(model.parameters(), lr=0.05)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=100)
    monitor = LRMonitor()
    monitor.on_scheduler_created(scheduler)
    x, y = (t.cuda() for t in _data())
    for _ in range(1100):  # past one compaction of the kept losses
        loss = nn.functional.mse_loss(model(x[:32]), y[:32])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        torch.cuda.set_sync_debug_mode("error")  # any synchronizing call raises
        try:
            monitor.on_backward(loss)
            monitor.on_optimizer_step(optimizer)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert monitor.finish() == []
    assert monitor.summary()["optimizers"][0]["groups"][0]["changes"] == 11
