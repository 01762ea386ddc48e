"""Notebooks: code cells joined into one source, IPython lines blanked, fixes written back."""

from __future__ import annotations

import json

import libcst
import nbformat
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from looplint.engine import lint_bytes
from looplint.engine.fixer import fix_bytes
from looplint.engine.notebook import NotebookError, notebook_source
from looplint.findings import Edit, Finding, Fix


def write_notebook(*cells: tuple[str, str], **metadata) -> str:
    """An nbformat-valid notebook text; each cell is (kind, source)."""
    notebook = nbformat.v4.new_notebook(metadata=metadata)
    makers = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell}
    notebook.cells = [makers[kind](source) for kind, source in cells]
    for cell in notebook.cells:
        cell.pop("id", None)  # ids are random: keep the text reproducible
    notebook.nbformat_minor = 4
    text = nbformat.writes(notebook)
    nbformat.validate(nbformat.reads(text, as_version=4))
    return text


TRAINING = write_notebook(
    ("markdown", "# Training\nSome prose."),
    ("code", "import torch\nmodel = torch.nn.Linear(2, 1)"),
    ("markdown", "The loop:"),
    ("code", "for x in data:\n    loss = model(x).sum()\n    loss.backward()\n"),
    ("code", "print('done')"),
)


def test_code_cells_are_joined_and_lines_map_back_to_their_cell():
    notebook = notebook_source(TRAINING)
    assert notebook.source == (
        "import torch\n"
        "model = torch.nn.Linear(2, 1)\n"
        "for x in data:\n"
        "    loss = model(x).sum()\n"
        "    loss.backward()\n"
        "print('done')\n"
    )
    # Cells are numbered as in the notebook, markdown included.
    assert [notebook.locate(line) for line in range(1, 7)] == [
        (2, 1), (2, 2), (4, 1), (4, 2), (4, 3), (5, 1),
    ]  # fmt: skip


def test_a_line_past_the_end_maps_to_the_last_line():
    assert notebook_source(TRAINING).locate(99) == (5, 1)


def test_locate_finding_counts_lines_within_the_cell():
    notebook = notebook_source(TRAINING)
    finding = Finding("t.ipynb", 5, 5, "LL101", "m", end_line=5, end_column=20)
    located = notebook.locate_finding(finding)
    assert (located.line, located.column, located.end_line) == (3, 5, 3)
    assert located.details == {"cell": 4}


IPYTHON_CELL = (
    "%matplotlib inline\n"
    "!pip install tqdm\n"
    "files = !ls data\n"
    "?torch.nn.Linear\n"
    "torch.optim.SGD??\n"
    "for step in range(3):\n"
    "    %time train_one(step)\n"
    "    ratio = (step\n"
    "             % 2)\n"
    "    same = (step\n"
    "            != 2)\n"
    "x = 1"
)


def test_ipython_lines_are_blanked_one_for_one():
    notebook = notebook_source(write_notebook(("code", IPYTHON_CELL)))
    libcst.parse_module(notebook.source)  # valid Python
    lines = notebook.source.splitlines()
    original = IPYTHON_CELL.splitlines()
    assert len(lines) == len(original)
    blanked = [i for i, (new, old) in enumerate(zip(lines, original)) if new != old]
    assert blanked == [0, 1, 2, 3, 4, 6]  # the magics, not the `%` and `!=` continuations
    assert lines[6] == "    pass"  # keeps the loop body a valid block


def test_a_magic_continued_over_several_lines_is_blanked_whole():
    cell = (
        "x = list(range(3))\n"
        "%timeit np.fromiter((a + b for a, b in zip(x, x)),\n"
        "                    dtype=float, count=len(x))\n"
        "print(x)"
    )
    notebook = notebook_source(write_notebook(("code", cell)))
    assert notebook.source == "x = list(range(3))\n\n\nprint(x)\n"
    assert lint_bytes(write_notebook(("code", cell)).encode(), "magics.ipynb") == []


def test_a_cell_magic_skips_the_whole_cell():
    text = write_notebook(("code", "%%time\nfor x in data:\n    loss.backward()\n"), ("code", "y = 2\n"))
    notebook = notebook_source(text)
    assert notebook.source == "\n\n\ny = 2\n"  # the lines stay, empty
    assert notebook.locate(4) == (2, 1)


def test_strings_and_comments_do_not_look_like_magics():
    cell = 'doc = """\n%not a magic\n"""\n# !not a shell\nvalue = "%d" % 3\n'
    notebook = notebook_source(write_notebook(("code", cell)))
    assert notebook.source == cell


def test_non_python_notebooks_have_no_code_to_lint():
    text = write_notebook(
        ("code", "library(ggplot2)"),
        kernelspec={"name": "ir", "display_name": "R", "language": "R"},
    )
    assert notebook_source(text).source == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid notebook JSON"),
        ("[1, 2]", "not a Jupyter notebook"),
        ('{"worksheets": []}', "not a Jupyter notebook"),
        ('{"cells": [{"cell_type": "code", "source": 3}]}', "cell 1"),
    ],
)
def test_invalid_notebooks_raise_a_clear_error(text, message):
    with pytest.raises(NotebookError, match=message):
        notebook_source(text)


