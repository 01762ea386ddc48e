"""`%load_ext looplint`: real notebooks executed by nbclient on an ipykernel kernel, and a real
in-process IPython shell for what a terminal shows."""

from __future__ import annotations

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

SETUP = """\
import torch
torch.manual_seed(0)
model = torch.nn.Linear(2, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loader = [(torch.randn(4, 2), torch.randn(4, 1)) for _ in range(3)]
"""
BUGGY = """\
for x, y in loader:
    loss = (model(x) - y).pow(2).mean()
    loss.backward()
    optimizer.step()
"""
CORRECT = """\
for x, y in loader:
    optimizer.zero_grad()
    loss = (model(x) - y).pow(2).mean()
    loss.backward()
    optimizer.step()
"""
STEP_TWICE = """\
def step_twice():
    for x, y in loader:
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
"""
EPOCH_LOOP = """\
for epoch in range(2):
    for x, y in loader:
        optimizer.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
    writer.add_scalar('epoch_loss', running_loss, epoch)
"""


def run_notebook(tmp_path, cells: list[str]):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    nbformat.validate(notebook)
    return notebook.cells


def looplint_outputs(cell) -> list[dict]:
    return [
        output
        for output in cell.outputs
        if output.output_type == "display_data" and "looplint" in output.data.get("text/plain", "")
    ]


def errors(cell) -> list[str]:
    return [output.ename for output in cell.outputs if output.output_type == "error"]


@pytest.mark.slow
def test_cells_are_checked_before_they_run(tmp_path):
    cells = run_notebook(
        tmp_path,
        [
            "%load_ext looplint",
            SETUP,
            BUGGY + "print('the loop ran')",
            CORRECT,
            "%time total = sum(range(10))\n!echo shell\nresult = model(\n",  # magics, then half-written
            "%%time\n" + BUGGY,
            "for x in loader:\n    x.",
            "def later(",
            "%looplint strict",
            BUGGY + "print('strict ran')",
            "%looplint warn",
            "print('after')",
        ],
    )
    load, setup, buggy, correct, magics, cell_magic, half, half2, _strict, rejected, warn, after = cells
    (shown,) = looplint_outputs(buggy)
    text = shown.data["text/plain"]
    assert text.startswith("looplint: 1 problem in this cell\n  line 4:5: LL101 `optimizer` steps inside")
    assert "fix: Insert `optimizer.zero_grad()` before the backward pass" in text
    html = shown.data["text/html"]
    assert "LL101" in html and "<code>optimizer.zero_grad()</code>" in html
    assert any("the loop ran" in output.get("text", "") for output in buggy.outputs)  # it still ran

    for quiet in (load, setup, correct, magics, cell_magic, half, half2, warn, after):
        assert looplint_outputs(quiet) == []
    assert errors(magics) == ["SyntaxError"]  # Python's own error, nothing from looplint
    assert errors(half) == ["SyntaxError"] and errors(half2) == ["SyntaxError"]
    assert errors(correct) == [] and errors(cell_magic) == []

    assert len(looplint_outputs(rejected)) == 1
    assert errors(rejected) == ["LooplintStrict"]
    assert not any("strict ran" in output.get("text", "") for output in rejected.outputs)
    assert any("after" in output.get("text", "") for output in after.outputs)


@pytest.mark.slow
def test_watch_shows_the_runtime_report_under_training_cells(tmp_path):
    cells = run_notebook(
        tmp_path,
        [
            "%load_ext looplint",
            SETUP,
            "%looplint watch",
            CORRECT,
            "x = 1 + 1",
            STEP_TWICE,
            "step_twice()",
        ],
    )
    watched, plain, define, call = cells[3], cells[4], cells[5], cells[6]
    (report,) = looplint_outputs(watched)
    assert report.data["text/plain"].splitlines()[:2] == [
        "looplint watch: no problems",
        "  3 optimizer steps, 3 backward passes",
    ]
    assert looplint_outputs(plain) == [] and looplint_outputs(define) == []
    (report,) = looplint_outputs(call)
    assert "3 optimizer steps, 6 backward passes" in report.data["text/plain"]
    assert "text/html" in report.data


@pytest.mark.slow
def test_context_of_earlier_cells(tmp_path):
    cells = run_notebook(
        tmp_path,
        [
            "%load_ext looplint",
            SETUP
            + "from torch.utils.tensorboard import SummaryWriter\nwriter = SummaryWriter(r'"
            + str(tmp_path / "runs")
            + "')",
            "running_loss = 0.0",
            EPOCH_LOOP,
        ],
    )
    (shown,) = looplint_outputs(cells[3])
    text = shown.data["text/plain"]
    # The reset sits in the earlier cell; the loop in this cell is what makes it wrong.
    assert "In [3], line 1:1: LL201 `running_loss` is reset outside the `for epoch` loop" in text
    assert "\n  line 8:37: LL202 `running_loss` is a sum of losses" in text, text


def test_terminal_ipython_prints_text(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_cell("%load_ext looplint")
        shell.run_cell(SETUP)
        capsys.readouterr()
        shell.run_cell(BUGGY)
        out = capsys.readouterr().out
        assert out.startswith("looplint: 1 problem in this cell\n  line 4:5: LL101")
        shell.run_cell("%looplint off")
        capsys.readouterr()
        shell.run_cell(BUGGY)
        assert capsys.readouterr().out == ""
    finally:
        shell.run_cell("%unload_ext looplint")
        InteractiveShell.clear_instance()
