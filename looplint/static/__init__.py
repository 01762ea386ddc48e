"""Static analysis: parse -> training-loop model -> rules -> findings."""

from __future__ import annotations

import ast
import re
import warnings

import libcst as cst

from looplint.findings import Finding
from looplint.static.fixes import Source
from looplint.static.model import Model
from looplint.static.positions import Positions
from looplint.static.rules import all_rules

_PARSER_PREFIX = re.compile(r"^(parser error: )?error at \d+:\d+: ")

# A file whose text (compared case-insensitively) contains none of these cannot produce a finding
# other than LL000, because every rule starts from one of: a backward pass (LL1xx), a loss or a
# loss function (LL2xx accumulators), a `step()` (optimizers, schedulers, LL204's training loop),
# a writer or its `add_*` methods (LL3xx), parameter groups (LL402), a scheduler class (LL403).
PREFILTER_MARKERS: tuple[str, ...] = (
    "backward",
    "loss",
    "criterion",
    "entropy",
    "nll",
    "divergence",
    "step",
    "writer",
    "add_",
    "param",
    "lr",
    "schedul",
)
_PREFILTER = re.compile("|".join(PREFILTER_MARKERS), re.IGNORECASE)


def might_have_findings(source: str) -> bool:
    """Cheap text test: False means only a syntax error (LL000) could be reported."""
    return _PREFILTER.search(source) is not None


def analyze_source(source: str, path: str = "<stdin>") -> list[Finding]:
    """Unfiltered findings for one file's text (LL000 when it does not parse)."""
    # CPython's parser first: it is much cheaper, words errors better, and refuses the deep
    # nesting that would overflow the native stack of the CST parser.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarnings are not ours to print
            tree = compile(source, path, "exec", ast.PyCF_ONLY_AST)
    except SyntaxError as error:
        return [syntax_error(path, error.msg, error.lineno or 1, (error.offset or 1) - 1)]
    except (RecursionError, MemoryError):
        return [syntax_error(path, "too deeply nested to parse", 1, 0)]
    except ValueError as error:  # null bytes
        return [syntax_error(path, str(error), 1, 0)]
    try:
        module = cst.parse_module(source)
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
        model = Model(module)
        hits = [hit for _, rule in all_rules() for hit in rule(model)]
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


def syntax_error(path: str, message: str, line: int, column: int) -> Finding:
    first_line = message.strip().splitlines()[0] if message.strip() else "invalid syntax"
    return Finding(
        path,
        max(line, 1),
        column + 1,
        "LL000",
        f"syntax error: {first_line}",
        max(line, 1),
        column + 1,
    )
