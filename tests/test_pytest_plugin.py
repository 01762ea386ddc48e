"""The pytest plugin, in real pytest sessions run by `pytester`."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# In-process sessions drop the modules they imported: the whole linter (libcst, the model, the
# rules) is loaded here once, so that no session re-imports half of it next to the other half.
import looplint.engine
import looplint.static.analyzer
import looplint.static.rules

looplint.static.rules.all_rules()

pytest_plugins = ["pytester"]

BUGGY = """\
import torch

model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
"""

CLEAN = BUGGY.replace("    loss.backward()", "    optimizer.zero_grad()\n    loss.backward()")


def test_clean_file_passes(pytester: pytest.Pytester):
    pytester.makepyfile(train=CLEAN)
    result = pytester.runpytest("--looplint", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["train.py::looplint PASSED*"])


def test_findings_fail_the_item_in_path_line_col_form(pytester: pytest.Pytester):
    pytester.makepyfile(train=BUGGY)
    result = pytester.runpytest("--looplint")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["train.py:8:5: LL101 `optimizer` steps inside the *"])
    result.stdout.no_fnmatch_line("*Traceback*")


def test_a_syntax_error_fails_the_item(pytester: pytest.Pytester):
    pytester.makepyfile(train="for x in loader:\n    loss.backward(\n")
    result = pytester.runpytest("--looplint")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["train.py:*: LL000 *"])


def test_without_the_option_nothing_is_linted(pytester: pytest.Pytester):
    pytester.makepyfile(train=BUGGY)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_lint_items_sit_beside_the_tests_and_can_be_selected(pytester: pytest.Pytester):
    pytester.makepyfile(test_model="def test_one():\n    assert True\n")
    result = pytester.runpytest("--looplint", "-m", "looplint", "-v")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["test_model.py::looplint PASSED*"])


def test_unchanged_files_are_skipped_on_the_next_run(pytester: pytest.Pytester):
    pytester.makepyfile(train=CLEAN, broken=BUGGY)
    pytester.runpytest("--looplint").assert_outcomes(passed=1, failed=1)
    # The clean file is remembered; the failing one is linted again.
    second = pytester.runpytest("--looplint", "-rs")
    second.assert_outcomes(skipped=1, failed=1)
    second.stdout.fnmatch_lines(["*unchanged since it last passed*"])
    # Editing the file (content and size change) makes it run again.
    pytester.makepyfile(train=CLEAN + "\nprint('done')\n")
    pytester.runpytest("--looplint").assert_outcomes(passed=1, failed=1)
    # Without the cache plugin every file is linted.
    pytester.runpytest("--looplint", "-p", "no:cacheprovider").assert_outcomes(passed=1, failed=1)


def test_cache_is_invalidated_when_the_configuration_changes(pytester: pytest.Pytester):
    pytester.makepyfile(train=BUGGY)
    pytester.makepyprojecttoml('[tool.looplint]\nignore = ["LL101"]\n')
    pytester.runpytest("--looplint").assert_outcomes(passed=1)
    pytester.runpytest("--looplint").assert_outcomes(skipped=1)
    pytester.makepyprojecttoml("[tool.looplint]\nignore = []\n")
    pytester.runpytest("--looplint").assert_outcomes(failed=1)


def test_ini_globs_choose_the_files(pytester: pytest.Pytester):
    pytester.makepyfile(train=BUGGY, helpers=BUGGY)
    pytester.mkdir("scripts")
    (pytester.path / "scripts" / "finetune.py").write_text(BUGGY)
    pytester.makeini("[pytest]\nlooplint_globs = train*.py scripts/*.py\n")
    result = pytester.runpytest("--looplint", "-v")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*train.py::looplint FAILED*"])
    result.stdout.fnmatch_lines(["*scripts/finetune.py::looplint FAILED*"])
    result.stdout.no_fnmatch_line("*helpers.py*")


def test_pyproject_exclude_keeps_files_out(pytester: pytest.Pytester):
    pytester.makepyfile(train=CLEAN)
    pytester.mkdir("vendor")
    (pytester.path / "vendor" / "old.py").write_text(BUGGY)
    pytester.makepyprojecttoml('[tool.looplint]\nexclude = ["vendor"]\n')
    result = pytester.runpytest("--looplint", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*vendor*")


def test_notebooks_are_linted_when_their_glob_is_added(pytester: pytest.Pytester):
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# Train"), nbformat.v4.new_code_cell(BUGGY)]
    nbformat.write(notebook, str(pytester.path / "train.ipynb"))
    pytester.makeini("[pytest]\nlooplint_globs = *.py *.ipynb\n")
    result = pytester.runpytest("--looplint")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["train.ipynb:cell 2:8:5: LL101 *"])


TRAINING_TESTS = """\
import pytest
import torch


def train(steps, accumulate=1, clear=True):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(steps):
        loss = model(torch.randn(8, 4)).pow(2).mean()
        loss.backward()
        if (step + 1) % accumulate == 0:
            optimizer.step()
            if clear:
                optimizer.zero_grad()


