"""Mutation tests: put each rule's bug into a correct fixture and check the rule notices.

Correct fixtures (fixtures/static/ok_*.py and the seed's correct loops) are silent; the same code
with the bug put back must not be.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from looplint.static import analyze_source

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CLEAR_LINE = re.compile(r"^(?P<indent>\s*)([\w.\[\]\"]+\.zero_grad\(.*\)|\w+\.grad = None)\s*$", re.MULTILINE)
ITEM_SUM = re.compile(r"^(?P<head>\s*\w+ \+= )(?P<loss>\w+)\.item\(\)(?P<tail>.*)$", re.MULTILINE)


def codes(source: str) -> list[str]:
    return [finding.code for finding in analyze_source(source, "mutant.py")]


def correct_fixtures(pattern: re.Pattern[str]) -> list[Path]:
    paths = sorted(FIXTURES.glob("static/ok_*.py"))
    return [p for p in paths if pattern.search(p.read_text())]


def test_mutated_fixtures_start_silent() -> None:
    for path in sorted(FIXTURES.glob("static/ok_*.py")):
        assert codes(path.read_text()) == [], path.name


@pytest.mark.parametrize(
    "path",
    [p for p in correct_fixtures(CLEAR_LINE) if "backward(" in p.read_text()],
    ids=lambda p: p.name,
)
def test_deleting_every_clear_brings_ll101(path: Path) -> None:
    mutant = CLEAR_LINE.sub(lambda m: f"{m.group('indent')}pass", path.read_text())
    assert "LL101" in codes(mutant)


# Sums under no_grad keep no graph: dropping `.item()` there is no bug.
@pytest.mark.parametrize(
    "path", [p for p in correct_fixtures(ITEM_SUM) if "no_grad" not in p.read_text()], ids=lambda p: p.name
)
def test_dropping_item_brings_ll203(path: Path) -> None:
    source = path.read_text()
    mutant = ITEM_SUM.sub(lambda m: f"{m.group('head')}{m.group('loss')}{m.group('tail')}", source)
    assert "LL203" in codes(mutant)


# (correct fixture, what the bug changes, the rule that must notice)
TARGETED = [
    # Move the reset out of the epoch loop.
    (
        "static/ok_divided_by_dataset_size.py",
        [("    running_loss = 0.0\n", "")],
        "running_loss = 0.0\n",
        "LL201",
    ),
    (
        "static/ok_amp_grad_scaler.py",
        [("    running_loss = 0.0\n", "")],
        "running_loss = 0.0\n",
        "LL201",
    ),
    (
        "static/ok_tutorial_print_every_2000.py",
        [("            running_loss = 0.0\n", "")],
        "",
        "LL201",
    ),
    # Drop the division.
    (
        "static/ok_divided_by_dataset_size.py",
        [(' / len(dataloaders["train"].dataset)', "")],
        "",
        "LL202",
    ),
    ("static/ok_amp_grad_scaler.py", [("running_loss / len(loader)", "running_loss")], "", "LL202"),
    (
        "static/ok_tutorial_print_every_2000.py",
        [("running_loss / 2000", "running_loss")],
        "",
        "LL202",
    ),
    (
        "static/ok_reset_at_end_of_epoch.py",
        [("epoch_loss / len(loader)", "epoch_loss")],
        "",
        "LL202",
    ),
    # Clear between backward and step.
    (
        "static/ok_zero_grad_at_end.py",
        [
            (
                "        optimizer.step()\n        optimizer.zero_grad()\n",
                "        optimizer.zero_grad()\n        optimizer.step()\n",
            )
        ],
        "",
        "LL102",
    ),
    # Put the close in the loop.
    (
        "seed/notes_test_loop.py",
        [
            (
                "    total_test_step = total_test_step + 1\n",
                "    total_test_step = total_test_step + 1\n    writer.close()\n",
            )
        ],
        "",
        "LL301",
    ),
    # Step the scheduler first.
    (
        "static/ok_scheduler_after_epoch.py",
        [
            ("    scheduler.step()\n", ""),
            ("for epoch in range(90):\n", "for epoch in range(90):\n    scheduler.step()\n"),
        ],
        "",
        "LL401",
    ),
    # Move the periodic check out of the loop that advances its counter.
    (
        "static/ok_step_periodic_inside.py",
        [
            (
                "        if global_step % 100 == 0:\n            writer",
                "    if global_step % 100 == 0:\n        writer",
            )
        ],
        "",
        "LL204",
    ),
    # Overlap two parameter groups.
    ("static/ok_per_layer_lr.py", [("model.base.parameters()", "model.parameters()")], "", "LL402"),
    # Forget the scheduler step.
    ("static/ok_scheduler_after_epoch.py", [("    scheduler.step()\n", "")], "", "LL403"),
    # Log the loss as an image.
    (
        "static/ok_with_summary_writer.py",
        [('w.add_scalar("loss"', 'w.add_image("loss"')],
        "",
        "LL302",
    ),
]


@pytest.mark.parametrize(
    ("relative", "replacements", "prefix", "code"),
    TARGETED,
    ids=lambda v: v if isinstance(v, str) and v.startswith("LL") else None,
)
def test_targeted_mutation_is_reported(
    relative: str, replacements: list[tuple[str, str]], prefix: str, code: str
) -> None:
    source = (FIXTURES / relative).read_text()
    assert code not in codes(source)
    for old, new in replacements:
        assert old in source, f"{relative} no longer holds {old!r}: update the mutation"
        source = source.replace(old, new, 1)
    assert code in codes(prefix + source)
