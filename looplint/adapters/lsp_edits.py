"""What the language server computes from findings, free of any protocol library: positions in
the client's units, verified fix texts, `# noqa` lines, minimal line edits and rule pages as
markdown. Kept apart from the server so that it is testable and importable without pygls."""

from __future__ import annotations

import difflib
import hashlib
import io
import json
import os
import re
import textwrap
import tokenize
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from looplint.engine.config import Config
from looplint.engine.suppress import filter_noqa, is_suppressed, parse_noqa
from looplint.findings import Finding

# Lines as LSP counts them: split after \r\n, \r or \n.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")
_NOQA_CODES = re.compile(r"(#\s*noqa\s*:\s*[A-Za-z]+\d+(?:[\s,]+[A-Za-z]+\d+)*)", re.IGNORECASE)


def split_lines(text: str) -> list[str]:
    """The document's lines with their line breaks, as the protocol numbers them."""
    return _LINE.findall(text)


def client_column(line: str, column: int, encoding: str) -> int:
    """A 0-based column in code points as a column in the client's position encoding."""
    prefix = line[:column]
    if encoding == "utf-8":
        return len(prefix.encode("utf-8", "surrogatepass"))
    if encoding == "utf-32":
        return len(prefix)
    return len(prefix.encode("utf-16-le", "surrogatepass")) // 2


def server_column(line: str, units: int, encoding: str) -> int:
    """A column in the client's units as a 0-based column in code points."""
    if encoding == "utf-32":
        return min(units, len(line))
    counted = 0
    for index, char in enumerate(line):
        if counted >= units:
            return index
        if encoding == "utf-8":
            counted += len(char.encode("utf-8", "surrogatepass"))
        else:
            counted += 2 if ord(char) > 0xFFFF else 1
    return len(line)


