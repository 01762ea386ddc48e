"""Static analysis: parse -> training-loop model -> rules -> findings."""

from __future__ import annotations

import libcst as cst

from looplint.findings import Finding


def analyze_source(source: str, path: str = "<stdin>") -> list[Finding]:
    """Placeholder until the loop model lands: reports LL000 only."""
    try:
        cst.parse_module(source)
    except cst.ParserSyntaxError as error:
        return [Finding(path, error.raw_line, error.raw_column + 1, "LL000", f"syntax error: {error.message}")]
    return []


# A file that contains none of these substrings cannot produce a finding other than LL000:
# every rule needs a backward pass, an optimizer/scheduler step, a writer or a parameter group.
PREFILTER_MARKERS: tuple[str, ...] = ("backward", "step", "zero_grad", "Writer", "add_", "param")
