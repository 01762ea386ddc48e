"""`# noqa` comments: parsing, prefixes, strings that only look like comments, end to end."""

from __future__ import annotations

import textwrap

import pytest

from looplint.engine import lint_bytes
from looplint.engine.suppress import filter_noqa, parse_noqa
from looplint.findings import Finding

LOOP = textwrap.dedent(
    """\
    def train(model, loader, optimizer, criterion):
        for inputs, targets in loader:
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step(){comment}
    """
)


@pytest.mark.parametrize(
    ("comment", "expected"),
    [
        ("# noqa", None),
        ("#noqa", None),
        ("# NOQA", None),
        ("# noqa: LL101", frozenset({"LL101"})),
        ("# noqa:LL101,LL2", frozenset({"LL101", "LL2"})),
        ("# noqa: ll101 LL202", frozenset({"LL101", "LL202"})),
        ("# noqa : LL101, E501  -- accumulation is intentional", frozenset({"LL101", "E501"})),
        ("# type: ignore  # noqa: LL3", frozenset({"LL3"})),
        ("# noqa: explain why", None),  # no code after the colon: a blanket directive
    ],
)
def test_directive_forms(comment, expected):
    assert parse_noqa(f"x = 1  {comment}\n") == {1: expected}


@pytest.mark.parametrize("comment", ["# noqanot", "# noqa-ish", "# see noqa: LL101", ""])
def test_not_a_directive(comment):
    assert parse_noqa(f"x = 1  {comment}\n") == {}


def test_noqa_inside_strings_is_not_a_directive():
    source = 'x = "# noqa"\ny = """\n# noqa: LL101\n"""\nz = 1  # noqa: LL2\n'
    assert parse_noqa(source) == {5: frozenset({"LL2"})}


def test_comments_before_a_tokenize_error_still_count():
    assert parse_noqa("x = 1  # noqa: LL1\ny = (\n") == {1: frozenset({"LL1"})}


def test_filter_matches_codes_and_prefixes_on_the_reported_line():
    findings = [
        Finding("a.py", 1, 1, "LL101", "m"),
        Finding("a.py", 1, 1, "LL202", "m"),
        Finding("a.py", 2, 1, "LL301", "m"),
        Finding("a.py", 3, 1, "LL401", "m"),
    ]
    source = "a  # noqa: LL1\nb  # noqa\nc  # noqa: LL40\n"
    assert filter_noqa(findings, source) == [findings[1]]


@pytest.mark.parametrize(
    ("comment", "suppressed"),
    [
        ("", False),
        ("  # noqa", True),
        ("  # noqa: LL101", True),
        ("  # noqa: LL1", True),
        ("  # noqa: ll101", True),
        ("  # noqa: LL102", False),
        ("  # noqa: LL2", False),
        ('  ; s = "# noqa"', False),
    ],
)
def test_end_to_end_on_the_reported_line(comment, suppressed):
    source = LOOP.format(comment=comment)
    codes = [finding.code for finding in lint_bytes(source.encode(), "train.py")]
    assert codes == ([] if suppressed else ["LL101"])


def test_noqa_on_another_line_does_not_suppress():
    source = LOOP.format(comment="").replace("loss.backward()", "loss.backward()  # noqa")
    assert [finding.code for finding in lint_bytes(source.encode(), "train.py")] == ["LL101"]
