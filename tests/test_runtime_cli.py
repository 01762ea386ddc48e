"""`looplint run`: exit codes, --max-steps, the script's own argv and crashes, static confirmation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from looplint.findings import Finding
from looplint.runtime.cli import main, merge_static, run_script

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
    assert "looplint run: stopped by --max-steps after 7 optimizer steps" in out
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
    # The writes after the close in the loop are LL301's evidence, not a second finding (LL303).
    assert "LL303" not in out and "LL301" in out and "LL202" in out
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


# --- a user's first runs, each in a real subprocess --------------------------------------------


def run_looplint(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m looplint run ARGS`, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "looplint", "run", *args],
        capture_output=True,
        check=False,
        text=True,
        cwd=cwd,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


PRINTING = """
    import os
    import subprocess
    import torch
    from torch import nn

    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    for step in range(6):
        x = torch.randn(2, 4)
        loss = nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
        loss.backward()
        optimizer.step()
        print(f"step {step} loss {loss.item():.3f}")
        os.write(1, b"written to file descriptor 1\\n")
    subprocess.run(["echo", "from a subprocess"], check=True)
    print("no newline at the end", end="")
"""


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["json", "sarif"])
def test_machine_formats_keep_stdout_parseable_when_the_script_prints(tmp_path, fmt):
    write_script(tmp_path, PRINTING)
    result = run_looplint("--format", fmt, "--no-static", "train.py", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)  # what `| python -m json.tool` needs
    for line in ("step 5 loss", "written to file descriptor 1", "from a subprocess", "no newline"):
        assert line in result.stderr
    if fmt == "json":
        (finding,) = report
        assert (finding["code"], finding["origin"], finding["line"]) == ("LL101", "runtime", 13)
        # Only the line of a runtime finding is known: no made-up end.
        assert finding["end_line"] is None and finding["end_column"] is None
    else:
        (result_,) = report["runs"][0]["results"]
        assert result_["ruleId"] == "LL101"
        assert result_["locations"][0]["physicalLocation"]["region"] == {"startLine": 13, "startColumn": 1}


@pytest.mark.slow
def test_text_format_keeps_the_scripts_output_on_stdout(tmp_path):
    write_script(tmp_path, PRINTING)
    result = run_looplint("--no-static", "train.py", cwd=tmp_path)
    assert "step 5 loss" in result.stdout and "from a subprocess" in result.stdout
    assert "looplint run: 6 optimizer steps, 6 backward passes" in result.stdout


@pytest.mark.slow
def test_options_after_the_script_are_never_abbreviations_of_ours(tmp_path):
    write_script(tmp_path, "print('the script ran')\n", name="args.py")
    result = run_looplint("args.py", "--lr", cwd=tmp_path)
    assert result.returncode == 2
    assert "the script ran" not in result.stdout and "lr-find" not in result.stdout
    assert "usage: looplint run" in result.stderr and "SCRIPT [-- ARGS ...]" in result.stderr
    assert (
        "looplint run: error: unrecognized arguments: --lr; arguments for the script go after `--`: "
        "looplint run args.py -- --lr"
    ) in result.stderr
    passed = run_looplint("args.py", "--", "--lr", "--steps", "3", cwd=tmp_path)
    assert passed.returncode == 0 and "the script ran" in passed.stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{script}", "--steps", "3"], "--steps only applies with --lr-find"),
        (["{script}", "--min-lr", "1e-5", "--max-lr", "1"], "--min-lr, --max-lr only apply with --lr-find"),
        (["{script}", "--out-dir", "x"], "--out-dir only applies with --lr-find"),
        (["{script}", "--lr-find", "--max-steps", "5"], "--max-steps does not apply with --lr-find"),
        (["{script}", "--lr-find", "--min-lr", "0"], "expected a positive number"),
        (["{script}", "--max"], "unrecognized arguments: --max;"),
        (["{script}", "data.csv"], "looplint run {script} -- data.csv"),
    ],
)
def test_options_that_would_do_nothing_are_usage_errors(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = write_script(tmp_path, "print('ran')\n")
    assert main([a.replace("{script}", script) for a in argv]) == 2
    captured = capsys.readouterr()
    assert message.replace("{script}", script) in captured.err
    assert "ran" not in captured.out


def test_help_shows_the_script_arguments_and_the_range_test_defaults(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "SCRIPT [-- ARGS ...]" in out
    for option, default in [("--min-lr", "1e-07"), ("--max-lr", "10"), ("--steps", "100")]:
        line = next(line for line in out.splitlines() if line.strip().startswith(option))
        assert f"(default: {default})" in line


@pytest.mark.slow
def test_file_is_absolute_as_with_python_so_a_script_that_changes_directory_finds_its_files(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "labels.txt").write_text("cat\ndog\n")
    script = """
        import os
        here = os.path.dirname(__file__)
        os.chdir(os.path.expanduser("~"))
        with open(os.path.join(here, "labels.txt")) as handle:
            print("labels:", handle.read().split(), os.path.isabs(__file__))
    """
    write_script(project, script)
    plain = subprocess.run(
        [sys.executable, "train.py"], capture_output=True, text=True, cwd=project, check=False
    )
    result = run_looplint("train.py", "--no-static", cwd=project)
    assert plain.stdout == "labels: ['cat', 'dog'] True\n"
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(plain.stdout)


ONE_STEP_THEN = """
    import sys
    import torch
    from torch import nn
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter("runs")
    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    optimizer.zero_grad()
    loss = model(torch.randn(2, 4)).pow(2).mean()
    loss.backward()
    optimizer.step()
    writer.add_scalar("loss", loss.item(), 0)
    writer.close()
    {end}
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "end, code, head",
    [
        ("pass", 0, "looplint run: 1 optimizer step, 1 backward pass"),
        (
            "sys.exit(3)",
            3,
            "looplint run: the script exited with status 3 after 1 optimizer step, 1 backward pass",
        ),
        (
            "int('x')",
            1,
            (
                "looplint run: the script failed at train.py:16 (ValueError: invalid literal for int() "
                "with base 10: 'x') after 1 optimizer step, 1 backward pass"
            ),
        ),
    ],
)
def test_summary_says_how_the_script_ended_and_how_far_it_got(tmp_path, end, code, head):
    write_script(tmp_path, ONE_STEP_THEN.format(end=end))
    result = run_looplint("train.py", cwd=tmp_path)
    assert result.returncode == code, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == head
    assert "  SGD (created at train.py:9): 1 step, 1 backward pass per step" in lines
    assert "  SummaryWriter runs: 1 write, 1 event file, closed at the end" in lines


