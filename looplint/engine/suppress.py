"""`# noqa` comments: `# noqa` silences every finding on its line, `# noqa: LL101, LL2` only those
codes (a prefix covers every code it starts). Parsing follows ruff's: case-insensitive, codes
separated by commas and/or spaces, and only real comments count, never text inside strings."""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterable

from looplint.findings import Finding

_NOQA = re.compile(
    r"#\s*noqa(?![\w-])(?:\s*:\s*(?P<codes>[A-Za-z]+\d+(?:[\s,]+[A-Za-z]+\d+)*))?",
    re.IGNORECASE,
)
_MENTIONS_NOQA = re.compile("noqa", re.IGNORECASE)
_CODE = re.compile(r"[A-Za-z]+\d+")

# None means every code on that line is silenced.
Directives = dict[int, "frozenset[str] | None"]


def parse_noqa(source: str) -> Directives:
    """Map 1-based line numbers to the codes their `# noqa` comment silences."""
    directives: Directives = {}
    # Tokenizing costs about as much as a parse: only pay it when a directive may exist.
    if not _MENTIONS_NOQA.search(source):
        return directives
    try:
        for token in tokenize.generate_tokens(io.StringIO(source, newline=None).readline):
            if token.type == tokenize.COMMENT:
                _add(directives, token.start[0], token.string)
    except (tokenize.TokenError, SyntaxError):
        # A file that stops tokenizing keeps the comments seen before the error.
        pass
    return directives


def _add(directives: Directives, line: int, comment: str) -> None:
    match = _NOQA.search(comment)
    if match is None:
        return
    codes = match.group("codes")
    if codes is None or directives.get(line, frozenset()) is None:
        directives[line] = None
        return
    found = frozenset(code.upper() for code in _CODE.findall(codes))
    directives[line] = directives.get(line, frozenset()) | found  # type: ignore[operator]


def is_suppressed(finding: Finding, directives: Directives) -> bool:
    """Whether a `# noqa` comment on the finding's reported line covers its code."""
    if finding.line not in directives:
        return False
    codes = directives[finding.line]
    return codes is None or any(finding.code.upper().startswith(code) for code in codes)


def filter_noqa(findings: Iterable[Finding], source: str) -> list[Finding]:
    """The findings that no `# noqa` comment in `source` silences."""
    findings = list(findings)
    if not findings:
        return findings
    directives = parse_noqa(source)
    return [finding for finding in findings if not is_suppressed(finding, directives)]