@dataclass
class Document:
    """One text document as the protocol sees it: a Python file or one notebook cell."""

    uri: str
    version: int | None
    text: str
    lines: list[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.lines = split_lines(self.text)

    def line_text(self, index: int) -> str:
        """Line `index` (0-based) without its line break; empty past the end."""
        if 0 <= index < len(self.lines):
            return self.lines[index].rstrip("\r\n")
        return ""

    def finding_range(self, finding: Finding) -> tuple[int, int, int, int]:
        """(start line, start column, end line, end column), 0-based, in code points, clamped to
        the document; a finding without an end (or an empty one) covers the rest of its line."""
        last = max(len(self.lines) - 1, 0)
        line = min(max(finding.line - 1, 0), last)
        column = min(max(finding.column - 1, 0), len(self.line_text(line)))
        if finding.end_line:
            end_line = min(max(finding.end_line - 1, line), last)
            end_column = min(max(finding.end_column - 1, 0), len(self.line_text(end_line)))
        else:
            end_line, end_column = line, len(self.line_text(line))
        if (end_line, end_column) <= (line, column):
            end_line, end_column = line, max(len(self.line_text(line)), column)
        return line, column, end_line, end_column


@dataclass(frozen=True)
class TextEdit:
    """Replace lines [start_line, end_line) (0-based, whole lines) with `text`; `end_column` is
    set when the range ends inside the last line (a final line without a line break)."""

    start_line: int
    end_line: int
    text: str
    end_column: int = 0


def line_edits(old: str, new: str) -> list[TextEdit]:
    """Small whole-line edits that turn `old` into `new`."""
    old_lines, new_lines = split_lines(old), split_lines(new)
    edits = []
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        text = "".join(new_lines[j1:j2])
        if i2 == len(old_lines) and old_lines and not old_lines[-1].endswith(("\n", "\r")) and i2 > i1:
            # The range reaches the end of a last line that has no line break.
            edits.append(TextEdit(i1, i2 - 1, text, end_column=len(old_lines[-1])))
        else:
            edits.append(TextEdit(i1, i2, text))
    return edits


# ---------------------------------------------------------------------------------------------
# Fixes: the engine's verified autofix, restricted to one finding or to every safe fix.


def fixed_python(text: str, path: str, config: Config, target: Finding | None) -> str | None:
    """The text with the fix of `target` applied (or every enabled safe fix when `target` is
    None), verified as `looplint --fix` verifies; None when nothing could be applied."""
    from looplint.engine.fixer import apply_fixes
    from looplint.static import analyze_source

    crlf = "\r\n" in text and text.count("\r\n") == text.count("\n")
    work = text.replace("\r\n", "\n") if crlf else text

    def verify(candidate: str) -> list[Finding]:
        return filter_noqa(analyze_source(candidate, path), candidate)

    findings = verify(work)
    if any(finding.code == "LL000" for finding in findings):
        return None
    select = _selector(findings, config, path, target, locate=lambda finding: finding)
    result = apply_fixes(work, findings, verify, select)
    if not result.applied:
        return None
    return result.source.replace("\n", "\r\n") if crlf else result.source


def fixed_notebook_cells(
    notebook_json: str, path: str, config: Config, target: Finding | None
) -> list[str] | None:
    """The code and markdown cells' new texts after the fix of `target` (located in its cell),
    or every enabled safe fix; None when nothing could be applied or written back."""
    from looplint.engine.fixer import apply_fixes
    from looplint.engine.notebook import NotebookError, notebook_source
    from looplint.static import analyze_source

    notebook = notebook_source(notebook_json)

    def verify(candidate: str) -> list[Finding]:
        findings = filter_noqa(analyze_source(candidate, path), candidate)
        try:
            notebook.rebuild(candidate)
        except NotebookError as error:
            findings.append(Finding(path, 1, 1, "LL000", f"cannot write the fix back: {error}"))
        return findings

    findings = verify(notebook.source)
    if any(finding.code == "LL000" for finding in findings):
        return None
    select = _selector(findings, config, path, target, locate=notebook.locate_finding)
    result = apply_fixes(notebook.source, findings, verify, select)
    if not result.applied:
        return None
    try:
        rebuilt = json.loads(notebook.rebuild(result.source))
    except NotebookError:
        return None
    return [
        "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for cell in rebuilt["cells"]
    ]


def _selector(
    findings: list[Finding],
    config: Config,
    path: str,
    target: Finding | None,
    locate: Callable[[Finding], Finding],
) -> Callable[[Finding], bool]:
    def fixable(finding: Finding) -> bool:
        return finding.fix is not None and finding.fix.safe and config.is_enabled(finding.code, path)

    if target is None:
        return fixable
    wanted = _place(target)
    chosen = [finding for finding in findings if fixable(finding) and _place(locate(finding)) == wanted]
    # Only this object: the findings of the fixed text are new objects, so nothing else is fixed.
    return lambda finding: bool(chosen) and finding is chosen[0]


def _place(finding: Finding) -> tuple:
    return (finding.code, finding.message, (finding.details or {}).get("cell"), finding.line, finding.column)


# ---------------------------------------------------------------------------------------------
# `# noqa` for one line.


def noqa_line(line: str, code: str) -> str | None:
    """`line` (without its line break) with a `# noqa` comment that silences `code`, extending a
    `# noqa: CODES` comment already there; None when no comment can go on this line."""
    if line.rstrip().endswith("\\"):
        return None  # a comment after a line continuation would break the code
    comment = _comment_of(line)
    if comment is None:
        new = f"{line.rstrip()}  # noqa: {code}"
    else:
        match = _NOQA_CODES.search(line, comment)
        if match is not None:
            new = line[: match.end()] + f", {code}" + line[match.end() :]
        else:
            new = f"{line.rstrip()}  # noqa: {code}"
    probe = Finding("", 1, 1, code, "")
    return new if is_suppressed(probe, parse_noqa(new + "\n")) else None


def _comment_of(line: str) -> int | None:
    """Offset of the line's comment, found by the tokenizer (never a `#` inside a string)."""
    try:
        for token in tokenize.generate_tokens(io.StringIO(line + "\n").readline):
            if token.type == tokenize.COMMENT:
                return token.start[1]
    except (tokenize.TokenError, SyntaxError):
        pass
    return None


# ---------------------------------------------------------------------------------------------
# Rule pages as markdown (hover, and the page a diagnostic's code links to).


def rule_markdown(code: str) -> str | None:
    """The rule page of `code` in markdown: what, why, example, fix; None for unknown codes."""
    from looplint.catalog import RULES

    info = RULES.get(code)
    if info is None:
        return None
    parts = [
        f"### {info.code} `{info.name}`",
        f"*Checked: {info.origin}. Autofix: {info.fixable}.*",
        "**What it does**",
        _prose(info.what),
        "**Why is this bad?**",
        _prose(info.why),
        "**Example**",
        "```python\n" + textwrap.dedent(info.example).strip("\n") + "\n```",
        "**Fix**",
        _prose(info.fix),
    ]
    return "\n\n".join(parts) + "\n"


def _prose(text: str) -> str:
    """Dedented prose whose indented blocks (code in the rule pages) become python fences."""
    lines = textwrap.dedent(text).strip("\n").splitlines()
    out: list[str] = []
    block: list[str] = []

    def flush() -> None:
        while block and not block[-1].strip():
            block.pop()
        if block:
            code = textwrap.dedent("\n".join(block))
            out.extend(["", "```python", *code.splitlines(), "```", ""])
            block.clear()

    for line in lines:
        if line.startswith("    ") or (block and not line.strip()):
            block.append(line)
            continue
        flush()
        out.append(line)
    flush()
    return "\n".join(out).strip("\n")


@cache
def rule_page_uri(code: str) -> str | None:
    """A `file:` URI of the rule page written as markdown into looplint's cache directory (so a
    diagnostic's code can link to it); None when it cannot be written."""
    page = rule_markdown(code)
    if page is None:
        return None
    from looplint import __version__

    digest = hashlib.blake2b(page.encode(), digest_size=4).hexdigest()
    directory = _cache_home() / "looplint" / f"rules-{__version__}"
    target = directory / f"{code}-{digest}.md"
    if not target.is_file():
        try:
            directory.mkdir(parents=True, exist_ok=True)
            from looplint.engine.fixer import write_atomic

            write_atomic(target, page.encode("utf-8"))
        except OSError:
            return None
    return target.as_uri()


def _cache_home() -> Path:
    configured = os.environ.get("XDG_CACHE_HOME")
    return Path(configured) if configured and os.path.isabs(configured) else Path.home() / ".cache"
