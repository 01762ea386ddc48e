"""The README keeps its promises: two commands up front, and every rule in its table."""

from __future__ import annotations

import re
from pathlib import Path

from looplint.catalog import RULES

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_first_code_block_is_install_and_run_then_test() -> None:
    block = re.search(r"```\n(.*?)```", README, re.DOTALL).group(1)
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 2
    assert "pip install" in commands[0] and "looplint" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command() -> None:
    block = re.search(r"```\n(.*?)```", README, re.DOTALL).group(1)
    test_command = block.strip().splitlines()[1].strip()
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert test_command in ci


def test_every_rule_is_in_the_table_with_its_name() -> None:
    for code, info in RULES.items():
        assert f"| {code} | `{info.name}` |" in README
