"""Autofix end to end: real buggy training loops, fixed by the real rules, written back intact."""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from looplint.engine.fixer import fix_bytes

HEAD = """\
import torch
from torch.utils.tensorboard import SummaryWriter

model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
"""

# rule -> (buggy loop, the loop after --fix); HEAD comes before both.
CASES = {
    "LL101": (
        """\
for x, y in loader:
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
""",
        """\
for x, y in loader:
    loss = torch.nn.functional.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
""",
    ),
    "LL102": (
        """\
for x, y in loader:
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.zero_grad()
    optimizer.step()
""",
        """\
for x, y in loader:
    loss = torch.nn.functional.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
""",
    ),
    "LL203": (
        """\
total = 0.0
for x, y in loader:
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    total += loss
""",
        """\
total = 0.0
for x, y in loader:
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    total += loss.item()
""",
    ),
    "LL203-tensor": (
        """\
total = torch.zeros(())
for x, y in loader:
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    total += loss
""",
        """\
total = torch.zeros(())
for x, y in loader:
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    total += loss.detach()
""",
    ),
    "LL301": (
        """\
writer = SummaryWriter()
for epoch in range(3):
    for x, y in loader:
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        writer.add_scalar("loss", loss.item())
    writer.close()
""",
        """\
writer = SummaryWriter()
for epoch in range(3):
    for x, y in loader:
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        writer.add_scalar("loss", loss.item())
writer.close()
""",
    ),
    "LL401": (
        """\
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 10)
for x, y in loader:
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    scheduler.step()
    optimizer.step()
""",
        """\
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 10)
for x, y in loader:
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    scheduler.step()
""",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_fixable_rule_is_fixed_and_verified(case):
    buggy, expected = (HEAD + text for text in CASES[case])
    code = case.split("-")[0]
    outcome = fix_bytes(buggy.encode(), "train.py")
    assert outcome.new_data.decode() == expected
    assert [f.code for f in outcome.applied] == [code]
    assert outcome.remaining == []
    # Fixing again changes nothing.
    again = fix_bytes(outcome.new_data, "train.py")
    assert again.new_data == outcome.new_data
    assert again.applied == []


def test_all_fixes_of_one_file_are_applied_together():
    buggy = HEAD + CASES["LL101"][0] + CASES["LL203"][0] + CASES["LL401"][0]
    outcome = fix_bytes(buggy.encode(), "train.py")
    assert sorted(f.code for f in outcome.applied) == ["LL101", "LL203", "LL401"]
    assert outcome.remaining == []
    assert fix_bytes(outcome.new_data, "train.py").new_data == outcome.new_data


def test_disabled_codes_are_not_fixed():
    buggy = (HEAD + CASES["LL101"][0]).encode()
    outcome = fix_bytes(buggy, "train.py", is_enabled=lambda code: code != "LL101")
    assert outcome.new_data == buggy
    assert outcome.remaining == []  # disabled codes are not reported either


# Stepping the scheduler after the inner loop changes when it steps, not only its order.
UNSAFE_SCHEDULER = """\
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 10)
for epoch in range(3):
    scheduler.step()
    for x, y in loader:
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
"""
AFTER_UNSAFE_FIX = "        optimizer.step()\n    scheduler.step()\n"


def test_unsafe_fixes_need_the_unsafe_flag():
    buggy = (HEAD + UNSAFE_SCHEDULER).encode()
    safe_only = fix_bytes(buggy, "train.py")
    assert safe_only.new_data == buggy
    assert [f.code for f in safe_only.remaining] == ["LL401"]
    unsafe = fix_bytes(buggy, "train.py", unsafe=True)
    assert unsafe.new_data.decode().endswith(AFTER_UNSAFE_FIX)
    assert [f.code for f in unsafe.applied] == ["LL401"]


@pytest.mark.parametrize(
    ("name", "encode"),
    [
        ("crlf", lambda text: text.replace("\n", "\r\n").encode()),
        ("bom", lambda text: text.encode("utf-8-sig")),
        ("bom-crlf", lambda text: text.replace("\n", "\r\n").encode("utf-8-sig")),
        (
            "latin-1",
            lambda text: ("# -*- coding: latin-1 -*-\n# entraînement\n" + text).encode("latin-1"),
        ),
    ],
)
def test_encoding_bom_and_line_endings_are_kept(name, encode):
    buggy, fixed = (HEAD + text for text in CASES["LL101"])
    outcome = fix_bytes(encode(buggy), "train.py")
    assert outcome.new_data == encode(fixed)
    assert [f.code for f in outcome.applied] == ["LL101"]


def test_mixed_line_endings_are_left_as_they_are():
    buggy = HEAD + CASES["LL101"][0]
    data = buggy.replace("\n", "\r\n", 2).encode()  # two CRLF lines, the rest LF
    outcome = fix_bytes(data, "train.py")
    lines = outcome.new_data.splitlines(keepends=True)
    inserted = [i for i, line in enumerate(lines) if line.strip() == b"optimizer.zero_grad()"]
    assert len(inserted) == 1
    del lines[inserted[0]]
    assert b"".join(lines) == data  # every other byte as it was


def test_a_notebook_is_fixed_in_its_cell_and_stays_byte_identical_elsewhere():
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Training"),
        nbformat.v4.new_code_cell("%matplotlib inline\n" + HEAD),
        nbformat.v4.new_code_cell(CASES["LL101"][0] + CASES["LL203"][0]),
        nbformat.v4.new_code_cell("print('done')", execution_count=3),
    ]
    original = nbformat.writes(notebook)
    outcome = fix_bytes(original.encode(), "train.ipynb")
    assert sorted((f.code, f.details["cell"]) for f in outcome.applied) == [
        ("LL101", 3),
        ("LL203", 3),
    ]
    fixed = outcome.new_data.decode()
    nbformat.validate(nbformat.reads(fixed, as_version=4))
    before, after = json.loads(original), json.loads(fixed)
    assert "".join(after["cells"][2]["source"]) == CASES["LL101"][1] + CASES["LL203"][1]
    after["cells"][2]["source"] = before["cells"][2]["source"]
    assert after == before
    # The only changed lines of the file are inside cell 3's source.
    changed = [
        line
        for line in difflib.unified_diff(original.splitlines(), fixed.splitlines(), lineterm="")
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert changed == [
        '+    "    optimizer.zero_grad()\\n",',
        '-    "    total += loss\\n"',
        '+    "    total += loss.item()\\n"',
    ]
    assert fix_bytes(outcome.new_data, "train.ipynb").new_data == outcome.new_data


def test_remaining_notebook_findings_point_at_their_cell():
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(HEAD),
        nbformat.v4.new_code_cell(UNSAFE_SCHEDULER),
    ]
    outcome = fix_bytes(nbformat.writes(notebook).encode(), "train.ipynb")
    [finding] = outcome.remaining
    assert (finding.code, finding.details["cell"], finding.line) == ("LL401", 2, 3)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "looplint", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )


