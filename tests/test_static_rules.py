"""Every fixture under fixtures/static, fixtures/seed and fixtures/projects yields exactly its
expected findings. A fixture under fixtures/projects/<name>/ is one file of a small project: its
imports resolve among the files of that project."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from looplint.catalog import RULES
from looplint.static import Project, analyze_source

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
EXPECTED: dict[str, list[str]] = tomllib.loads((FIXTURES / "expected.toml").read_text())
CASES = sorted(
    p.relative_to(FIXTURES).as_posix()
    for d, pattern in (("static", "*.py"), ("seed", "*.py"), ("projects", "**/*.py"))
    for p in (FIXTURES / d).glob(pattern)
)
STATIC_CODES = sorted(
    code for code, info in RULES.items() if info.origin in ("static", "both") and code != "LL000"
)


def analyze_fixture(relative: str) -> list:
    path = FIXTURES / relative
    parts = Path(relative).parts
    project = Project(FIXTURES / parts[0] / parts[1]) if parts[0] == "projects" else None
    return analyze_source(path.read_text(encoding="utf-8"), str(path), project)


def findings_of(relative: str) -> list[str]:
    return [f"{f.line}:{f.code}" for f in analyze_fixture(relative)]


@pytest.mark.parametrize("relative", CASES)
def test_fixture_matches_expectations(relative: str) -> None:
    assert relative in EXPECTED, f"add {relative} to fixtures/expected.toml"
    assert findings_of(relative) == EXPECTED[relative]


def test_every_expectation_has_its_fixture() -> None:
    assert sorted(EXPECTED) == CASES


@pytest.mark.parametrize("code", STATIC_CODES)
def test_every_rule_fires_somewhere_and_has_silent_neighbours(code: str) -> None:
    firing = [name for name, found in EXPECTED.items() if any(f.endswith(code) for f in found)]
    silent = [name for name, found in EXPECTED.items() if not found]
    assert firing, f"{code} has no fixture that fires"
    assert len(silent) >= len(firing)


def test_findings_point_at_the_right_column() -> None:
    source = "for x, y in loader:\n    loss = f(x, y)\n    loss.backward()\n    opt.step()\n"
    (finding,) = analyze_source(source, "t.py")
    assert (finding.code, finding.line, finding.column, finding.end_column) == ("LL101", 4, 5, 15)


def test_syntax_error_is_reported_with_python_wording() -> None:
    (finding,) = analyze_source("for x in y:\nprint(x)\n", "bad.py")
    assert finding.code == "LL000"
    assert finding.line == 2
    assert "indented block" in finding.message


def test_deeply_nested_expression_is_reported_not_raised() -> None:
    source = "x = " + "(" * 5000 + "1" + ")" * 5000 + "\nloss.backward()\n"
    (finding,) = analyze_source(source, "deep.py")
    assert finding.code == "LL000"


def test_helper_called_from_loop_is_reported_once() -> None:
    source = (
        "def step(model, optimizer, batch):\n"
        "    loss = model(batch)\n"
        "    loss.backward()\n"
        "    optimizer.step()\n"
        "\n"
        "def train(model, optimizer, loader):\n"
        "    for batch in loader:\n"
        "        step(model, optimizer, batch)\n"
        "    for batch in loader:\n"
        "        step(model, optimizer, batch)\n"
    )
    assert [f"{f.line}:{f.code}" for f in analyze_source(source)] == ["4:LL101"]


def test_unknown_helper_receiving_the_optimizer_may_clear_it() -> None:
    source = (
        "for batch in loader:\n"
        "    loss = model(batch)\n"
        "    loss.backward()\n"
        "    optimizer.step()\n"
        "    utils.reset_gradients(optimizer)\n"
    )
    assert analyze_source(source) == []


def apply(source: str, fix) -> str:
    for edit in sorted(fix.edits, key=lambda e: (e.start, e.end), reverse=True):
        source = source[: edit.start] + edit.text + source[edit.end :]
    return source


FIXABLE = [
    (relative, finding)
    for relative in CASES
    for finding in analyze_source((FIXTURES / relative).read_text(encoding="utf-8"), relative)
    if finding.fix is not None
]


@pytest.mark.parametrize(("relative", "finding"), FIXABLE, ids=[f"{r}:{f.line}:{f.code}" for r, f in FIXABLE])
def test_each_fix_removes_its_finding_and_adds_none(relative: str, finding) -> None:
    source = (FIXTURES / relative).read_text(encoding="utf-8")
    before = [f.code for f in analyze_source(source, relative)]
    fixed = apply(source, finding.fix)
    after = [f.code for f in analyze_source(fixed, relative)]
    assert "LL000" not in after
    assert after.count(finding.code) < before.count(finding.code)
    assert set(after) <= set(before)


def test_fixes_use_the_events_of_their_own_function() -> None:
    source = (
        "def first(model, optimizer, loss):\n"
        "    loss.backward()\n"
        "    optimizer.zero_grad()\n"
        "    optimizer.step()\n"
        "\n"
        "def second(writer, loader):\n"
        "    for epoch in range(3):\n"
        "        writer.add_scalar('x', 1.0, epoch)\n"
        "        writer.close()\n"
    )
    findings = analyze_source(source)
    assert [f.code for f in findings] == ["LL102", "LL301"]
    fixed = apply(apply(source, findings[1].fix), findings[0].fix)
    assert fixed == (
        "def first(model, optimizer, loss):\n"
        "    optimizer.zero_grad()\n"
        "    loss.backward()\n"
        "    optimizer.step()\n"
        "\n"
        "def second(writer, loader):\n"
        "    for epoch in range(3):\n"
        "        writer.add_scalar('x', 1.0, epoch)\n"
        "    writer.close()\n"
    )


# LL202 names the caller's sum, not the helper's parameter or a count printed beside it.
@pytest.mark.parametrize(
    ("relative", "named", "through"),
    [
        ("static/ll202_message_built_first.py", "loss_sum", "(in `msg`)"),
        ("static/ll202_scaled_terms_with_accumulation.py", "running_loss", "(as `epoch_loss`)"),
        ("static/ll202_varargs_logging_helper.py", "val_loss_l1", "(by `pprint()`)"),
        ("projects/logger_on_rank_zero/train.py", "total_loss", "(in `append_loss()` of callbacks.py)"),
    ],
)
def test_ll202_names_the_sum(relative: str, named: str, through: str) -> None:
    (finding,) = analyze_fixture(relative)
    assert finding.message.startswith(f"`{named}` is a sum of losses")
    assert through in finding.message
