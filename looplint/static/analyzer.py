"""The CST half of the pipeline: parse, build the loop model, run the rules, place findings."""

from __future__ import annotations

import ast
import re

import libcst as cst

from looplint.findings import Finding
from looplint.static.fixes import Source
from looplint.static.model import Model
from looplint.static.positions import Positions
from looplint.static.project import Project
from looplint.static.rules import all_rules
from looplint.static.syntax import syntax_error

_PARSER_PREFIX = re.compile(r"^(parser error: )?error at \d+:\d+: ")


def analyze_tree(source: str, path: str, tree: ast.Module, project: Project | None = None) -> list[Finding]:
    """Findings of a file that parsed with CPython and passed the prefilters."""
    model = project.kept_model(path, source) if project is not None else None
    try:
        module = model.module if model is not None else cst.parse_module(source)
    except cst.ParserSyntaxError as error:
        return [
            syntax_error(
                path,
                _PARSER_PREFIX.sub("", error.message),
                error.editor_line,
                error.editor_column - 1,
            )
        ]
    except RecursionError:
        return [syntax_error(path, "too deeply nested to parse", 1, 0)]
    try:
        if model is None:
            model = project.model(path, source, module) if project is not None else Model(module, path)
        if model is None:
            return [syntax_error(path, "too deeply nested to analyze", 1, 0)]
        model.bind_all()
        hits = [hit for _, rule in all_rules() for hit in rule(model)]
        if project is not None:
            project.offer(model)
    except RecursionError:
        return [syntax_error(path, "too deeply nested to analyze", 1, 0)]
    if not hits:
        return []
    positions = Positions(module, tree)
    text = Source(source, positions)
    findings: dict[tuple[str, int, int, str], Finding] = {}
    for hit in hits:
        where = positions[hit.node]
        fix = hit.fix(text) if hit.fix is not None else None
        finding = Finding(
            path=path,
            line=where.start.line,
            column=where.start.column + 1,
            code=hit.code,
            message=hit.message,
            end_line=where.end.line,
            end_column=where.end.column + 1,
            fix=fix,
        )
        findings.setdefault((hit.code, finding.line, finding.column, hit.message), finding)
    return sorted(findings.values())
