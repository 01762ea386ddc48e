"""No input crashes looplint: each bad file gets one clear line and the other files still run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from looplint.adapters.cli import main
from looplint.engine import lint_bytes

LOOP = textwrap.dedent(
    """\
    def train(model, loader, optimizer, criterion):
        for inputs, targets in loader:
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
    """
)


def codes_at(data: bytes, path: str = "bad.py") -> list[tuple[int, int, str]]:
    return [(f.line, f.column, f.code) for f in lint_bytes(data, path)]


def only_finding(data: bytes, path: str = "bad.py"):
    [finding] = lint_bytes(data, path)
    return finding


def test_syntax_error_is_ll000_at_its_line():
    finding = only_finding(b"import torch\n\nfor x in y\n    pass\n")
    assert (finding.line, finding.code) == (3, "LL000")
    assert finding.message == "syntax error: expected ':'"


def test_syntax_error_in_a_file_with_training_code_is_ll000_too():
    finding = only_finding(LOOP.encode() + b"writer.add_scalar(tag='x', value,\n")
    assert (finding.line, finding.code) == (6, "LL000")


def test_python2_code_is_ll000_with_the_interpreter_hint():
    finding = only_finding(b'print "hello"\n')
    assert finding.code == "LL000"
    assert "Missing parentheses in call to 'print'" in finding.message


def test_undecodable_bytes_name_the_byte_and_the_line():
    finding = only_finding(b"x = 1\ny = '\xff\xfe'\n")
    assert (finding.line, finding.code) == (2, "LL000")
    assert finding.message.startswith("cannot decode byte 0xff as utf-8")


def test_a_coding_cookie_is_honored():
    assert codes_at("# -*- coding: latin-1 -*-\nname = 'é'\n".encode("latin-1")) == []
    finding = only_finding(b"# coding: no-such-codec\nx = 1\n")
    assert finding.code == "LL000" and "unknown encoding" in finding.message


def test_bom_does_not_shift_columns():
    assert codes_at(b"\xef\xbb\xbf" + LOOP.encode()) == [(5, 9, "LL101")]


@pytest.mark.parametrize(
    "newline_style",
    [
        lambda text: text.replace("\n", "\r\n"),
        lambda text: "".join(line + ("\r\n" if i % 2 else "\n") for i, line in enumerate(text.splitlines())),
        lambda text: text.replace("\n", "\r"),
    ],
    ids=["crlf", "mixed", "cr"],
)
def test_other_newlines_keep_line_numbers(newline_style):
    assert codes_at(newline_style(LOOP).encode()) == [(5, 9, "LL101")]


def test_tab_indentation():
    tabbed = LOOP.replace("        ", "\t\t").replace("    ", "\t")
    assert [code for _, _, code in codes_at(tabbed.encode())] == ["LL101"]
    finding = only_finding(b"if x:\n\tpass\n        pass\n")
    assert finding.code == "LL000" and "tabs and spaces" in finding.message


@pytest.mark.parametrize("data", [b"", b"\n\n", b"   ", b"# just a comment", b"\xef\xbb\xbf"])
def test_empty_and_blank_files_are_clean(data):
    assert codes_at(data) == []


def test_binary_file_named_py():
    finding = only_finding(bytes(range(256)) * 4)
    assert finding.code == "LL000"
    assert finding.message == "file contains a null byte; is it a binary file?"


def test_five_megabyte_file():
    # A generated table: mostly one big literal, as such files usually are.
    rows = "".join(f"    'row {index}: {'x' * 60}',\n" for index in range(70_000))
    data = f"TABLE = [\n{rows}]\n".encode()
    assert len(data) > 5_000_000
    assert codes_at(data) == []
    # With a syntax error at the very end, still one precise line.
    assert codes_at(data + b"value = (\n") == [(70_003, 9, "LL000")]


@pytest.mark.parametrize(
    "source",
    [
        "x = " + "-" * 100_000 + "1\n",
        "x = " + "(" * 5_000 + ")" * 5_000 + "\n",
        "loss = " + "[" * 50_000 + "]" * 50_000 + "\n",
        "loss = " + "not " * 20_000 + "x\n",
        "loss = a" + ".b" * 1_000 + "\nloss.backward()\n",
    ],
    ids=["unary", "parens", "lists-with-marker", "not-chain-with-marker", "attributes"],
)
def test_deep_nesting_is_a_clear_ll000_not_a_crash(source):
    finding = only_finding(source.encode())
    assert finding.code == "LL000"
    assert "nested" in finding.message


def test_notebook_with_invalid_json():
    finding = only_finding(b'{"cells": [', "broken.ipynb")
    assert (finding.line, finding.code) == (1, "LL000")
    assert finding.message.startswith("invalid notebook:")
    assert only_finding(b"\xff\xfe{}", "binary.ipynb").message.startswith("invalid notebook:")


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    return tmp_path


NOTHING_LINTED = "looplint: warning: nothing was linted: no Python files or notebooks in the given paths\n"


def test_missing_path(tree, capsys):
    assert main(["--no-cache", "missing.py"]) == 2
    # Nothing was linted: no summary line that could read like a clean result.
    captured = capsys.readouterr()
    assert captured.err == "looplint: error: missing.py: No such file or directory\n" + NOTHING_LINTED
    assert captured.out == ""


def test_permission_denied_file_is_an_error_and_the_rest_is_linted(tree, capsys):
    secret = tree / "secret.py"
    secret.write_text("x = 1\n")
    secret.chmod(0)
    try:
        if os.access(secret, os.R_OK):
            pytest.skip("running with privileges that read any file")
        (tree / "broken.py").write_text("x = (\n")
        assert main(["--no-cache", "."]) == 2
        captured = capsys.readouterr()
        assert captured.err == "looplint: error: secret.py: Permission denied\n"
        assert captured.out.startswith("broken.py:1:5: LL000")
    finally:
        secret.chmod(0o644)


def test_unreadable_directory_is_an_error(tree, capsys):
    locked = tree / "locked"
    locked.mkdir()
    (locked / "a.py").write_text("x = (\n")
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running with privileges that read any directory")
        assert main(["--no-cache", "."]) == 2
        assert capsys.readouterr().err == "looplint: error: locked: Permission denied\n"
    finally:
        locked.chmod(0o755)


def test_symlink_loops(tree, capsys):
    os.symlink("b.py", tree / "a.py")
    os.symlink("a.py", tree / "b.py")
    (tree / "pkg").mkdir()
    os.symlink("..", tree / "pkg" / "up")  # a directory loop is not followed
    (tree / "pkg" / "ok.py").write_text("x = (\n")
    assert main(["--no-cache", "a.py"]) == 2
    assert capsys.readouterr().err == "looplint: error: a.py: symbolic link loop\n" + NOTHING_LINTED
    assert main(["--no-cache", "."]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "looplint: error: a.py: symbolic link loop",
        "looplint: error: b.py: symbolic link loop",
    ]
    assert captured.out.startswith("pkg/ok.py:1:5: LL000")


def test_directory_named_like_a_python_file_is_walked(tree, capsys):
    (tree / "x.py").mkdir()
    (tree / "x.py" / "inner.py").write_text("x = (\n")
    assert main(["--no-cache", "--quiet", "x.py"]) == 1
    assert capsys.readouterr().out.startswith("x.py/inner.py:1:5: LL000")
    assert main(["--no-cache", "--quiet", "."]) == 1
    assert capsys.readouterr().out.startswith("x.py/inner.py:1:5: LL000")


def test_all_bad_inputs_together_in_one_run(tree):
    """One real run over every kind of bad input: one line each, no traceback, exit 2."""
    files = {
        "syntax.py": b"def f(:\n",
        "undecodable.py": b"x = '\xff'\n",
        "bom.py": b"\xef\xbb\xbf" + LOOP.encode(),
        "crlf.py": LOOP.replace("\n", "\r\n").encode(),
        "tabs.py": b"if x:\n\tpass\n",
        "empty.py": b"",
        "binary.py": bytes(range(256)),
        "deep.py": b"x = " + b"-" * 100_000 + b"1\n",
        "python2.py": b"print 'hi'\n",
        "broken.ipynb": b"{not json",
    }
    for name, data in files.items():
        (tree / name).write_bytes(data)
    (tree / "dir.py").mkdir()
    os.symlink("loop2.py", tree / "loop1.py")
    os.symlink("loop1.py", tree / "loop2.py")
    proc = subprocess.run(
        [sys.executable, "-m", "looplint", "--format", "json", ".", "missing.py"],
        check=False,
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        "looplint: error: loop1.py: symbolic link loop",
        "looplint: error: loop2.py: symbolic link loop",
        "looplint: error: missing.py: No such file or directory",
    ]
    found = {(item["path"], item["code"]) for item in json.loads(proc.stdout)}
    assert found == {
        ("binary.py", "LL000"),
        ("bom.py", "LL101"),
        ("broken.ipynb", "LL000"),
        ("crlf.py", "LL101"),
        ("deep.py", "LL000"),
        ("python2.py", "LL000"),
        ("syntax.py", "LL000"),
        ("undecodable.py", "LL000"),
    }
