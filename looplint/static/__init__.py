"""Static analysis: syntax check -> prefilter -> parse -> training-loop model -> rules -> findings.

The package itself imports nothing heavy: libcst is loaded only for a file that passes the
prefilters, so a pre-commit run over files without training code never pays for it.
"""

from __future__ import annotations

import os

from looplint.findings import Finding
from looplint.static import syntax
from looplint.static.prefilter import MARKERS as PREFILTER_MARKERS
from looplint.static.prefilter import calls_project_code, might_have_findings, needs_analysis
from looplint.static.project import Project

__all__ = ["PREFILTER_MARKERS", "Project", "analyze_source", "might_have_findings"]


def analyze_source(source: str, path: str = "<stdin>", project: Project | None = None) -> list[Finding]:
    """Unfiltered findings for one file's text (LL000 when it does not parse).

    Imports are resolved within `project` (by default, the modules next to `path` on disk).
    """
    tree = syntax.parse(source, path)
    if isinstance(tree, Finding):
        return [tree]
    if project is None:
        project = default_project(path)
    if not might_have_findings(source) or not (
        needs_analysis(tree) or calls_project_code(tree, path, project)
    ):
        return []
    if syntax.too_deep(source, tree):
        return [syntax.syntax_error(path, "too deeply nested to analyze", 1, 0)]
    from looplint.static.analyzer import analyze_tree  # loads libcst

    return analyze_tree(source, path, tree, project)


def default_project(path: str) -> Project | None:
    """A file analyzed on its own still sees the modules beside it on disk."""
    if path.startswith("<") or not os.path.isfile(path):
        return None
    return Project(None)
