"""`looplint run`: exit codes, --max-steps, the script's own argv and crashes, static confirmation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from looplint.findings import Finding
from looplint.runtime.cli import main, merge_static

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "runtime"
ROOT = FIXTURES.parent.parent


def write_script(tmp_path: Path, body: str, name: str = "train.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


LOOP = """
    import sys
    import torch
    from torch import nn

    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    steps = 0
    while True:
        {clear}
        x = torch.randn(2, 4)
        nn.functional.mse_loss(model(x), x.sum(1, keepdim=True)).backward()
        optimizer.step()
        steps += 1
        if steps == 5:
            break
    print("argv", sys.argv[1:], __name__)
    sys.exit({code})
"""


def test_clean_script_exits_0_and_prints_a_summary(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = write_script(tmp_path, LOOP.format(clear="optimizer.zero_grad()", code=0))
    assert main([script, "--", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "argv ['--epochs', '2'] __main__" in out
    assert "looplint run: 5 optimizer steps, 5 backward passes" in out


def test_findings_exit_1_and_point_at_the_script(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = write_script(tmp_path, LOOP.format(clear="pass", code=0))
    assert main([script, "--no-static"]) == 1
    out = capsys.readouterr().out
    assert f"{script}:13:1: LL101 gradients of 2 parameters accumulated across 5 backward passes" in out


def test_the_scripts_own_exit_code_wins(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = write_script(tmp_path, LOOP.format(clear="pass", code=3))
    assert main([script]) == 3
    assert "LL101" in capsys.readouterr().out


def test_script_crash_shows_its_traceback_and_still_reports(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = write_script(tmp_path, LOOP.format(clear="pass", code="int('x')"))
    assert main([script]) == 1
    captured = capsys.readouterr()
    assert "ValueError: invalid literal" in captured.err
    assert "runpy" not in captured.err and "looplint" not in captured.err
    assert "LL101" in captured.out


def test_max_steps_stops_cleanly_and_writers_are_still_checked(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = write_script(
        tmp_path,
        """
        import torch
        from torch import nn
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter("runs")
        model = nn.Linear(4, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        step = 0
        while True:  # never ends on its own
            optimizer.zero_grad()
            x = torch.randn(2, 4)
            loss = nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
            loss.backward()
            optimizer.step()
            writer.add_scalar("loss", loss.item())
            step += 1
        writer.close()
    """,
    )
    assert main([script, "--max-steps", "7", "--no-static"]) == 1
    out = capsys.readouterr().out
    assert "looplint run: 7 optimizer steps" in out
    assert "LL502 logged without global_step (6 calls)" in out
    assert "LL501" not in out  # the script never got to its close(): not its fault


@pytest.mark.parametrize(
    "argv, message",
    [
        (["missing.py"], "no such file: missing.py"),
        (["."], ". is a directory without __main__.py"),
        (["{script}", "--max-steps", "0"], "expected a positive integer"),
        (["{script}", "--format", "xml"], "invalid choice"),
        (["{script}", "--epochs", "3"], "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_2_with_a_message(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = write_script(tmp_path, "print('ran')\n")
    assert main([a.replace("{script}", script) for a in argv]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "ran" not in captured.out
    assert "Traceback" not in captured.err


def test_sys_argv_and_path_are_restored(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = write_script(tmp_path, "import sys\nsys.path.append('extra')\nprint(sys.argv)\n")
    argv, path = sys.argv[:], sys.path[:]
    assert main([script, "--", "a", "b"]) == 0
    assert sys.argv == argv and sys.path == path
    assert f"['{script}', 'a', 'b']" in capsys.readouterr().out


def test_runtime_finding_confirms_the_static_one_at_a_related_line():
    static = [
        Finding("train.py", 10, 5, "LL101", "gradients are never cleared"),
        Finding("train.py", 30, 1, "LL203", "loss tensor accumulated"),
    ]
    runtime = [
        Finding(
            "train.py",
            12,
            1,
            "LL101",
            "accumulated across 5 backward passes",
            origin="runtime",
            details={"related": ["train.py:10"]},
        ),
        Finding("train.py", 40, 1, "LL501", "writer never closed", origin="runtime"),
    ]
    merged = merge_static(static, runtime)
    assert [(f.line, f.code, f.confirmed, f.origin) for f in merged] == [
        (10, "LL101", True, "static"),
        (30, "LL203", False, "static"),
        (40, "LL501", False, "runtime"),
    ]
    assert merged[0].message == "gradients are never cleared (run time: accumulated across 5 backward passes)"
    assert merged[0].details["runtime"]["line"] == 12


def test_scheduler_that_never_moves_confirms_the_static_never_stepped(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = write_script(
        tmp_path,
        """
        import torch

        model = torch.nn.Linear(4, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        for _ in range(5):
            optimizer.zero_grad()
            loss = model(torch.randn(8, 4)).pow(2).mean()
            loss.backward()
            optimizer.step()
        """,
    )
    assert main([script]) == 1
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if " LL403 " in line]
    assert line.startswith(f"{script}:6:")
    assert line.endswith("[confirmed at run time]")
    assert " LL507 " not in out


def test_buggy_fixture_report_confirms_static_findings(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = str(FIXTURES / "buggy_cnn.py")
    assert main([script, "--", "--logdir", str(tmp_path / "runs"), "--epochs", "2"]) == 1
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith(script)]
    ll101 = next(line for line in lines if " LL101 " in line)
    assert "backward passes without being cleared" in ll101
    assert "LL303" in out and "LL301" in out and "LL202" in out
    assert "SummaryWriter" in out and "2 event files" in out


@pytest.mark.slow
def test_python_m_looplint_run_subprocess(tmp_path):
    script = write_script(tmp_path, LOOP.format(clear="pass", code=0))
    result = subprocess.run(
        [sys.executable, "-m", "looplint", "run", script, "--format", "json", "--no-static"],
        capture_output=True,
        check=False,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 1, result.stderr
    assert '"LL101"' in result.stdout


@pytest.mark.slow
def test_lr_find_is_delegated_with_its_options(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = str(FIXTURES / "two_optimizers.py")
    out_dir = tmp_path / "lr"
    code = main([script, "--lr-find", "--steps", "4", "--min-lr", "1e-4", "--out-dir", str(out_dir)])
    assert code in (0, 1)  # 1: no suggestion from so few steps
    assert "lr-find" in capsys.readouterr().out
    assert (out_dir / "lr_find.png").exists()


def test_script_with_a_syntax_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = write_script(tmp_path, "for i in range(3:\n    pass\n")
    assert main([script]) == 1
    captured = capsys.readouterr()
    assert "SyntaxError" in captured.err and "looplint" not in captured.err
    assert "LL000" in captured.out
