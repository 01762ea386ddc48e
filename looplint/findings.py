"""The one finding type shared by the static analyzer, the runtime hook and every report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Edit:
    """Replace source[start:end] (character offsets into the file's text) with `text`."""

    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Fix:
    """A proposed change. `safe` fixes are applied by --fix; the others need --unsafe-fixes."""

    message: str
    edits: tuple[Edit, ...]
    safe: bool = True


@dataclass(frozen=True, order=True)
class Finding:
    """One problem at one place. Lines are 1-based, columns 1-based (like ruff and editors)."""

    path: str
    line: int
    column: int
    code: str
    message: str = field(compare=False)
    # Where the span ends; None when only the line is known (most runtime findings).
    end_line: int | None = field(default=None, compare=False)
    end_column: int | None = field(default=None, compare=False)
    fix: Fix | None = field(default=None, compare=False)
    # "static" for the analyzer, "runtime" for what the hook observed.
    origin: str = field(default="static", compare=False)
    # A static finding that the runtime hook reproduced at the same place.
    confirmed: bool = field(default=False, compare=False)
    # Free-form evidence from the runtime side (counts, steps, call sites).
    details: dict[str, Any] | None = field(default=None, compare=False)

    def with_(self, **changes: Any) -> Finding:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.fix is not None:
            data["fix"] = {
                "message": self.fix.message,
                "safe": self.fix.safe,
                "edits": [asdict(edit) for edit in self.fix.edits],
            }
        return data


class RuntimeFindingsError(AssertionError):
    """Raised when a `watch(strict=True)` block ends with findings (an AssertionError, so a test
    that watches its training loop fails with the findings as its message)."""
