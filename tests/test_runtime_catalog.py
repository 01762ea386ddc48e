"""Every runtime-only code has a full rule page; every code the runtime reports is documented."""

from __future__ import annotations

import re
from pathlib import Path

from looplint.catalog import RULES, lr, render, runtime, static

RUNTIME_SOURCES = Path(__file__).resolve().parent.parent / "looplint" / "runtime"


def test_runtime_rules_have_all_four_parts():
    for code in ("LL501", "LL502", "LL503", "LL504", "LL505", "LL508"):
        info = RULES[code]
        assert info.origin == "runtime"
        assert all(part.strip() for part in (info.what, info.why, info.example, info.fix))
        page = render(info)
        assert page.startswith(f"{code} {info.name}") and "Why is this bad?" in page


def test_rules_checked_both_ways_say_what_the_run_time_check_reports():
    for code in ("LL103", "LL104", "LL105", "LL404", "LL405"):
        info = RULES[code]
        assert info.origin == "both"
        assert "At run time, " in render(info), code


def test_each_code_has_one_page():
    codes = [info.code for module in (static, runtime, lr) for info in module.RULES]
    assert len(codes) == len(set(codes)) == len(RULES)


def test_every_code_the_runtime_emits_is_in_the_catalog():
    emitted = set()
    for source in RUNTIME_SOURCES.glob("*.py"):
        emitted |= set(re.findall(r'"(LL\d{3})"', source.read_text()))
    assert emitted and emitted <= set(RULES)


def test_every_summary_is_one_sentence_with_its_final_period():
    for code, info in RULES.items():
        assert info.summary.endswith(".") and "\n" not in info.summary, code