DEFEATED_ACCUMULATION = """
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    accumulation = 4
    for i in range(48):
        optimizer.zero_grad()  # every micro-batch: the accumulation below never happens
        x = torch.randn(4, 8)
        loss = nn.functional.mse_loss(model(x), x.sum(1, keepdim=True)) / accumulation
        loss.backward()
        if (i + 1) % accumulation == 0:
            optimizer.step()
"""


@pytest.mark.slow
def test_accumulation_defeated_by_clearing_every_micro_batch_is_reported_at_the_clear(tmp_path):
    write_script(tmp_path, DEFEATED_ACCUMULATION)
    result = run_looplint("--format", "json", "--no-static", "train.py", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    (finding,) = json.loads(result.stdout)
    assert (finding["code"], finding["line"], finding["origin"]) == ("LL102", 10, "runtime")
    assert finding["message"] == (
        "`optimizer.zero_grad()` defeats the gradient accumulation: of 48 backward passes, it threw "
        "away the gradients of 36 before any step used them, so the 12 steps of `optimizer` applied "
        "only 12 of the 48; clear the gradients right after `optimizer.step()` instead"
    )
    details = finding["details"]
    assert (details["backward_passes"], details["steps"], details["thrown_away"]) == (48, 12, 36)
    assert "train.py:15" in details["related"]  # the step that went without the accumulation


def test_defeated_accumulation_confirms_a_static_ll102_on_the_same_clear(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = write_script(tmp_path, DEFEATED_ACCUMULATION)
    _, report = run_script(script, [])
    (runtime,) = report.findings
    static = Finding(script, 10, 9, "LL102", "gradients cleared every micro-batch", 10, 30)
    (merged,) = merge_static([static], report.findings)
    assert merged.confirmed and merged.column == 9
    assert runtime.message in merged.message


@pytest.mark.slow
def test_the_static_ll102_for_defeated_accumulation_is_confirmed_by_looplint_run(tmp_path):
    write_script(tmp_path, DEFEATED_ACCUMULATION)
    result = run_looplint("train.py", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if ": LL102 " in line]
    assert line.startswith("train.py:10:5: LL102 `optimizer.zero_grad()` runs on every iteration")
    assert "(run time: `optimizer.zero_grad()` defeats the gradient accumulation" in line
    assert line.endswith("[confirmed at run time]")


@pytest.mark.slow
def test_a_diverging_loss_names_the_confirmed_bug_not_the_learning_rate(tmp_path):
    write_script(
        tmp_path,
        """
        import torch
        from torch import nn

        torch.manual_seed(0)
        model = nn.Linear(4, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        w = torch.randn(4, 1)
        for step in range(200):
            x = torch.randn(32, 4)
            loss = nn.functional.mse_loss(model(x), x @ w)
            loss.backward()  # never cleared: the steps grow
            optimizer.step()
        """,
    )
    result = run_looplint("train.py", cwd=tmp_path)
    lines = result.stdout.splitlines()
    ll101 = next(line for line in lines if ": LL101 " in line)
    ll506 = next(line for line in lines if ": LL506 " in line)
    assert ll101.startswith("train.py:13:5: LL101") and ll101.endswith("[confirmed at run time]")
    assert "likely too high" not in ll506
    assert ll506.endswith(
        ": the optimizer's gradients are never cleared (LL101 at train.py:13), so every step applies "
        "the sum of all earlier gradients and the updates grow as if the learning rate rose; fix LL101 "
        "first, the learning rate may be fine"
    )
