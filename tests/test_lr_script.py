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
        fmt="text",
        out_dir=str(tmp_path / "out"),
    )
    text = capsys.readouterr().out
    assert code == 0
    assert "stopped: the smoothed loss" in text or "non-finite" in text
    assert "SGD group 0: suggested lr" in text and "SGD group 1: suggested lr" in text
    assert "(lr was 0.01)" in text and "(lr was 0.001)" in text
    assert "why: the smoothed loss falls from" in text
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
    assert (out / "lr_find.png").exists()


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
    assert code == 0 and "suggested lr" in text
    assert "note: no plot: plotting the range test needs matplotlib" in text
    assert "tensorboard: " in text and not (tmp_path / "out" / "lr_find.png").exists()