@pytest.mark.loop_hygiene(accumulation_steps=2)
def test_accumulates_as_declared():
    train(4, accumulate=2)


@pytest.mark.loop_hygiene(accumulation_steps=4)
def test_accumulates_fewer_than_declared():
    train(4, accumulate=2)


def test_never_clears(looplint_watch):
    train(3, clear=False)


def test_never_clears_but_says_so(looplint_watch):
    looplint_watch.ignore("LL101")
    train(3, clear=False)
    assert looplint_watch.report is not None


@pytest.mark.loop_hygiene(ignore="ll1")
def test_never_clears_but_the_marker_says_so():
    train(3, clear=False)


def test_clean_loop_with_fixture(looplint_watch):
    train(3)


def test_reads_the_report_inside_its_body(looplint_watch):
    train(3)
    assert not looplint_watch.report.findings  # not filled yet: must not pass vacuously


@pytest.mark.loop_hygiene(accumulation_steps=0)
def test_bad_marker():
    train(1)


@pytest.mark.loop_hygiene
def test_failing_body_keeps_its_own_error():
    train(1)
    assert 1 == 2, "the test's own assertion"
"""


@pytest.mark.slow
def test_loop_hygiene_marker_and_fixture(pytester: pytest.Pytester):
    pytester.makepyfile(test_training=TRAINING_TESTS)
    # A separate process: the watched tests import torch modules that cannot be imported twice.
    session = pytester.runpytest_subprocess("-rA", "-p", "no:cacheprovider")
    assert session.parseoutcomes() == {"passed": 4, "failed": 5}
    for name in (
        "accumulates_as_declared",
        "never_clears_but_says_so",
        "never_clears_but_the_marker_says_so",
        "clean_loop_with_fixture",
    ):
        session.stdout.fnmatch_lines([f"PASSED test_training.py::test_{name}"])

    text = session.stdout.str()
    fewer = failure_section(text, "test_accumulates_fewer_than_declared")
    assert "looplint.watch found 1 problem in this test's training loop:" in fewer
    assert "test_training.py:13:1: LL101" in fewer
    assert "expected accumulation_steps=4" in fewer
    assert "Traceback" not in fewer and "pluggy" not in fewer
    never = failure_section(text, "test_never_clears")
    assert "LL101" in never and "without being cleared" in never

    inside = failure_section(text, "test_reads_the_report_inside_its_body")
    assert "the runtime report is filled when the watched block exits" in inside

    bad_marker = failure_section(text, "test_bad_marker")
    assert bad_marker.strip() == "loop_hygiene: accumulation_steps must be a positive integer, got 0"
    own_error = failure_section(text, "test_failing_body_keeps_its_own_error")
    assert "AssertionError: the test's own assertion" in own_error
    assert "looplint.watch found" not in own_error


def failure_section(output: str, test_name: str) -> str:
    """The failure report of one test in pytest's output (between its header and the next)."""
    header = re.search(rf"^_+ {test_name} _+$", output, re.MULTILINE)
    assert header, f"no failure section for {test_name}"
    rest = output[header.end() :]
    end = re.search(r"^(_{5,}|={5,})", rest, re.MULTILINE)
    return rest[: end.start() if end else len(rest)]


def test_importing_looplint_does_not_import_pytest():
    code = textwrap.dedent(
        """
        import sys
        import looplint, looplint.engine.fixer, looplint.engine.notebook
        looplint.lint_source("x = 1\\n")
        assert "pytest" not in sys.modules and "_pytest" not in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_broken_configuration_is_a_clear_collection_error(pytester: pytest.Pytester):
    pytester.makepyfile(train=CLEAN)
    pytester.makepyprojecttoml('[tool.looplint]\nselcet = ["LL1"]\n')
    result = pytester.runpytest("--looplint")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*looplint: *pyproject.toml: [[]tool.looplint[]]: unknown key 'selcet'*"])
    result.stdout.no_fnmatch_line("*Traceback*")


def readme_block(after: str, language: str) -> str:
    """The first ```LANGUAGE block of the README after the line that starts with `after`."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n" + after)
    match = re.compile(rf"^```{language}\n(.*?)^```", re.MULTILINE | re.DOTALL).search(readme, start)
    assert match, f"no {language} block after {after!r}"
    return match.group(1)


@pytest.mark.slow
def test_the_readme_marker_example_fails_with_the_readme_output(pytester: pytest.Pytester):
    example = readme_block("#### Loop hygiene at run time", "python")
    shown = readme_block("This loop steps every two batches", "text")
    pytester.mkdir("tests")
    (pytester.path / "tests" / "test_training.py").write_text(example)
    session = pytester.runpytest_subprocess("-p", "no:cacheprovider", "tests/test_training.py")
    assert session.parseoutcomes() == {"failed": 1}
    section = failure_section(session.stdout.str(), "test_training_step_accumulates_four_batches")
    assert section.strip() == shown.strip()
