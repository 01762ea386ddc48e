"""Jupyter notebooks: code cells as one Python source, and fixed source back into the notebook.

The code cells are joined in order into one text, so a training loop split over cells is analyzed
as the kernel would run it. IPython syntax is blanked line for line (line magics, `!shell`,
`?help`; a `%%cell magic` blanks its whole cell), so every line of the joined text is one line of
one cell, and columns are unchanged. Writing back touches only the `"source"` values of the cells that changed; every other
byte of the notebook file stays as it was.
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from looplint.findings import Edit, Finding
from looplint.static.syntax import parse


class NotebookError(ValueError):
    """The text is not a notebook we can read, or a change cannot be written back into it."""


@dataclass(frozen=True)
class CodeCell:
    """One code cell: where it sits in the notebook and in the joined source."""

    number: int  # 1-based position among all cells (markdown included), as editors count them
    text: str  # the cell's source as stored in the notebook
    first_line: int  # 1-based line of the joined source where the cell starts
    line_count: int
    blanked: frozenset[int]  # 0-based lines of the cell that hold IPython syntax
    source_span: tuple[int, int]  # the cell's JSON "source" value in the notebook text
    source_is_list: bool


@dataclass(frozen=True)
class NotebookSource:
    """A notebook's code cells joined into one Python source."""

    source: str
    cells: tuple[CodeCell, ...]
    notebook_text: str = field(repr=False)

    def locate(self, line: int) -> tuple[int, int]:
        """Map a 1-based line of `source` to (cell number, 1-based line within that cell).

        A line past the last cell (a syntax error at the end of the file) maps to its last line.
        """
        filled = [cell for cell in self.cells if cell.line_count]
        if not filled:
            return (self.cells[0].number if self.cells else 1), 1
        for cell in filled:
            if line < cell.first_line + cell.line_count:
                return cell.number, max(1, line - cell.first_line + 1)
        return filled[-1].number, filled[-1].line_count

    def locate_finding(self, finding: Finding) -> Finding:
        """The same finding, counted within its cell: `details["cell"]` is set, lines are the
        cell's, and the fix's edits become offsets into the cell's source (the fix is dropped
        when it reaches into other cells or IPython lines, where no single cell could take it)."""
        cell, line = self.locate(finding.line)
        end_line, end_column = finding.end_line, finding.end_column
        if end_line:
            end_cell, end_in_cell = self.locate(end_line)
            end_line, end_column = (end_in_cell, end_column) if end_cell == cell else (None, None)
        details = {**(finding.details or {}), "cell": cell}
        fix = finding.fix
        if fix is not None:
            edits = [self._cell_edit(edit, cell) for edit in fix.edits]
            if None in edits:
                # An edit that spans the newline the joined source puts after a cell (a line moved
                # to the end of a cell without a final newline) maps as a whole-cell change.
                edits = self._cell_change(fix.edits, cell)
            fix = None if not edits else replace(fix, edits=tuple(edits))  # type: ignore[arg-type]
        return finding.with_(line=line, end_line=end_line, end_column=end_column, details=details, fix=fix)

    def _cell_change(self, edits: tuple[Edit, ...], number: int) -> list[Edit]:
        """The edits applied to the joined source, as one edit of the cell's stored source; empty
        when the change cannot be written back into that cell alone."""
        fixed = self.source
        for edit in sorted(edits, key=lambda e: e.start, reverse=True):
            fixed = fixed[: edit.start] + edit.text + fixed[edit.end :]
        try:
            new_texts = self._split(fixed)
        except NotebookError:
            return []
        changed = [cell for cell, text in zip(self.cells, new_texts) if text != cell.text]
        if [cell.number for cell in changed] != [number]:
            return []
        old, new = changed[0].text, new_texts[self.cells.index(changed[0])]
        prefix = len(os.path.commonprefix([old, new]))
        suffix = len(os.path.commonprefix([old[prefix:][::-1], new[prefix:][::-1]]))
        return [Edit(prefix, len(old) - suffix, new[prefix : len(new) - suffix])]

    def _cell_edit(self, edit: Edit, number: int) -> Edit | None:
        """An edit of the joined source as offsets into one cell's stored source, if it fits."""
        cell = next(c for c in self.cells if c.number == number)
        start = _cell_offset(self.source, cell, edit.start)
        end = _cell_offset(self.source, cell, edit.end)
        return None if start is None or end is None else Edit(start, end, edit.text)

    def rebuild(self, fixed_source: str) -> str:
        """The notebook text with the cells rewritten to hold `fixed_source`.

        Only the `"source"` values of cells whose text changed are re-serialized, in the notebook's
        own layout. Raises NotebookError when a change cannot be attributed to single cells: it
        replaces lines of two cells at once or touches a blanked IPython line.
        """
        if fixed_source == self.source:
            return self.notebook_text
        new_texts = self._split(fixed_source)
        pieces: list[str] = []
        position = 0
        for cell, new_text in zip(self.cells, new_texts):
            if new_text == cell.text:
                continue
            start, end = cell.source_span
            pieces.append(self.notebook_text[position:start])
            pieces.append(self._serialize(cell, new_text))
            position = end
        pieces.append(self.notebook_text[position:])
        rebuilt = "".join(pieces)
        self._check(rebuilt, new_texts)
        return rebuilt

    def _split(self, fixed_source: str) -> list[str]:
        """Distribute the fixed source's lines over the cells, restoring the blanked lines."""
        old_lines = _lines(self.source)
        new_lines = _lines(fixed_source)
        owner: list[int] = []  # old line index -> index into self.cells
        for index, cell in enumerate(self.cells):
            owner.extend([index] * cell.line_count)
        cell_lines: list[list[str]] = [[] for _ in self.cells]
        originals = [_lines(cell.text) for cell in self.cells]

        def take_original(old: int) -> None:
            cell = self.cells[owner[old]]
            local = old - (cell.first_line - 1)
            line = originals[owner[old]][local] if local in cell.blanked else old_lines[old]
            cell_lines[owner[old]].append(line if line.endswith("\n") else line + "\n")

        matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                for old in range(i1, i2):
                    take_original(old)
                continue
            touched = {owner[old] for old in range(i1, i2)}
            for old in range(i1, i2):
                cell = self.cells[owner[old]]
                if old - (cell.first_line - 1) in cell.blanked:
                    raise NotebookError(
                        f"a fix would change the IPython line {old - cell.first_line + 2} "
                        f"of cell {cell.number}"
                    )
            if len(touched) > 1 and j2 > j1:
                raise NotebookError("a fix would rewrite lines of more than one cell at once")
            if touched:
                target = touched.pop()
            elif i1 > 0:  # pure insertion: it belongs to the cell it follows
                target = owner[i1 - 1]
            elif self.cells:  # inserted before everything: the first code cell
                target = 0
            else:
                raise NotebookError("the notebook has no code cell to put the fix in")
            cell_lines[target].extend(new_lines[j1:j2])
        texts = []
        for cell, lines in zip(self.cells, cell_lines):
            text = "".join(lines)
            if not cell.text.endswith("\n") and text.endswith("\n"):
                text = text[:-1]  # the joined source added this newline; the cell has none
            texts.append(text)
        return texts

    def _serialize(self, cell: CodeCell, text: str) -> str:
        """The JSON for a cell's new source, laid out like the value it replaces."""
        start, end = cell.source_span
        original = self.notebook_text[start:end]
        ensure_ascii = _uses_ascii_escapes(self.notebook_text)
        if not cell.source_is_list:
            return json.dumps(text, ensure_ascii=ensure_ascii)
        lines = text.splitlines(keepends=True)
        if not lines:
            return "[]"
        items = [json.dumps(line, ensure_ascii=ensure_ascii) for line in lines]
        newline = "\r\n" if "\r\n" in self.notebook_text else "\n"
        indented = "\n" in self.notebook_text.strip()
        if not indented or ("\n" not in original and original.strip() != "[]"):
            # compact notebook, or one that writes short lists on one line
            separator = "," if re.search(r",\S", original) else ", "
            return "[" + separator.join(items) + "]"
        line_start = self.notebook_text.rfind("\n", 0, start) + 1
        close_indent = _indent_of(self.notebook_text[line_start:start])
        item_indent = _item_indent(original) or close_indent + _indent_unit(self.notebook_text)
        body = ("," + newline).join(item_indent + item for item in items)
        return "[" + newline + body + newline + close_indent + "]"

    def _check(self, rebuilt: str, new_texts: list[str]) -> None:
        """Parse the rebuilt notebook and compare it with the intended change, field by field."""
        try:
            before = json.loads(self.notebook_text)
            after = json.loads(rebuilt)
        except ValueError as error:
            raise NotebookError(f"rewriting the notebook produced invalid JSON: {error}") from None
        for cell, text in zip(self.cells, new_texts):
            stored = after["cells"][cell.number - 1]["source"]
            if (stored if isinstance(stored, str) else "".join(stored)) != text:
                raise NotebookError(f"rewriting cell {cell.number} did not round-trip")
            after["cells"][cell.number - 1]["source"] = before["cells"][cell.number - 1]["source"]
        if after != before:
            raise NotebookError("rewriting the notebook changed more than the fixed cells")


