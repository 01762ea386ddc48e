"""Script mode: the LR range test on an unmodified training script."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from looplint.lrfind.script import run_lr_find_script

# The seed notes' per-layer SGD, with a scheduler that halves the LR after every batch (it
# must not win) and a broad `except Exception` (it must not swallow the test's stop).
TRAIN = """
import json
import sys
import sys

import torch
from torch import nn, optim

log_path = sys.argv[1]
torch.manual_seed(0)
x = torch.randn(512, 10)
y = (x[:, :3].sum(1) > 0).long()
model = nn.Sequential()
model.base = nn.Sequential(nn.Linear(10, 32), nn.ReLU())
model.classifier = nn.Linear(32, 2)
optimizer = optim.SGD([
    {"params": model.base.parameters(), "lr": 1e-2},
    {"params": model.classifier.parameters()},
], lr=1e-3, momentum=0.9)
scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
used = []
try:
    for epoch in range(100):
        for i in range(0, 512, 32):
            loss = nn.functional.cross_entropy(model(x[i:i + 32]), y[i:i + 32])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            used.append([group["lr"] for group in optimizer.param_groups])
            scheduler.step()
except Exception as error:
    print("swallowed", error)
finally:
    with open(log_path, "w") as log:
        json.dump(used, log)
print("training finished")
"""


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(TRAIN)
    return path


def test_json_report_per_group_suggestions_and_outputs(script, tmp_path, capsys):
    log = tmp_path / "used.json"
    out = tmp_path / "out"
    code = run_lr_find_script(
        str(script), [str(log)], min_lr=1e-7, max_lr=10.0, steps=100, fmt="json", out_dir=str(out)
    )
    captured = capsys.readouterr()
    report = json.loads(captured.out)["lr_find"]  # stdout holds only the JSON
    assert code == 0
    assert "swallowed" not in captured.out + captured.err
    assert "training finished" not in captured.out + captured.err  # the test stopped the script

    base, classifier = report["groups"]
    assert base["name"] == "SGD group 0" and classifier["name"] == "SGD group 1"
    assert (base["initial_lr"], classifier["initial_lr"]) == (1e-2, 1e-3)
    assert base["suggested_lr"] == pytest.approx(10 * classifier["suggested_lr"])
    assert report["stop_reason"] in ("diverged", "non-finite", "steps")
    assert len(report["lrs"]) == len(report["losses"]) == len(report["raw_losses"]) > 20

    # The LR every step really used is ours, not the scheduler's (which halves it each batch).
    used = json.loads(log.read_text())
    recorded = len(report["lrs"])
    assert len(used) >= recorded
    for step in range(recorded):
        assert used[step][0] == pytest.approx(base["lrs"][step])
        assert used[step][1] == pytest.approx(classifier["lrs"][step])
    assert base["lrs"][-1] > 100 * base["lrs"][0]

    assert report["plot"] == str(out / "lr_find.png")
    assert (out / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    events = EventAccumulator(str(out))
    events.Reload()
    assert {"lr_find/loss", "lr_find/lr", "lr_find/raw_loss"} <= set(events.Tags()["scalars"])
    lrs = [event.value for event in events.Scalars("lr_find/lr")]
    assert lrs == pytest.approx(report["lrs"], rel=1e-6)


def test_text_report_and_divergence_stop(script, tmp_path, capsys):
    code = run_lr_find_script(
        str(script),
        [str(tmp_path / "used.json")],
        min_lr=1e-4,
        max_lr=1e4,
        steps=200,
        trial_steps=40,
        fmt="text",
        out_dir=str(tmp_path / "out"),
    )
    text = capsys.readouterr().out
    assert code == 0
    assert "(the smoothed loss" in text and "(diverging) at lr" in text or "non-finite" in text
    # The verdict on each group's own LR, in words, with the trials as evidence.
    # The script's StepLR decays from the group's LR: its start is what is judged.
    assert "SGD group 0: your StepLR starting lr 0.01 is about" in text
    assert "SGD group 1: your StepLR starting lr 0.001 is about" in text
    assert "schedule: StepLR starts at lr 0.01 and decays from there" in text
    assert "below the suggested" in text and "likely too small" in text
    assert "in 40-step trials from your initial weights, lr 0.01 reached a held-out loss of" in text
    assert "confidence: high" in text
    assert "why: the smoothed loss falls from" in text
    assert "trials (lr: held-out loss; before:" in text
    assert "range-test steps +" in text and "trial steps" in text
    assert "plot: " in text and "tensorboard: " in text


def test_hooks_are_removed_afterwards(script, tmp_path, capsys):
    original_backward = torch.Tensor.backward
    run_lr_find_script(
        str(script),
        [str(tmp_path / "u.json")],
        min_lr=1e-5,
        max_lr=1.0,
        steps=20,
        fmt="json",
        out_dir=str(tmp_path / "out"),
    )
    capsys.readouterr()
    assert torch.Tensor.backward is original_backward
    # No step pre-hook is left: an optimizer step keeps its own LR.
    param = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([param], lr=0.5)
    (param * 2).sum().backward()
    optimizer.step()
    assert optimizer.param_groups[0]["lr"] == 0.5
    assert torch.equal(param.detach(), torch.zeros(2))


def _run(tmp_path, source: str, **kwargs):
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(source))
    settings = {"min_lr": 1e-5, "max_lr": 1.0, "steps": 20, "fmt": "text"}
    settings.update(kwargs)
    return run_lr_find_script(str(path), [], out_dir=str(tmp_path / "out"), **settings)


def test_missing_script_and_bad_settings(tmp_path, capsys):
    assert (
        run_lr_find_script(
            str(tmp_path / "nope.py"), [], min_lr=1e-7, max_lr=10, steps=10, fmt="text", out_dir="x"
        )
        == 2
    )
    assert "cannot run" in capsys.readouterr().err
    assert _run(tmp_path, "pass\n", min_lr=1.0, max_lr=0.1) == 2
    assert "max-lr must be a number larger than min-lr" in capsys.readouterr().err
    assert _run(tmp_path, "pass\n", fmt="sarif") == 2
    assert "text or json" in capsys.readouterr().err


def test_script_without_training_loop(tmp_path, capsys):
    assert _run(tmp_path, "print('hello')\n") == 1
    assert "made no optimizer step" in capsys.readouterr().err


def test_script_errors_keep_their_exit_code_and_traceback(tmp_path, capsys):
    assert _run(tmp_path, "import sys\nsys.exit(3)\n") == 3
    code = _run(tmp_path, "x = 1\nraise ValueError('broken data')\n")
    err = capsys.readouterr().err
    assert code == 1
    assert "ValueError: broken data" in err
    assert 'script.py", line 2' in err
    assert "runpy" not in err and "lrfind" not in err  # only the script's own frames


def test_through_looplint_run(script, tmp_path, capsys):
    from looplint.runtime.cli import main

    out = tmp_path / "out"
    argv = [str(script), "--lr-find", "--steps", "40", "--max-lr", "1", "--format", "json"]
    code = main([*argv, "--out-dir", str(out), "--", str(tmp_path / "used.json")])
    report = json.loads(capsys.readouterr().out)["lr_find"]
    assert code == 0
    assert len(report["groups"]) == 2 and report["suggested_index"] is not None
    assert report["trials"] == [] and report["groups"][0]["verdict"] is not None  # the curve alone
    assert (out / "lr_find.png").exists()
    # --trial-steps 40: the confirmation trials.
    code = main([*argv, "--trial-steps", "40", "--out-dir", str(out), "--", str(tmp_path / "used.json")])
    report = json.loads(capsys.readouterr().out)["lr_find"]
    assert code == 0 and len(report["trials"]) >= 3 and report["cost"]["trial_steps"] > 0
    assert main([*argv, "--trial-steps", "-1"]) == 2
    assert "--trial-steps: expected a non-negative integer, got '-1'" in capsys.readouterr().err


def test_script_that_ends_before_the_test(tmp_path, capsys):
    source = TRAIN.replace("range(100)", "range(2)")  # 32 optimizer steps in all
    log_path = repr(str(tmp_path / "used.json"))
    code = _run(tmp_path, source.replace("sys.argv[1]", log_path), steps=100, fmt="json")
    report = json.loads(capsys.readouterr().out)["lr_find"]
    assert report["stop_reason"] == "script-ended"
    assert "ended after 32 optimizer steps, before the 100 steps" in report["stop_detail"]
    assert len(report["lrs"]) == 31  # the loss after the last step was never measured
    assert code == (0 if report["suggested_index"] is not None else 1)


def test_without_matplotlib_the_report_still_comes(script, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code = run_lr_find_script(
        str(script),
        [str(tmp_path / "u.json")],
        min_lr=1e-5,
        max_lr=10.0,
        steps=40,
        fmt="text",
        out_dir=str(tmp_path / "out"),
    )
    text = capsys.readouterr().out
    assert code == 0 and "below the suggested" in text
    assert "note: no plot: plotting the range test needs matplotlib" in text
    assert "tensorboard: " in text and not (tmp_path / "out" / "lr_find.png").exists()


# --- the trials in script mode: state restoration, verdicts, schedules -----------------------

# Full-batch training (the same batch every step, so every loss is reproducible exactly), with
# BatchNorm (buffers) and Adam (optimizer state). Before each step the script logs the loss, the
# running mean's sum and how many parameters have Adam state.
FULL_BATCH = """
import json
import sys