def test_rebuild_without_changes_gives_back_the_same_text():
    notebook = notebook_source(TRAINING)
    assert notebook.rebuild(notebook.source) == TRAINING


def changed_spans(before: str, after: str) -> tuple[str, str]:
    """The differing middle of two texts (common prefix and suffix removed)."""
    start = 0
    while start < min(len(before), len(after)) and before[start] == after[start]:
        start += 1
    end = 0
    while end < min(len(before), len(after)) - start and before[-1 - end] == after[-1 - end]:
        end += 1
    return before[start : len(before) - end], after[start : len(after) - end]


def test_rebuild_rewrites_only_the_changed_cell():
    notebook = notebook_source(TRAINING)
    fixed = notebook.source.replace(
        "    loss.backward()\n", "    optimizer.zero_grad()\n    loss.backward()\n"
    )
    rebuilt = notebook.rebuild(fixed)
    # One item more in cell 4's "source" list, laid out as nbformat does; nothing else moves.
    assert rebuilt == TRAINING.replace(
        '    "    loss.backward()\\n"',
        '    "    optimizer.zero_grad()\\n",\n    "    loss.backward()\\n"',
    )
    nbformat.validate(nbformat.reads(rebuilt, as_version=4))
    cells = json.loads(rebuilt)["cells"]
    assert "".join(cells[3]["source"]) == (
        "for x in data:\n    loss = model(x).sum()\n    optimizer.zero_grad()\n    loss.backward()\n"
    )
    # nbformat would write the same bytes for the changed notebook.
    assert rebuilt == nbformat.writes(nbformat.reads(rebuilt, as_version=4))


def test_lines_added_at_the_end_of_a_cell_stay_in_that_cell():
    notebook = notebook_source(TRAINING)
    fixed = notebook.source.replace("model = torch.nn.Linear(2, 1)\n", "model = m\nmodel.train()\n")
    cells = json.loads(notebook.rebuild(fixed))["cells"]
    assert cells[1]["source"] == ["import torch\n", "model = m\n", "model.train()"]
    assert cells[3]["source"][0] == "for x in data:\n"


def test_ipython_lines_are_restored_around_a_fix():
    text = write_notebook(("code", "%load_ext autoreload\nfor x in d:\n    loss.backward()\n"))
    notebook = notebook_source(text)
    fixed = notebook.source.replace("    loss", "    opt.zero_grad()\n    loss")
    source = json.loads(notebook.rebuild(fixed))["cells"][0]["source"]
    assert source[0] == "%load_ext autoreload\n"
    assert source[2] == "    opt.zero_grad()\n"


def test_a_fix_that_touches_an_ipython_line_cannot_be_written_back():
    notebook = notebook_source(write_notebook(("code", "%time f()\nx = 1\n")))
    with pytest.raises(NotebookError, match="IPython line 1 of cell 1"):
        notebook.rebuild("f()\nx = 1\n")


def test_a_fix_that_rewrites_two_cells_at_once_cannot_be_written_back():
    notebook = notebook_source(write_notebook(("code", "a = 1\n"), ("code", "b = 2\n")))
    with pytest.raises(NotebookError, match="more than one cell"):
        notebook.rebuild("ab = 12\n")


def test_compact_and_crlf_notebooks_keep_their_layout():
    document = json.loads(TRAINING)
    compact = json.dumps(document)
    notebook = notebook_source(compact)
    rebuilt = notebook.rebuild(notebook.source.replace("print('done')", "print('ok')"))
    assert changed_spans(compact, rebuilt) == ("done", "ok")

    crlf = TRAINING.replace("\n", "\r\n")
    notebook = notebook_source(crlf)
    rebuilt = notebook.rebuild(notebook.source.replace("import torch\n", "import torch\nimport os\n"))
    assert changed_spans(crlf, rebuilt) == ("", 'import os\\n",\r\n    "')


def test_a_bom_and_ascii_escapes_are_kept():
    escaped = json.dumps(json.loads(write_notebook(("code", "name = 'café'"))), indent=1)
    assert "\\u00e9" in escaped
    notebook = notebook_source("\ufeff" + escaped)
    rebuilt = notebook.rebuild(notebook.source.replace("name", "title"))
    assert rebuilt == escaped.replace('"name = ', '"title = ')


def test_empty_cell_sources_are_written_in_the_notebook_style():
    text = write_notebook(("code", ""), ("code", "x = 1\n"))
    notebook = notebook_source(text)
    rebuilt = notebook.rebuild("y = 0\nx = 1\n")
    assert rebuilt == nbformat.writes(nbformat.reads(rebuilt, as_version=4))
    assert json.loads(rebuilt)["cells"][0]["source"] == ["y = 0"]