def without_broken_cells(notebook: NotebookSource, path: str) -> tuple[NotebookSource, list[Finding]]:
    """The notebook with every cell that is not valid Python on its own blanked (the kernel runs
    each cell alone, so one broken cell does not stop the others), and an LL000 finding, located
    in its cell, for each. A cell IPython runs although Python does not parse it (its first line
    indented, or a top-level `await`) is blanked without a finding."""
    lines = notebook.source.splitlines(keepends=True)
    broken: list[Finding] = []
    cells: list[CodeCell] = []
    for cell in notebook.cells:
        start = cell.first_line - 1
        code = "".join(lines[start : start + cell.line_count])
        error = parse(code, path)
        if not isinstance(error, Finding):
            cells.append(cell)
            continue
        for index in range(start, start + cell.line_count):
            lines[index] = "\n"
        cells.append(replace(cell, blanked=frozenset(range(cell.line_count))))
        if not _runs_in_ipython(code, path):
            line = cell.first_line + error.line - 1
            broken.append(error.with_(line=line, end_line=line))
    fixed = replace(notebook, source="".join(lines), cells=tuple(cells))
    return fixed, [fixed.locate_finding(finding) for finding in broken]


def _runs_in_ipython(code: str, path: str) -> bool:
    """IPython strips the first line's indentation from every line, and allows top-level await."""
    first = next((line for line in code.splitlines() if line.strip()), "")
    indent = first[: len(first) - len(first.lstrip())]
    if indent:
        code = "".join(line.removeprefix(indent) for line in code.splitlines(keepends=True))
    return not isinstance(parse(code, path, ast.PyCF_ALLOW_TOP_LEVEL_AWAIT), Finding)


