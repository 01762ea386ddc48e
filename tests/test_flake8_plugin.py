"""`flake8 --select LL`: a real flake8 run gives the findings of `looplint` on the same files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("flake8")

ROOT = Path(__file__).resolve().parent.parent
FLAKE8_LINE = re.compile(
    r"^(?P<path>.+?):(?P<line>\d+):(?P<column>\d+): (?P<code>LL\d+|E999) (?P<message>.*)$"
)


def flake8(*args: str, cwd: Path, stdin: str | None = None) -> list[tuple]:
    result = subprocess.run(
        [sys.executable, "-m", "flake8", "--isolated", *args],
        cwd=cwd,
        check=False,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=300,
    )
    assert result.returncode in (0, 1), result.stderr
    found = []
    for line in result.stdout.splitlines():
        match = FLAKE8_LINE.match(line)
        assert match, line
        found.append(
            (match["path"], int(match["line"]), int(match["column"]), match["code"], match["message"])
        )
    return sorted(found)


def looplint_json(*args: str, cwd: Path) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-m", "looplint", "--no-cache", "--format", "json", *args],
        cwd=cwd,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_same_findings_as_looplint_over_the_fixtures():
    folders = ["fixtures/static", "fixtures/seed", "fixtures/runtime"]
    expected = sorted(
        (f["path"], f["line"], f["column"], f["code"], f["message"])
        for f in looplint_json(*folders, cwd=ROOT)
        if f["code"] != "LL000"
    )
    assert len(expected) > 30
    assert flake8("--select", "LL", *folders, cwd=ROOT) == expected
    # A file that does not parse is flake8's E999 (flake8 runs no plugin on it).
    errors = flake8("--select", "LL,E999", "fixtures/seed", cwd=ROOT)
    assert [(path, code) for path, _, _, code, _ in errors if code == "E999"] == [
        ("fixtures/seed/notes_verbatim_block.py", "E999")
    ]


def test_configuration_noqa_and_stdin(tmp_path):
    shutil.copy(ROOT / "fixtures/static/ll101_missing.py", tmp_path / "train.py")
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "fixtures/static/ll101_missing.py", tmp_path / "scripts" / "train.py")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.looplint]\nper-file-ignores = {"scripts/*" = ["LL101"]}\n'
    )
    assert [(path, code) for path, *_, code, _ in flake8("--select", "LL", ".", cwd=tmp_path)] == [
        ("./train.py", "LL101")
    ]
    text = (tmp_path / "train.py").read_text()
    assert flake8("--select", "LL", "-", cwd=tmp_path, stdin=text)[0][3] == "LL101"
    silenced = text.replace("optimizer.step()", "optimizer.step()  # noqa: LL101")
    assert flake8("--select", "LL", "-", cwd=tmp_path, stdin=silenced) == []