def test_cli_fix_writes_the_file_and_a_second_run_changes_nothing(tmp_path: Path):
    train = tmp_path / "train.py"
    buggy, fixed = (HEAD + text for text in CASES["LL102"])
    train.write_bytes(buggy.replace("\n", "\r\n").encode())
    first = run_cli("--fix", "train.py", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert train.read_bytes() == fixed.replace("\n", "\r\n").encode()
    second = run_cli("--fix", "train.py", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert train.read_bytes() == fixed.replace("\n", "\r\n").encode()


def test_cli_diff_shows_the_fix_without_writing(tmp_path: Path):
    train = tmp_path / "train.py"
    buggy, _ = (HEAD + text for text in CASES["LL401"])
    train.write_text(buggy)
    result = run_cli("--diff", "train.py", cwd=tmp_path)
    assert train.read_text() == buggy
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == (
        "--- a/train.py\n"
        "+++ b/train.py\n"
        "@@ -8,5 +8,5 @@\n"
        "     optimizer.zero_grad()\n"
        "     loss = torch.nn.functional.mse_loss(model(x), y)\n"
        "     loss.backward()\n"
        "+    optimizer.step()\n"
        "     scheduler.step()\n"
        "-    optimizer.step()\n"
    )
    assert result.stderr == "Would fix 1 problem in 1 file.\n"


def test_cli_fix_leaves_unfixable_findings_reported(tmp_path: Path):
    train = tmp_path / "train.py"
    train.write_text(HEAD + UNSAFE_SCHEDULER)
    result = run_cli("--fix", "train.py", cwd=tmp_path)
    assert result.returncode == 1
    assert "LL401" in result.stdout
    assert train.read_text() == HEAD + UNSAFE_SCHEDULER
    result = run_cli("--fix", "--unsafe-fixes", "train.py", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert train.read_text().endswith(AFTER_UNSAFE_FIX)


EXAMPLE_NOTEBOOK = Path(__file__).resolve().parents[1] / "fixtures" / "notebooks" / "train.ipynb"


def test_the_example_notebook_is_fixed_in_cell_4_only():
    original = EXAMPLE_NOTEBOOK.read_bytes()
    outcome = fix_bytes(original, "train.ipynb")
    assert [(f.code, f.details["cell"], f.line) for f in outcome.applied] == [
        ("LL101", 4, 7),
        ("LL203", 4, 8),
    ]
    assert outcome.remaining == []
    before, after = json.loads(original), json.loads(outcome.new_data)
    assert [b == a for b, a in zip(before["cells"], after["cells"])] == [
        True, True, True, False, True,
    ]  # fmt: skip


def test_noqa_comments_keep_their_line_unfixed():
    buggy = HEAD + CASES["LL101"][0].replace("optimizer.step()", "optimizer.step()  # noqa: LL101")
    outcome = fix_bytes(buggy.encode(), "train.py")
    assert outcome.new_data == buggy.encode()
    assert outcome.remaining == []


def test_a_notebook_keeps_its_bom_and_crlf_layout():
    original = EXAMPLE_NOTEBOOK.read_text(encoding="utf-8").replace("\n", "\r\n")
    data = b"\xef\xbb\xbf" + original.encode()
    outcome = fix_bytes(data, "train.ipynb")
    assert outcome.new_data.startswith(b"\xef\xbb\xbf")
    fixed = outcome.new_data[3:].decode()
    assert "\n" not in fixed.replace("\r\n", "")  # every newline of the file is still CRLF
    assert '"        optimizer.zero_grad()\\n",\r\n' in fixed