def notebook_source(text: str) -> NotebookSource:
    """Read a notebook's JSON text; raises NotebookError if it is not valid JSON or not a notebook."""
    text = text.removeprefix("\ufeff")
    try:
        document = json.loads(text)
    except ValueError as error:
        raise NotebookError(f"not valid notebook JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("cells"), list):
        raise NotebookError("not a Jupyter notebook (nbformat 4): no list of cells")
    spans = list(_cell_source_spans(text))
    if len(spans) != len(document["cells"]):
        raise NotebookError("not a Jupyter notebook: could not find every cell's source")
    python = _is_python(document.get("metadata"))
    cells: list[CodeCell] = []
    parts: list[str] = []
    line = 1
    for number, (raw, span) in enumerate(zip(document["cells"], spans), start=1):
        if not isinstance(raw, dict) or raw.get("cell_type") != "code" or not python:
            continue
        stored = raw.get("source", "")
        if isinstance(stored, list) and all(isinstance(piece, str) for piece in stored):
            cell_text = "".join(stored)
        elif isinstance(stored, str):
            cell_text = stored
        else:
            raise NotebookError(f"cell {number}: source is neither text nor a list of lines")
        if span is None:
            raise NotebookError(f"cell {number}: a code cell without a source")
        code, blanked = _blank_ipython(cell_text)
        if code and not code.endswith("\n"):
            code += "\n"
        line_count = code.count("\n")
        cells.append(CodeCell(number, cell_text, line, line_count, blanked, span, isinstance(stored, list)))
        parts.append(code)
        line += line_count
    return NotebookSource("".join(parts), tuple(cells), text)


def _is_python(metadata: object) -> bool:
    """False only when the notebook says its kernel runs another language."""
    if not isinstance(metadata, dict):
        return True
    for key in ("kernelspec", "language_info"):
        info = metadata.get(key)
        if isinstance(info, dict):
            language = info.get("language", info.get("name") if key == "language_info" else None)
            if isinstance(language, str) and language.lower() != "python":
                return False
    return True


# Line-level IPython syntax at the start of a statement: %magic, !shell, ?obj, obj?, x = %magic.
_IPYTHON_LINE = re.compile(
    r"""^\s*(?:
        [%!?](?!=)                      # %time f(), !pip install, ?torch (but not != or %=)
      | [\w.\[\]]+\?{1,2}\s*$           # torch.nn?  torch.nn??
      | [\w.,\s\[\]()*]+=\s*[%!](?!=)   # files = !ls, t = %timeit -o f()
    )""",
    re.VERBOSE,
)


def _blank_ipython(text: str) -> tuple[str, frozenset[int]]:
    """Blank the IPython lines (keeping the line count); return the text and those lines."""
    lines = _lines(text)
    if text.lstrip().startswith("%%"):  # a cell magic: the cell body is not Python
        return "\n" * len(lines), frozenset(range(len(lines)))
    blanked: set[int] = set()
    scanner = _StatementScanner()
    magic: _StatementScanner | None = None  # a magic line continued on the next lines
    for index, line in enumerate(lines):
        if magic is not None:
            magic.feed(line)
            lines[index] = "\n"
            blanked.add(index)
            if magic.at_statement_start():
                magic = None
        elif scanner.at_statement_start() and _IPYTHON_LINE.match(line):
            # Inside a block, `pass` keeps the block valid when the magic was all it held.
            indent = _indent_of(line)
            lines[index] = (indent + "pass" if indent else "") + "\n"
            blanked.add(index)
            magic = _StatementScanner()
            magic.feed(line)
            if magic.at_statement_start():
                magic = None
        else:
            scanner.feed(line)
    return "".join(lines), frozenset(blanked)


class _StatementScanner:
    """Tracks open brackets, strings and continuations, to know where a statement starts."""

    def __init__(self) -> None:
        self.depth = 0
        self.quote = ""  # the open string's delimiter when a triple-quoted string spans lines
        self.continued = False

    def at_statement_start(self) -> bool:
        return self.depth == 0 and not self.quote and not self.continued

    def feed(self, line: str) -> None:
        index, body = 0, line.rstrip("\r\n")
        self.continued = False
        while index < len(body):
            if self.quote:
                if body[index] == "\\":
                    index += 2
                    continue
                if body.startswith(self.quote, index):
                    index += len(self.quote)
                    self.quote = ""
                    continue
                index += 1
                continue
            char = body[index]
            if char == "#":
                break
            if char in "\"'":
                delimiter = body[index : index + 3] if body[index : index + 3] == char * 3 else char
                self.quote = delimiter
                index += len(delimiter)
                continue
            if char in "([{":
                self.depth += 1
            elif char in ")]}":
                self.depth = max(0, self.depth - 1)
            elif char == "\\" and index == len(body) - 1:
                self.continued = True
            index += 1
        if len(self.quote) == 1:  # an unterminated one-line string: a syntax error, not our job
            self.quote = ""


def _cell_source_spans(text: str) -> Iterator[tuple[int, int] | None]:
    """Yield, for each cell of the notebook text, the span of its "source" value (or None)."""
    position = _value_spans(text, _skip_space(text, 0)).get("cells")
    if position is None:
        return
    index = _skip_space(text, position[0])
    if text[index] != "[":
        return
    index = _skip_space(text, index + 1)
    while index < len(text) and text[index] != "]":
        cell_end = _DECODER.raw_decode(text, index)[1]
        yield _value_spans(text, index).get("source") if text[index] == "{" else None
        index = _skip_space(text, cell_end)
        if index < len(text) and text[index] == ",":
            index = _skip_space(text, index + 1)


def _value_spans(text: str, index: int) -> dict[str, tuple[int, int]]:
    """For the JSON object starting at text[index], the span of each member's value."""
    spans: dict[str, tuple[int, int]] = {}
    if text[index] != "{":
        return spans
    index = _skip_space(text, index + 1)
    while index < len(text) and text[index] == '"':
        key, index = json.decoder.scanstring(text, index + 1)
        index = _skip_space(text, index)
        if text[index] != ":":
            raise NotebookError("not valid notebook JSON")
        start = _skip_space(text, index + 1)
        end = _DECODER.raw_decode(text, start)[1]
        spans[key] = (start, end)
        index = _skip_space(text, end)
        if text[index] == ",":
            index = _skip_space(text, index + 1)
    return spans


_DECODER = json.JSONDecoder()


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def _cell_offset(source: str, cell: CodeCell, offset: int) -> int | None:
    """Where an offset of the joined source falls in the cell's stored text; None when it is in
    another cell, on a blanked IPython line, or after a last line that has no newline."""
    joined, stored = _lines(source), _lines(cell.text)
    local = offset - sum(len(line) for line in joined[: cell.first_line - 1])
    before = 0  # length of the cell's stored lines before the current one
    for index in range(cell.line_count):
        length = len(joined[cell.first_line - 1 + index])
        if 0 <= local < length:
            return None if index in cell.blanked else before + local
        local -= length
        before += len(stored[index])
    return before if local == 0 and cell.text.endswith("\n") else None


def _lines(text: str) -> list[str]:
    """Split after each "\\n" only, as Python counts lines (str.splitlines splits on more)."""
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _indent_of(text: str) -> str:
    return text[: len(text) - len(text.lstrip(" \t"))]


def _item_indent(list_text: str) -> str:
    """The indentation of the first item of a JSON list written over several lines."""
    match = re.match(r"\[\r?\n([ \t]*)\S", list_text)
    return match.group(1) if match else ""


def _indent_unit(text: str) -> str:
    """The notebook's indentation step, read from its first indented line (nbformat uses 1)."""
    match = re.search(r"\n([ \t]+)\S", text)
    return match.group(1) if match else " "


def _uses_ascii_escapes(text: str) -> bool:
    """Whether the notebook writes non-ASCII characters as \\u escapes (json's ensure_ascii)."""
    return text.isascii() and re.search(r"\\u[0-9a-fA-F]{4}", text) is not None