import torch
from torch import nn

torch.manual_seed(0)
x = torch.randn(256, 6)
y = (x[:, :2].sum(1) > 0).long()
model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
log = []
try:
    for step in range(2000):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        log.append([loss.item(), model[1].running_mean.sum().item(), len(optimizer.state)])
        optimizer.step()
finally:
    with open(sys.argv[1], "w") as out:
        json.dump(log, out)
"""


def test_every_trial_starts_from_the_initial_state_in_place(tmp_path, capsys):
    path = tmp_path / "full_batch.py"
    path.write_text(FULL_BATCH)
    log_path = tmp_path / "log.json"
    code = run_lr_find_script(
        str(path), [str(log_path)], steps=60, trial_steps=40, fmt="json", out_dir=str(tmp_path / "out")
    )
    report = json.loads(capsys.readouterr().out)["lr_find"]
    log = json.loads(log_path.read_text())
    assert code == 0 and len(report["trials"]) >= 3
    # The first step sees the initial weights, buffers and an empty Adam state. After the range
    # test, and after every trial, all three are back exactly: once for the held-out losses of
    # the initial weights, then once at the start of every trial.
    initial = log[0]
    assert initial[2] == 0
    assert log.count(initial) == 2 + len(report["trials"]), (log.count(initial), len(report["trials"]))
    # The held-out losses of the initial weights are that same loss.
    assert report["baseline_loss"] == pytest.approx(initial[0], rel=1e-6)
    # The cost counts every step the script took: the range test, then the trials (with their
    # held-out batches and the step at lr 0 after the range test).
    cost = report["cost"]
    assert len(log) == cost["range_test_steps"] + cost["trial_steps"]


# Linear regression on whitened inputs: the Hessian of the MSE is 2 I, so plain SGD diverges
# above lr 1 and 40 steps reach the noise floor from about lr 0.04 up (see test_lr_find.py).
REGRESSION = """
import sys

