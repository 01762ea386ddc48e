"""Static analysis: syntax check -> prefilter -> parse -> training-loop model -> rules -> findings.

The package itself imports nothing heavy: libcst is loaded only for a file that passes the
prefilters, so a pre-commit run over files without training code never pays for it.
"""

from __future__ import annotations

from looplint.findings import Finding
from looplint.static import syntax
from looplint.static.prefilter import MARKERS as PREFILTER_MARKERS
from looplint.static.prefilter import might_have_findings, needs_analysis

__all__ = ["PREFILTER_MARKERS", "analyze_source", "might_have_findings"]


def analyze_source(source: str, path: str = "<stdin>") -> list[Finding]:
    """Unfiltered findings for one file's text (LL000 when it does not parse)."""
    tree = syntax.parse(source, path)
    if isinstance(tree, Finding):
        return [tree]
    if not might_have_findings(source) or not needs_analysis(tree):
        return []
    if syntax.too_deep(source, tree):
        return [syntax.syntax_error(path, "too deeply nested to analyze", 1, 0)]
    from looplint.static.analyzer import analyze_tree  # loads libcst

    return analyze_tree(source, path, tree)
