"""Every runtime-only code has a full rule page; every code the runtime reports is documented."""

from __future__ import annotations

import re
from pathlib import Path

from looplint.catalog import RULES, render

RUNTIME_SOURCES = Path(__file__).resolve().parent.parent / "looplint" / "runtime"


def test_runtime_rules_have_all_four_parts():
    for code in ("LL501", "LL502", "LL503", "LL504", "LL505"):
        info = RULES[code]
        assert info.origin == "runtime"
        assert all(part.strip() for part in (info.what, info.why, info.example, info.fix))
        page = render(info)
        assert page.startswith(f"{code} {info.name}") and "Why is this bad?" in page


def test_every_code_the_runtime_emits_is_in_the_catalog():
    emitted = set()
    for source in RUNTIME_SOURCES.glob("*.py"):
        emitted |= set(re.findall(r'"(LL\d{3})"', source.read_text()))
    assert emitted and emitted <= set(RULES)


def test_every_summary_is_one_sentence_with_its_final_period():
    for code, info in RULES.items():
        assert info.summary.endswith(".") and "\n" not in info.summary, code
