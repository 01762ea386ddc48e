"""lint_text: an in-memory buffer linted exactly as the file on disk would be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from looplint.engine import lint_file, lint_text

ROOT = Path(__file__).resolve().parent.parent
MISSING = (
    "import torch\n"
    "def train(model, loader, optimizer):\n"
    "    for x, y in loader:\n"
    "        loss = model(x).sum()\n"
    "        loss.backward()\n"
    "        optimizer.step()\n"
)


@pytest.mark.parametrize(
    "name",
    [
        "static/ll101_missing.py",
        "static/ll301_close_in_loop.py",
        "seed/notes_verbatim_block.py",
        "notebooks/train.ipynb",
    ],
)
def test_same_findings_as_the_file_on_disk(name):
    path = ROOT / "fixtures" / name
    findings = lint_text(path.read_text(encoding="utf-8"), path)
    assert findings == lint_file(path)
    assert findings, "each of these fixtures has findings"


def test_unsaved_text_not_the_file_is_linted(tmp_path):
    path = tmp_path / "train.py"
    path.write_text("print('saved version')\n")
    assert [f.code for f in lint_text(MISSING, path)] == ["LL101"]


def test_a_syntax_error_is_placed_in_the_unsaved_text(tmp_path):
    # CPython re-reads an error's line from the file it is told the source came from; the column
    # must be the buffer's, not the saved file's.
    path = tmp_path / "train.py"
    path.write_text("ééééé = g(1)  # the saved version\n", encoding="utf-8")
    (finding,) = lint_text("x = f(:)\n", path)
    assert (finding.code, finding.line, finding.column) == ("LL000", 1, 7)


def test_a_syntax_error_in_a_notebook_cell_is_placed_in_the_cell(tmp_path):
    path = tmp_path / "analysis.ipynb"
    cell = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None}
    cells = [{**cell, "source": ["import pandas as pd\n"]}, {**cell, "source": ["df.loc[(:, 1), (:, 'HR')]"]}]
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(notebook, indent=1))
    (finding,) = lint_file(path)
    assert (finding.code, finding.details["cell"], finding.line, finding.column) == ("LL000", 2, 1, 9)


def test_noqa_and_the_configuration_of_the_project_apply(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.looplint]\nper-file-ignores = {"scripts/*" = ["LL101"]}\n'
    )
    (tmp_path / "scripts").mkdir()
    assert lint_text(MISSING, tmp_path / "scripts" / "train.py") == []
    assert [f.code for f in lint_text(MISSING, tmp_path / "train.py")] == ["LL101"]
    silenced = MISSING.replace("optimizer.step()", "optimizer.step()  # noqa: LL101")
    assert lint_text(silenced, tmp_path / "train.py") == []


def test_a_coding_cookie_is_honored(tmp_path):
    text = "# -*- coding: latin-1 -*-\n# caf\u00e9\n" + MISSING
    assert [f.code for f in lint_text(text, tmp_path / "train.py")] == ["LL101"]
    assert [f.code for f in lint_text("# -*- coding: ascii -*-\nx = 'caf\u00e9'\n", tmp_path / "a.py")] == [
        "LL000"
    ]
