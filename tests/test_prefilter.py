"""The text prefilter never hides a finding: every fixture that has one passes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from looplint.static import analyze_source, might_have_findings

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SOURCES = sorted(FIXTURES.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(FIXTURES).as_posix())
def test_files_with_findings_pass_the_prefilter(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    if any(f.code != "LL000" for f in analyze_source(source, str(path))):
        assert might_have_findings(source)


def test_a_file_without_training_code_is_filtered_out() -> None:
    assert not might_have_findings("import os\n\nprint(os.getcwd())\n")


def test_markers_are_case_insensitive() -> None:
    assert might_have_findings("totalLoss = 0\n")
