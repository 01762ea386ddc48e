"""The `looplint` command end to end: real subprocesses for the contract, `main()` for the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from looplint.adapters.cli import main

# The classic bug: backward and step every batch, gradients never cleared (LL101 at the step).
MISSING_ZERO_GRAD = textwrap.dedent(
    """\
    def train(model, loader, optimizer, criterion):
        for inputs, targets in loader:
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
    """
)
CORRECT_LOOP = textwrap.dedent(
    """\
    def train(model, loader, optimizer, criterion):
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
    """
)
BROKEN = "x = (\n"


def run_cli(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`python -m looplint ARGS` in a fresh interpreter, as a user or CI would run it."""
    return subprocess.run(
        [sys.executable, "-m", "looplint", *args],
        check=False,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- end to end (subprocess) -------------------------------------------------------------------


def test_finding_is_reported_as_path_line_col_code_message_with_exit_1(tmp_path):
    write(tmp_path / "train.py", MISSING_ZERO_GRAD)
    proc = run_cli("train.py", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("train.py:5:9: LL101 ")
    assert "Found 1 problem in 1 file" in proc.stdout
    assert proc.stderr == ""


def test_clean_tree_exits_0(tmp_path):
    write(tmp_path / "pkg" / "train.py", CORRECT_LOOP)
    write(tmp_path / "pkg" / "util.py", "def add(a, b):\n    return a + b\n")
    proc = run_cli("pkg", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == "No problems found in 2 files.\n"


def test_missing_path_is_exit_2_and_the_other_files_are_still_linted(tmp_path):
    write(tmp_path / "train.py", MISSING_ZERO_GRAD)
    proc = run_cli("nope.py", "train.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "looplint: error: nope.py: No such file or directory\n"
    assert "train.py:5:9: LL101" in proc.stdout


def test_json_output_parses_back_with_the_documented_keys(tmp_path):
    write(tmp_path / "a.py", MISSING_ZERO_GRAD)
    write(tmp_path / "b.py", BROKEN)
    proc = run_cli("--format", "json", ".", cwd=tmp_path)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert [(item["path"], item["code"]) for item in data] == [("a.py", "LL101"), ("b.py", "LL000")]
    for item in data:
        assert {"code", "message", "path", "line", "column", "end_line", "end_column", "fix"} <= set(item)
    assert data[0]["fix"]["safe"] is True and data[0]["fix"]["edits"]
    assert data[1]["fix"] is None


def test_stdin_uses_stdin_filename_for_reports_and_config(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.looplint]\nper-file-ignores = {"legacy/*" = ["LL1"]}\n')
    proc = run_cli("-", "--stdin-filename", "src/train.py", cwd=tmp_path, stdin=MISSING_ZERO_GRAD)
    assert proc.returncode == 1
    assert proc.stdout.startswith("src/train.py:5:9: LL101 ")
    proc = run_cli("-", "--stdin-filename", "legacy/train.py", cwd=tmp_path, stdin=MISSING_ZERO_GRAD)
    assert proc.returncode == 0, proc.stdout


def test_stdin_without_a_name_is_reported_as_stdin(tmp_path):
    proc = run_cli("-", cwd=tmp_path, stdin=BROKEN)
    assert proc.returncode == 1
    assert proc.stdout.startswith("<stdin>:1:5: LL000 syntax error")


def test_stdin_filename_alone_reads_stdin(tmp_path):
    proc = run_cli("--stdin-filename", "x.py", cwd=tmp_path, stdin=BROKEN)
    assert proc.returncode == 1
    assert proc.stdout.startswith("x.py:1:5: LL000 syntax error")


def test_importing_the_cli_loads_neither_torch_nor_pytest_nor_libcst(tmp_path):
    code = (
        "import sys, looplint.adapters.cli\n"
        "print(sorted(m for m in ('torch', 'pytest', 'libcst') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.stdout.strip() == "[]", proc.stderr


def test_rule_subcommand_lists_and_explains(tmp_path):
    listing = run_cli("rule", cwd=tmp_path)
    assert listing.returncode == 0
    codes = [line.split()[0] for line in listing.stdout.splitlines()]
    assert "LL101" in codes and codes == sorted(codes)
    page = run_cli("rule", "ll101", cwd=tmp_path)
    assert page.returncode == 0
    assert page.stdout.startswith("LL101 missing-zero-grad")
    assert "Why is this bad?" in page.stdout
    unknown = run_cli("rule", "LL999", cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr == "looplint: error: unknown rule 'LL999'; 'looplint rule' lists them\n"


def test_run_subcommand_is_delegated_to_the_runtime(tmp_path):
    proc = run_cli("run", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: looplint run")


def test_fix_rewrites_the_file_and_leaves_it_clean(tmp_path):
    target = write(tmp_path / "train.py", MISSING_ZERO_GRAD)
    proc = run_cli("--fix", "train.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "optimizer.zero_grad()" in target.read_text()
    assert proc.stderr == "Fixed 1 problem in 1 file.\n"
    assert run_cli("train.py", cwd=tmp_path).returncode == 0


# --- in process ---------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project directory that is also the working directory."""
    write(tmp_path / "pyproject.toml", "[project]\nname = 'demo'\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_diff_prints_the_change_and_writes_nothing(project, capsys):
    target = write(project / "train.py", MISSING_ZERO_GRAD)
    assert main(["--diff", "train.py"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("--- a/train.py\n+++ b/train.py\n")
    assert "+        optimizer.zero_grad()\n" in out
    assert target.read_text() == MISSING_ZERO_GRAD
    write(project / "clean.py", CORRECT_LOOP)
    assert main(["--diff", "clean.py"]) == 0


def test_fix_on_stdin_prints_the_fixed_source(project, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(MISSING_ZERO_GRAD.encode())))
    assert main(["--fix", "-", "--stdin-filename", "train.py"]) == 0
    captured = capsys.readouterr()
    assert "optimizer.zero_grad()" in captured.out
    assert captured.out.startswith("def train(")


@pytest.mark.parametrize(
    ("args", "codes"),
    [
        ([], ["LL000", "LL101"]),
        (["--select", "LL1"], ["LL000", "LL101"]),  # a broken file is never hidden by select
        (["--select", "LL2"], ["LL000"]),
        (["--ignore", "ll1"], ["LL000"]),
        (["--ignore", "LL000,LL101"], []),
        (["--select", "LL2", "--extend-select", "LL101"], ["LL000", "LL101"]),
        (["--select", "LL1", "--ignore", "LL101"], ["LL000"]),
        (["--select", "LL101", "--ignore", "LL1"], ["LL000", "LL101"]),  # most specific wins
    ],
)
def test_select_ignore_with_codes_and_prefixes(project, capsys, args, codes):
    write(project / "a.py", MISSING_ZERO_GRAD)
    write(project / "b.py", BROKEN)
    status = main([*args, "--format", "json", "--no-cache", "."])
    found = [item["code"] for item in json.loads(capsys.readouterr().out)]
    assert sorted(found) == codes
    assert status == (1 if codes else 0)


def test_unknown_selector_is_a_usage_error(project, capsys):
    assert main(["--select", "E501", "."]) == 2
    assert "--select: 'E501' is not a rule code or prefix" in capsys.readouterr().err
    assert main(["--ignore", "LL9"]) == 2
    assert "'LL9' matches no rule" in capsys.readouterr().err


def test_bad_option_values_are_usage_errors(project, capsys):
    assert main(["--format", "xml"]) == 2
    assert main(["--jobs", "0"]) == 2
    assert "expected a positive integer" in capsys.readouterr().err
    assert main(["--statistics", "--format", "sarif"]) == 2
    assert main(["--version"]) == 0


def test_exit_zero_quiet_and_statistics(project, capsys):
    write(project / "a.py", MISSING_ZERO_GRAD)
    write(project / "b.py", MISSING_ZERO_GRAD)
    write(project / "c.py", BROKEN)
    assert main(["--exit-zero", "."]) == 0
    out = capsys.readouterr().out
    assert out.endswith("Found 3 problems in 3 files (2 fixable with --fix).\n")
    assert main(["--quiet", "."]) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("c.py:1:5: LL000")
    assert main(["--statistics", "--quiet", "."]) == 1
    assert capsys.readouterr().out == "2  LL101  missing-zero-grad\n1  LL000  syntax-error\n"


def test_directories_skip_gitignored_files_virtualenvs_and_build_dirs(project, capsys):
    write(project / ".gitignore", "generated/\n*_tmp.py\n!keep_tmp.py\n")
    for relative in [
        "src/train.py",
        "src/generated/out.py",
        "src/scratch_tmp.py",
        "src/keep_tmp.py",
        "env/lib/site.py",  # a virtualenv, whatever its name
        ".venv/lib/x.py",
        "build/lib/x.py",
        "node_modules/pkg/x.py",
        "src/__pycache__/x.py",
        "src/nested/.gitignore",
        "src/nested/a.py",
        "src/nested/b.py",
        "notes.txt",
    ]:
        write(project / relative, BROKEN)
    write(project / "env" / "pyvenv.cfg", "home = /usr\n")
    write(project / "src" / "nested" / ".gitignore", "b.py\n")
    assert main(["--format", "json", "--no-cache", "."]) == 1
    paths = [item["path"] for item in json.loads(capsys.readouterr().out)]
    assert paths == ["src/keep_tmp.py", "src/nested/a.py", "src/train.py"]
    # A parent's .gitignore still applies when only a subdirectory is linted.
    assert main(["--format", "json", "--no-cache", "src"]) == 1
    paths = [item["path"] for item in json.loads(capsys.readouterr().out)]
    assert paths == ["src/keep_tmp.py", "src/nested/a.py", "src/train.py"]
    # A file named explicitly is linted even inside an ignored directory.
    assert main(["--quiet", "--no-cache", "build/lib/x.py"]) == 1


def test_jobs_output_is_identical_to_a_single_process(project, capsys):
    for index in range(40):
        name = f"pkg{index % 4}/mod_{index:02d}.py"
        write(project / name, MISSING_ZERO_GRAD if index % 3 else BROKEN)
    assert main(["--no-cache", "--jobs", "1", "."]) == 1
    single = capsys.readouterr().out
    assert main(["--no-cache", "--jobs", "2", "."]) == 1
    assert capsys.readouterr().out == single
    assert len(single.splitlines()) == 41
    lines = single.splitlines()[:-1]
    assert lines == sorted(lines)


def test_notebook_findings_name_their_cell(project, capsys):
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Training"]},
        {
            "cell_type": "code",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": MISSING_ZERO_GRAD.splitlines(keepends=True),
        },
    ]
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    write(project / "train.ipynb", json.dumps(notebook))
    assert main(["--quiet", "--no-cache", "."]) == 1
    out = capsys.readouterr().out
    assert out.startswith("train.ipynb:cell 2:5:9: LL101 ")
    assert main(["--format", "json", "--no-cache", "train.ipynb"]) == 1
    [item] = json.loads(capsys.readouterr().out)
    assert item["details"] == {"cell": 2} and item["line"] == 5


def test_config_errors_exit_2(project, capsys):
    write(project / "pyproject.toml", "[tool.looplint]\nselekt = ['LL1']\n")
    write(project / "a.py", CORRECT_LOOP)
    assert main(["a.py"]) == 2
    assert "unknown key 'selekt'" in capsys.readouterr().err
    assert main(["--config", "missing.toml", "a.py"]) == 2
    assert "missing.toml: configuration file not found" in capsys.readouterr().err


def test_explicit_config_file_is_used(project, capsys):
    write(project / "a.py", MISSING_ZERO_GRAD)
    write(project / "ci" / "strict.toml", "[tool.looplint]\nignore = ['LL101']\n")
    assert main(["a.py"]) == 1
    capsys.readouterr()
    assert main(["--config", os.path.join("ci", "strict.toml"), "a.py"]) == 0


def test_fix_on_stdin_reports_what_remains_on_stderr(project, capsys, monkeypatch):
    import io

    source = MISSING_ZERO_GRAD + BROKEN
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(source.encode())))
    assert main(["--fix", "-"]) == 1
    captured = capsys.readouterr()
    assert captured.out == source  # nothing is fixed in a file that does not parse
    assert "<stdin>:6:5: LL000 syntax error" in captured.err


def test_fix_reports_an_unreadable_path_once(project, capsys):
    write(project / "train.py", MISSING_ZERO_GRAD)
    assert main(["--fix", "train.py", "missing.py"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("missing.py: No such file or directory") == 1
    assert "optimizer.zero_grad()" in (project / "train.py").read_text()


# --- what a new user meets first -----------------------------------------------------------------

NOTHING_LINTED = "looplint: warning: nothing was linted: no Python files or notebooks in the given paths\n"


@pytest.mark.parametrize(
    ("args", "status", "error"),
    [
        (["missing.py"], 2, "looplint: error: missing.py: No such file or directory\n"),
        (["empty"], 0, ""),
        ([], 0, ""),  # a bare `looplint` in a directory without Python files
        (["--format", "json", "empty"], 0, ""),
    ],
)
def test_nothing_linted_is_a_warning_not_a_clean_result(tmp_path, args, status, error):
    (tmp_path / "empty").mkdir()
    write(tmp_path / "README.md", "# no Python here\n")
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == status
    assert proc.stderr == error + NOTHING_LINTED
    assert proc.stdout == ("[]\n" if "json" in args else "")


UNSAFE_ONLY = Path(__file__).resolve().parent.parent / "fixtures" / "static" / "ll401_scheduler_first.py"


def test_summary_counts_the_fixes_that_need_unsafe_fixes(project, capsys):
    write(project / "unsafe.py", UNSAFE_ONLY.read_text())
    assert main(["--no-cache", "unsafe.py"]) == 1
    assert capsys.readouterr().out.endswith("Found 1 problem in 1 file (1 fixable with --unsafe-fixes).\n")
    write(project / "safe.py", MISSING_ZERO_GRAD)
    assert main(["--no-cache", "."]) == 1
    assert capsys.readouterr().out.endswith(
        "Found 2 problems in 2 files (1 fixable with --fix, 1 more fixable with --unsafe-fixes).\n"
    )
    assert main(["--no-cache", "--fix", "."]) == 1
    captured = capsys.readouterr()
    assert captured.err == "Fixed 1 problem in 1 file.\n"
    assert captured.out.endswith("Found 1 problem in 2 files (1 fixable with --unsafe-fixes).\n")


def test_fix_and_diff_on_a_clean_file_say_nothing_odd(project, capsys):
    write(project / "clean.py", CORRECT_LOOP)
    assert main(["--fix", "clean.py"]) == 0
    assert capsys.readouterr() == ("No problems found in 1 file.\n", "")
    assert main(["--diff", "clean.py"]) == 0
    assert capsys.readouterr() == ("", "Nothing to fix.\n")
    assert main(["--diff", "--quiet", "clean.py"]) == 0
    assert capsys.readouterr() == ("", "")


def test_diff_comes_before_its_count_in_a_terminal_that_shows_both_streams(tmp_path):
    write(tmp_path / "a.py", MISSING_ZERO_GRAD)
    write(tmp_path / "b.py", MISSING_ZERO_GRAD)
    proc = subprocess.run(
        [sys.executable, "-m", "looplint", "--diff", "."],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one pipe for both, as a terminal shows them
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout.count("+        optimizer.zero_grad()\n") == 2
    assert proc.stdout.endswith("     optimizer.step()\nWould fix 2 problems in 2 files.\n")


def test_no_option_is_taken_for_an_abbreviation(project, capsys):
    write(project / "a.py", MISSING_ZERO_GRAD)
    assert main(["--sel", "LL2", "a.py"]) == 2
    assert "unrecognized arguments: --sel" in capsys.readouterr().err


def test_notebook_fix_count_json_and_fix_agree(project, capsys):
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Training"),
        nbformat.v4.new_code_cell(
            "import torch\n"
            "from torch.utils.tensorboard import SummaryWriter\n"
            "model = torch.nn.Linear(2, 1)\n"
            "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
            "writer = SummaryWriter()"
        ),
        # nbformat stores no newline after a cell's last line: the close moves into that gap.
        nbformat.v4.new_code_cell(
            "for epoch in range(3):\n"
            "    total = 0.0\n"
            "    for x in [torch.randn(4, 2)]:\n"
            "        loss = model(x).pow(2).mean()\n"
            "        loss.backward()\n"
            "        optimizer.step()\n"
            "        total += loss\n"
            "    writer.add_scalar('loss', total / 4, epoch)\n"
            "    writer.close()"
        ),
    ]
    path = project / "train.ipynb"
    nbformat.write(notebook, str(path))
    assert main(["--no-cache", "train.ipynb"]) == 1
    assert capsys.readouterr().out.endswith("Found 3 problems in 1 file (3 fixable with --fix).\n")
    assert main(["--no-cache", "--format", "json", "train.ipynb"]) == 1
    findings = json.loads(capsys.readouterr().out)
    assert sorted(f["code"] for f in findings) == ["LL101", "LL203", "LL301"]
    assert all(f["fix"] is not None and f["details"] == {"cell": 3} for f in findings)

    # The JSON fixes, applied to the cell's source, give what --fix writes.
    source = nbformat.read(str(path), as_version=4).cells[2].source
    edits = sorted((e for f in findings for e in f["fix"]["edits"]), key=lambda e: e["start"], reverse=True)
    for edit in edits:
        source = source[: edit["start"]] + edit["text"] + source[edit["end"] :]
    assert main(["--no-cache", "--fix", "train.ipynb"]) == 0
    assert capsys.readouterr().err == "Fixed 3 problems in 1 file.\n"
    assert nbformat.read(str(path), as_version=4).cells[2].source == source
    assert source.endswith("    writer.add_scalar('loss', total / 4, epoch)\nwriter.close()")
