"""Positions for the few nodes a finding needs, without a whole-module position pass.

libcst's PositionProvider regenerates the code of the entire module (several times the cost of
the parse). Findings are rare, so we regenerate only the top-level statements that hold one, and
shift their relative lines by where Python's own parser says each statement starts.
"""

from __future__ import annotations

import ast

import libcst as cst
from libcst.metadata import CodePosition, CodeRange, PositionProvider
from libcst.metadata.position_provider import PositionProvidingCodegenState

from looplint.static.names import child_nodes

_SKIPPED_FIELDS = (
    "whitespace",
    "comma",
    "semicolon",
    "newline",
    "lpar",
    "rpar",
    "header",
    "footer",
    "leading_lines",
)


class Positions:
    """Maps CST nodes to absolute `CodeRange`s, computed one top-level statement at a time."""

    def __init__(self, module: cst.Module, tree: ast.Module) -> None:
        self.module = module
        self._top_lines = _top_level_lines(module, tree)
        self._owner: dict[int, int] | None = None
        self._ranges: dict[cst.CSTNode, CodeRange] = {}
        self._done: set[int] = set()

    def __getitem__(self, node: cst.CSTNode) -> CodeRange:
        found = self._ranges.get(node)
        if found is not None:
            return found
        index = self._top_index(node)
        if index not in self._done:
            self._compute(index)
        return self._ranges[node]

    def _top_index(self, node: cst.CSTNode) -> int:
        if self._owner is None:
            self._owner = {}
            for index, statement in enumerate(self.module.body):
                _index_subtree(statement, index, self._owner)
        return self._owner[id(node)]

    def _compute(self, index: int) -> None:
        statement = self.module.body[index]
        provider = PositionProvider()
        state = PositionProvidingCodegenState(
            default_indent=self.module.default_indent,
            default_newline=self.module.default_newline,
            provider=provider,
        )
        statement._codegen(state)
        relative = provider._computed
        shift = self._top_lines[index] - relative[statement].start.line
        for node, where in relative.items():
            self._ranges[node] = CodeRange(
                CodePosition(where.start.line + shift, where.start.column),
                CodePosition(where.end.line + shift, where.end.column),
            )
        self._done.add(index)


def _top_level_lines(module: cst.Module, tree: ast.Module) -> list[int]:
    """The line where each top-level CST statement starts, from the AST (`a; b` is two AST nodes)."""
    lines: list[int] = []
    position = 0
    for statement in module.body:
        lines.append(tree.body[position].lineno)
        position += len(statement.body) if isinstance(statement, cst.SimpleStatementLine) else 1
    return lines


def _index_subtree(node: cst.CSTNode, index: int, owner: dict[int, int]) -> None:
    stack = [node]
    while stack:
        current = stack.pop()
        owner[id(current)] = index
        stack.extend(child_nodes(current))
