"""Autofix: apply the fixes the rules propose, verify each one, write files atomically.

A fix is kept only if the fixed text still parses, the finding it fixes is gone, no other finding
appears, and fixing again changes nothing. A fix that fails any check is dropped and the others are
still applied; when nothing can be verified the file is left exactly as it was.
"""

from __future__ import annotations

import io
import os
import stat
import tempfile
import tokenize
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from looplint.findings import Edit, Finding

Verify = Callable[[str], list[Finding]]


@dataclass
class FixOutcome:
    """What `fix_bytes` did: the new file content, the fixes it applied, the findings left."""

    new_data: bytes
    applied: list[Finding] = field(default_factory=list)
    remaining: list[Finding] = field(default_factory=list)


@dataclass
class FixResult:
    """What `apply_fixes` did to a text: the fixed text, the fixes applied and rejected."""

    source: str
    applied: list[Finding] = field(default_factory=list)
    rejected: list[Finding] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)  # every finding of `source`


def fix_bytes(
    data: bytes,
    path: str,
    *,
    unsafe: bool = False,
    is_enabled: Callable[[str], bool] | None = None,
) -> FixOutcome:
    """Fix one file's content. Keeps its encoding, BOM and line endings; notebooks stay notebooks.

    Safe fixes are applied, unsafe ones too with `unsafe=True`, and only for codes where
    `is_enabled(code)` is true; findings silenced by `# noqa` are left alone. `remaining` holds
    the enabled findings of the fixed content (for a notebook, located in their cells). Content
    that cannot be decoded or parsed is returned as is, with an LL000 finding saying why.
    """
    from looplint.engine.suppress import filter_noqa
    from looplint.static import analyze_source

    enabled = is_enabled or (lambda code: True)
    if str(path).endswith(".ipynb"):
        return _fix_notebook(data, path, unsafe, enabled)
    try:
        text, encoding = decode_source(data)
    except ValueError as error:
        return FixOutcome(data, [], [Finding(path, 1, 1, "LL000", str(error))])
    # Rules write "\n" in their edits: fix a pure-CRLF file as LF, then restore its line endings.
    crlf = "\r\n" in text and text.count("\r\n") == text.count("\n")
    work = text.replace("\r\n", "\n") if crlf else text

    def verify(candidate: str) -> list[Finding]:
        return filter_noqa(analyze_source(candidate, path), candidate)

    findings = verify(work)
    result = apply_fixes(work, findings, verify, _fixable(findings, unsafe, enabled))
    fixed = result.source.replace("\n", "\r\n") if crlf else result.source
    remaining = [f for f in result.findings if enabled(f.code)]
    if fixed == text:
        return FixOutcome(data, [], remaining)
    try:
        new_data = fixed.encode(encoding)
    except UnicodeEncodeError:  # a fix brought in a character the file's encoding lacks
        return FixOutcome(data, [], [f for f in findings if enabled(f.code)])
    return FixOutcome(new_data, result.applied, remaining)


def _fix_notebook(data: bytes, path: str, unsafe: bool, enabled: Callable[[str], bool]) -> FixOutcome:
    """Fix the joined code cells; a fix that cannot be written back into its cells is rejected."""
    from looplint.engine.notebook import NotebookError, notebook_source, without_broken_cells
    from looplint.engine.suppress import filter_noqa
    from looplint.static import analyze_source

    bom = data.startswith(b"\xef\xbb\xbf")
    try:
        notebook = notebook_source(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, NotebookError) as error:
        message = f"cannot read notebook: {error}"
        return FixOutcome(data, [], [Finding(path, 1, 1, "LL000", message)])

    def verify(candidate: str) -> list[Finding]:
        findings = filter_noqa(analyze_source(candidate, path), candidate)
        try:
            notebook.rebuild(candidate)
        except NotebookError as error:  # counts as a failed check, like a syntax error
            findings.append(Finding(path, 1, 1, "LL000", f"cannot write the fix back: {error}"))
        return findings

    findings = filter_noqa(analyze_source(notebook.source, path), notebook.source)
    broken: list[Finding] = []
    if any(f.code == "LL000" for f in findings):
        # Cells that do not parse are left as they are; the others are fixed.
        notebook, broken = without_broken_cells(notebook, path)
        findings = filter_noqa(analyze_source(notebook.source, path), notebook.source)
    result = apply_fixes(notebook.source, findings, verify, _fixable(findings, unsafe, enabled))
    fixed = notebook_source(notebook.rebuild(result.source))
    if broken:
        fixed, _ = without_broken_cells(fixed, path)
    remaining = broken + [fixed.locate_finding(f) for f in result.findings if enabled(f.code)]
    if result.source == notebook.source:
        return FixOutcome(data, [], remaining)
    new_data = (b"\xef\xbb\xbf" if bom else b"") + fixed.notebook_text.encode("utf-8")
    return FixOutcome(new_data, [notebook.locate_finding(f) for f in result.applied], remaining)


def _fixable(
    findings: list[Finding], unsafe: bool, enabled: Callable[[str], bool]
) -> Callable[[Finding], bool]:
    """Which findings' fixes to apply; none at all when the text does not parse."""
    if any(f.code == "LL000" for f in findings):
        return lambda f: False
    return lambda f: f.fix is not None and (f.fix.safe or unsafe) and enabled(f.code)