import torch
from torch import nn

lr = float(sys.argv[1])
schedule = sys.argv[2] if len(sys.argv) > 2 else "constant"
g = torch.Generator().manual_seed(0)
x = torch.randn(2048, 8, generator=g)
x = (x - x.mean(0)) @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(x.T))).T
y = x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(2048, 1, generator=g)
model = nn.Linear(8, 1, bias=False)
optimizer = torch.optim.SGD(model.parameters(), lr=lr)
if schedule == "onecycle":
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=5000, cycle_momentum=False
    )
elif schedule == "cosine":
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=5000)
else:
    scheduler = None
for epoch in range(1000):
    order = torch.randperm(2048, generator=g)
    for i in range(0, 2048, 256):
        batch = order[i:i + 256]
        loss = nn.functional.mse_loss(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
"""


@pytest.mark.parametrize(
    ("own_lr", "verdict", "words", "trial_steps"),
    [
        (1e-3, "too small", "below the suggested", 0),
        (0.15, "good", "within the good range", 0),
        (3.0, "too large", "where the loss diverged", 0),
        (1e-3, "too small", "in 40-step trials from your initial weights, lr 0.001 reached", 40),
    ],
)
def test_verdict_on_the_scripts_own_lr(tmp_path, capsys, own_lr, verdict, words, trial_steps):
    path = tmp_path / "regression.py"
    path.write_text(REGRESSION)
    code = run_lr_find_script(
        str(path), [str(own_lr)], trial_steps=trial_steps, fmt="json", out_dir=str(tmp_path / "out")
    )
    report = json.loads(capsys.readouterr().out)["lr_find"]
    (group,) = report["groups"]
    assert code == 0
    assert group["verdict"] == verdict, group["verdict_text"]
    assert words in group["verdict_text"] and f"your lr {own_lr:.3g}" in group["verdict_text"]
    assert report["confidence"] == "high"
    low, high = group["good_range"]
    assert 0.04 / 3 < low < 0.15 < high < 3.0
    assert group["schedule"] is None
    assert len(report["trials"]) >= (3 if trial_steps else 0)


@pytest.mark.parametrize(
    ("schedule", "setting", "advice"),
    [
        ("onecycle", "your OneCycleLR max_lr 0.001", "OneCycleLR warms up to max_lr (0.001 here)"),
        ("cosine", "your CosineAnnealingLR starting lr 0.001", "CosineAnnealingLR starts at lr 0.001"),
    ],
)
def test_a_schedule_is_judged_by_its_peak(tmp_path, capsys, schedule, setting, advice):
    path = tmp_path / "regression.py"
    path.write_text(REGRESSION)
    code = run_lr_find_script(str(path), ["1e-3", schedule], fmt="json", out_dir=str(tmp_path / "out"))
    report = json.loads(capsys.readouterr().out)["lr_find"]
    (group,) = report["groups"]
    assert code == 0
    # OneCycleLR starts at max_lr / 25: the verdict is about max_lr, not the first step's LR.
    assert group["initial_lr"] == pytest.approx(1e-3)
    assert group["verdict"] == "too small" and group["verdict_text"].startswith(setting)
    assert advice in group["schedule"]
    if schedule == "onecycle":
        assert f"max_lr about {3 * group['suggested_lr']:.2g}" in group["schedule"]
        assert f"suggested {3 * group['suggested_lr']:.3g}" in group["verdict_text"]


def test_random_labels_script_gets_no_suggestion(tmp_path, capsys):
    path = tmp_path / "random_labels.py"
    path.write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            g = torch.Generator().manual_seed(0)
            x = torch.randn(2048, 20, generator=g)
            y = torch.randint(0, 4, (2048,), generator=g)
            model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            for epoch in range(100):
                for i in range(0, 2048, 64):
                    loss = nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
            """
        )
    )
    code = run_lr_find_script(str(path), [], fmt="text", out_dir=str(tmp_path / "out"))
    text = capsys.readouterr().out
    assert code == 1
    assert "SGD group 0: no suggestion (lr 0.01); no verdict" in text
    assert "confidence: none" in text and "labels unrelated to the inputs?" in text
