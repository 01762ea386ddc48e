"""Line-level edits for autofixes, computed from positions only once a rule has fired."""

from __future__ import annotations

import re

import libcst as cst
from libcst.metadata import CodeRange

from looplint.findings import Edit

_NEWLINE = re.compile(r"\r\n|\r|\n")


class Source:
    """A file's text with the positions of its CST nodes."""

    def __init__(self, text: str, positions: dict[cst.CSTNode, CodeRange]) -> None:
        self.text = text
        self.positions = positions
        self.line_starts = [0] + [m.end() for m in _NEWLINE.finditer(text)]
        match = _NEWLINE.search(text)
        self.newline = match.group() if match else "\n"

    def offset(self, line: int, column: int) -> int:
        return self.line_starts[line - 1] + column

    def span(self, node: cst.CSTNode) -> tuple[int, int]:
        where = self.positions[node]
        return self.offset(where.start.line, where.start.column), self.offset(
            where.end.line, where.end.column
        )

    def lines(self, statement: cst.CSTNode) -> tuple[int, int]:
        """From the start of the statement's first line to the start of the line after it."""
        where = self.positions[statement]
        end_line = where.end.line
        end = self.line_starts[end_line] if end_line < len(self.line_starts) else len(self.text)
        return self.line_starts[where.start.line - 1], end

    def indent(self, statement: cst.CSTNode) -> str | None:
        """The statement's indentation, or None when it does not start its line."""
        where = self.positions[statement]
        start = self.line_starts[where.start.line - 1]
        prefix = self.text[start : start + where.start.column]
        return prefix if prefix.strip() == "" else None

    def code(self, node: cst.CSTNode) -> str:
        start, end = self.span(node)
        return self.text[start:end]


def sole_statement(statement: cst.CSTNode | None, node: cst.CSTNode) -> bool:
    """The line holds just this one expression statement, so it can be moved as a whole line."""
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and len(statement.body) == 1
        and isinstance(statement.body[0], cst.Expr)
        and statement.body[0].value is node
    )


def line_with_newline(source: Source, text: str, indent: str) -> str:
    return f"{indent}{text}{source.newline}"


def statement_text(source: Source, statement: cst.CSTNode) -> str | None:
    """The statement's lines without their indentation or final newline: the code and the
    comment at the end of its line, which travels with it when it moves."""
    own_indent = source.indent(statement)
    if own_indent is None:
        return None
    start, end = source.lines(statement)
    lines = _NEWLINE.split(source.text[start:end].rstrip("\r\n"))
    return source.newline.join(line.removeprefix(own_indent) for line in lines)


def reindent(source: Source, text: str, indent: str) -> str:
    """`text` (a statement_text) at another indentation, its continuation lines shifted alike."""
    first, *rest = _NEWLINE.split(text)
    return source.newline.join([indent + first] + [indent + line if line.strip() else line for line in rest])


def move_before(source: Source, moved: cst.CSTNode, anchor: cst.CSTNode) -> tuple[Edit, ...] | None:
    """Move the whole line `moved` (with its comment) to just before the line `anchor`, at the
    anchor's indentation."""
    indent = source.indent(anchor)
    text = statement_text(source, moved)
    if indent is None or text is None:
        return None
    start, end = source.lines(moved)
    anchor_start, _ = source.lines(anchor)
    return (
        Edit(anchor_start, anchor_start, reindent(source, text, indent) + source.newline),
        Edit(start, end, ""),
    )


def insert_after(source: Source, anchor: cst.CSTNode, code: str, indent: str | None = None) -> Edit | None:
    """Insert a new line (or a statement_text) after the statement `anchor` (a compound
    statement: after its block)."""
    own_indent = source.indent(anchor)
    if own_indent is None:
        return None
    _, end = source.lines(anchor)
    text = reindent(source, code, own_indent if indent is None else indent) + source.newline
    if end == len(source.text) and not source.text.endswith(("\n", "\r")):
        text = source.newline + text
    return Edit(end, end, text)


def delete_line(source: Source, statement: cst.CSTNode) -> Edit:
    start, end = source.lines(statement)
    return Edit(start, end, "")