def apply_fixes(
    source: str,
    findings: list[Finding],
    verify: Verify,
    select: Callable[[Finding], bool] | None = None,
) -> FixResult:
    """Apply the fixes of `findings` (the findings of `source`) that `select` accepts and verify.

    `verify(text)` returns every finding of a text (LL000 when it does not parse); `select`
    defaults to every finding with a fix. Fixes are applied in batches of non-overlapping edits; a
    batch that fails its checks is retried one fix at a time, and a fix that fails alone is
    rejected. After each change the text is analyzed again and what is left is tried again, until
    a whole pass changes nothing, so fixing the result again changes nothing either. This ends:
    every applied fix lowers the number of findings.
    """
    select = select or _has_fix
    result = FixResult(source, findings=list(findings))
    while True:
        step = _fix_pass(result.source, result.findings, verify, select)
        if not step.applied:
            return FixResult(result.source, result.applied, step.rejected, step.findings)
        result = FixResult(step.source, result.applied + step.applied, [], step.findings)


def _fix_pass(
    text: str, current: list[Finding], verify: Verify, select: Callable[[Finding], bool]
) -> FixResult:
    """Rounds of batches until every fix left has been rejected against the current text."""
    applied: list[Finding] = []
    rejected: list[Finding] = []
    while True:
        tried = {_fix_key(f) for f in rejected}
        candidates = [f for f in current if select(f) and _fix_key(f) not in tried]
        rejected.extend(f for f in candidates if not _is_valid(f))
        candidates = [f for f in candidates if _is_valid(f)]
        if not candidates:
            return FixResult(text, applied, rejected, current)
        batch = _non_overlapping(candidates)
        outcome = _try(text, batch, current, verify)
        if outcome is None and len(batch) > 1:
            for finding in batch:
                outcome = _try(text, [finding], current, verify)
                if outcome is not None:
                    batch = [finding]
                    break
        if outcome is None:
            rejected.extend(batch)
            continue
        text, current = outcome
        applied.extend(batch)
        rejected = []  # the text changed: what failed before may work now


def _has_fix(finding: Finding) -> bool:
    return finding.fix is not None


def _try(
    text: str, batch: list[Finding], before: list[Finding], verify: Verify
) -> tuple[str, list[Finding]] | None:
    """Apply `batch`; return the new text and its findings if every check passes, else None."""
    edits = [edit for finding in batch for edit in finding.fix.edits]  # type: ignore[union-attr]
    candidate = _apply_edits(text, edits)
    if candidate == text:
        return None
    after = verify(candidate)
    if any(f.code == "LL000" for f in after):
        return None
    # Each fixed finding must be gone and nothing may appear: for every (code, message), the
    # count after the fix is at most the count before minus the findings fixed.
    budget = Counter(_identity(f) for f in before)
    budget.subtract(_identity(f) for f in batch)
    if any(count > budget[key] for key, count in Counter(map(_identity, after)).items()):
        return None
    return candidate, after


def _apply_edits(text: str, edits: list[Edit]) -> str:
    for edit in sorted(edits, key=lambda e: (e.start, e.end), reverse=True):
        text = text[: edit.start] + edit.text + text[edit.end :]
    return text


def _non_overlapping(findings: list[Finding]) -> list[Finding]:
    """A first-come batch of fixes whose edits neither overlap nor touch each other's edits."""
    batch: list[Finding] = []
    taken: list[Edit] = []
    for finding in sorted(findings, key=lambda f: min(e.start for e in f.fix.edits)):  # type: ignore[union-attr]
        edits = finding.fix.edits  # type: ignore[union-attr]
        if any(a.start <= b.end and b.start <= a.end for a in edits for b in taken):
            continue
        batch.append(finding)
        taken.extend(edits)
    return batch


def _is_valid(finding: Finding) -> bool:
    """A fix whose own edits are well-formed and do not overlap one another."""
    edits = sorted(finding.fix.edits, key=lambda e: (e.start, e.end))  # type: ignore[union-attr]
    if not edits or any(e.start < 0 or e.end < e.start for e in edits):
        return False
    # Two insertions at one offset have no defined order.
    return all(a.end <= b.start and not a.start == a.end == b.start == b.end for a, b in pairwise(edits))


def _identity(finding: Finding) -> tuple[str, str]:
    """Findings are compared by code and message: a fix elsewhere shifts their lines."""
    return finding.code, finding.message


def _fix_key(finding: Finding) -> tuple:
    fix = finding.fix
    return (
        *_identity(finding),
        fix.message if fix else "",
        tuple(e.text for e in fix.edits) if fix else (),
    )


def decode_source(data: bytes) -> tuple[str, str]:
    """Decode a Python file as the interpreter would (BOM, PEP 263 cookie); return text, codec.

    Encoding the text again with the codec gives back the same bytes, BOM included.
    Raises ValueError with a readable message when the bytes cannot be decoded.
    """
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding), encoding
    except (SyntaxError, LookupError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot decode the file: {error}") from None


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace the file's content at once (temporary file + rename), keeping its permissions.

    A symbolic link stays a link: the file it points to is the one replaced.
    """
    target = Path(os.path.realpath(path))
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = None
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
