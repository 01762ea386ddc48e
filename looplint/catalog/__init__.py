"""The one place that maps rule codes to their names and documentation (static and runtime)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass


@dataclass(frozen=True)
class RuleInfo:
    code: str
    name: str
    summary: str  # one line, used in listings
    what: str  # what it catches
    why: str  # why it is bad: what really happens
    example: str  # code that triggers it
    fix: str  # what to write instead (prose and/or code)
    origin: str = "static"  # "static", "runtime" or "both"
    fixable: str = "no"  # "safe", "unsafe" or "no"


def _load() -> dict[str, RuleInfo]:
    from looplint.catalog import lr, runtime, static

    rules: dict[str, RuleInfo] = {}
    for info in (*static.RULES, *runtime.RULES, *lr.RULES):
        rules[info.code] = info
    return dict(sorted(rules.items()))


RULES: dict[str, RuleInfo] = _load()


def render(info: RuleInfo) -> str:
    """A rule page in the shape of ruff's: what it does, why it is bad, example, fix."""
    parts = [
        f"{info.code} {info.name}",
        "",
        f"Checked: {info.origin}.  Autofix: {info.fixable}.",
        "",
        "What it does",
        textwrap.indent(textwrap.dedent(info.what).strip(), "  "),
        "",
        "Why is this bad?",
        textwrap.indent(textwrap.dedent(info.why).strip(), "  "),
        "",
        "Example",
        textwrap.indent(textwrap.dedent(info.example).strip("\n"), "    "),
        "",
        "Fix",
        textwrap.indent(textwrap.dedent(info.fix).strip("\n"), "  "),
    ]
    return "\n".join(parts) + "\n"