cell_lines = st.lists(st.sampled_from(["x = 1", "%time f()", "!ls", "", "    y = 2", "# c"]))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["code", "markdown"]), cell_lines), max_size=6))
def test_every_line_of_the_joined_source_belongs_to_its_cell(cells):
    text = write_notebook(*((kind, "\n".join(body)) for kind, body in cells))
    notebook = notebook_source(text)
    joined = notebook.source.splitlines()
    for cell in notebook.cells:
        kind, body = cells[cell.number - 1]
        body = "\n".join(body).splitlines()
        assert kind == "code"
        own = joined[cell.first_line - 1 : cell.first_line - 1 + cell.line_count]
        assert len(own) == len(body)
        assert all(new in (old, "", "    pass") for new, old in zip(own, body))
        for index in range(cell.line_count):
            assert notebook.locate(cell.first_line + index) == (cell.number, index + 1)
    assert notebook.rebuild(notebook.source) == text


def test_locate_finding_maps_fix_edits_into_the_cell():
    text = write_notebook(("code", "%time x = 1\nfor b in d:\n    loss.backward()\n"))
    notebook = notebook_source(text)
    at = notebook.source.index("    loss")
    fix = Fix("insert", (Edit(at, at, "    opt.zero_grad()\n"),))
    located = notebook.locate_finding(Finding("t.ipynb", 3, 5, "LL101", "m", fix=fix))
    cell_text = "%time x = 1\nfor b in d:\n    loss.backward()\n"
    [edit] = located.fix.edits
    assert cell_text[: edit.start] + edit.text + cell_text[edit.end :] == (
        "%time x = 1\nfor b in d:\n    opt.zero_grad()\n    loss.backward()\n"
    )
    # An edit on the blanked magic line cannot be expressed in the cell: the fix is dropped.
    on_magic = Fix("touch", (Edit(0, 1, "y"),))
    assert notebook.locate_finding(Finding("t.ipynb", 1, 1, "LL101", "m", fix=on_magic)).fix is None


def test_lines_inserted_before_everything_go_to_the_first_code_cell():
    notebook = notebook_source(write_notebook(("markdown", "# T"), ("code", "x = 1\n")))
    assert json.loads(notebook.rebuild("import os\nx = 1\n"))["cells"][1]["source"] == [
        "import os\n",
        "x = 1\n",
    ]
    prose_only = notebook_source(write_notebook(("markdown", "# T")))
    with pytest.raises(NotebookError, match="no code cell"):
        prose_only.rebuild("x = 1\n")


def test_a_source_stored_as_one_string_stays_one_string():
    document = json.loads(write_notebook(("code", "x = 1\ny = 2\n")))
    document["cells"][0]["source"] = "x = 1\ny = 2\n"
    text = json.dumps(document, indent=1)
    notebook = notebook_source(text)
    rebuilt = notebook.rebuild("x = 1\nz = 3\n")
    assert rebuilt == text.replace('"x = 1\\ny = 2\\n"', '"x = 1\\nz = 3\\n"')


def test_a_cell_whose_lines_are_all_removed_becomes_empty():
    text = write_notebook(("code", "x = 1\n"), ("code", "y = 2\n"))
    rebuilt = notebook_source(text).rebuild("y = 2\n")
    assert json.loads(rebuilt)["cells"][0]["source"] == []
    assert rebuilt == nbformat.writes(nbformat.reads(rebuilt, as_version=4))


def test_continued_lines_are_never_magics():
    cell = "total = first \\\n    % second\nmask = (a\n    !=b)\n"
    assert notebook_source(write_notebook(("code", cell))).source == cell


MIXED = write_notebook(
    ("code", "import torch\nfrom torch import nn"),
    ("code", " print('the first line is indented')\n x = 1"),
    (
        "code",
        (
            "model = nn.Linear(2, 1)\n"
            "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
            "for x, y in data:\n"
            "    loss = nn.functional.mse_loss(model(x), y)\n"
            "    loss.backward()\n"
            "    optimizer.step()"
        ),
    ),
    ("code", "print 'python 2'"),
    ("code", "result = await fetch()"),
)


def test_a_cell_that_does_not_parse_does_not_hide_the_others():
    # The kernel runs each cell alone: only the Python 2 cell fails there. IPython strips a first
    # line's indentation and runs a top-level await, so those cells are no syntax errors.
    findings = lint_bytes(MIXED.encode(), "mixed.ipynb")
    assert [(f.code, f.details["cell"], f.line) for f in findings] == [("LL101", 3, 6), ("LL000", 4, 1)]
    assert "Missing parentheses" in findings[1].message


def test_fixes_apply_beside_a_cell_that_does_not_parse_and_leave_it_as_it_was():
    outcome = fix_bytes(MIXED.encode(), "mixed.ipynb")
    before = json.loads(MIXED)["cells"]
    after = json.loads(outcome.new_data)["cells"]
    assert [f.code for f in outcome.applied] == ["LL101"]
    assert [f.code for f in outcome.remaining] == ["LL000"]
    changed = [index for index, (old, new) in enumerate(zip(before, after)) if old != new]
    assert changed == [2]
    assert "    optimizer.zero_grad()\n" in "".join(after[2]["source"])
