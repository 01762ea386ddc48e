"""Per-file result cache in `.looplint_cache/` at the project root.

An entry is keyed by the file's bytes, its displayed path, the looplint code and the effective
rule selection; anything that does not match exactly, or does not load, is recomputed. Entries
are written atomically (temporary file + rename), so a concurrent or interrupted run leaves either
a whole entry or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import looplint
from looplint.findings import Edit, Finding, Fix

CACHE_DIR = ".looplint_cache"
# Bumped when the entry layout changes.
_LAYOUT = "2"


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Version plus the size and mtime of every module of the package, so an edited checkout
    (editable install) never reuses results of older rules."""
    package = Path(looplint.__file__).parent
    digest = hashlib.blake2b(f"{looplint.__version__}/{_LAYOUT}".encode(), digest_size=16)
    for module in sorted(package.rglob("*.py")):
        stat = module.stat()
        digest.update(f"{module.relative_to(package)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


class Cache:
    """Results of linting one file, stored under `root/.looplint_cache/`."""

    def __init__(self, root: str | Path, config_fingerprint: str) -> None:
        self.directory = Path(root) / CACHE_DIR
        self.entries = self.directory / "entries"
        self.salt = f"{code_fingerprint()}/{config_fingerprint}".encode()

    def key(self, path: str, data: bytes) -> str:
        """The key an entry must carry to be reused for `path` with content `data`."""
        digest = hashlib.blake2b(self.salt, digest_size=20)
        digest.update(path.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(data)
        return digest.hexdigest()

    def _entry(self, path: str) -> Path:
        name = hashlib.blake2b(os.path.abspath(path).encode("utf-8", "surrogateescape"))
        return self.entries / f"{name.hexdigest()[:32]}.json"

    def get(
        self, path: str, key: str, dependencies_hold: Callable[[dict], bool] | None = None
    ) -> list[Finding] | None:
        """The cached findings, or None when there is no valid entry for this exact key, or when
        what they depended on changed (a module the file imports now does something else, or an
        import now resolves elsewhere)."""
        try:
            with open(self._entry(path), encoding="utf-8") as handle:
                entry = json.load(handle)
            if entry["key"] != key:
                return None
            dependencies = entry["dependencies"]
            if (dependencies.get("summaries") or dependencies.get("imports")) and (
                dependencies_hold is None or not dependencies_hold(dependencies)
            ):
                return None
            return [_finding_from_dict(item) for item in entry["findings"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            # Missing, partial, corrupt or foreign: never trusted.
            return None

    def put(self, path: str, key: str, findings: list[Finding], dependencies: dict | None = None) -> None:
        """Store findings, with what they depend on besides the file (see Project.dependencies);
        a cache that cannot be written (read-only tree) is silently skipped."""
        entry = {
            "key": key,
            "findings": [finding.to_dict() for finding in findings],
            "dependencies": dependencies or {},
        }
        try:
            self._prepare()
            descriptor, temporary = tempfile.mkstemp(dir=self.entries, suffix=".tmp")
            try:
                with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                    json.dump(entry, handle)
                os.replace(temporary, self._entry(path))
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError:
            pass

    def _prepare(self) -> None:
        if self.entries.is_dir():
            return
        self.entries.mkdir(parents=True, exist_ok=True)
        # The cache is never meant to be committed.
        (self.directory / ".gitignore").write_text("*\n", encoding="utf-8")


def _finding_from_dict(data: dict[str, Any]) -> Finding:
    fix = data.get("fix")
    if fix is not None:
        fix = Fix(
            message=fix["message"],
            edits=tuple(Edit(**edit) for edit in fix["edits"]),
            safe=bool(fix["safe"]),
        )
    finding = Finding(**{**data, "fix": fix})
    # Types are checked because a hand-edited entry must not break sorting or rendering.
    if not (
        isinstance(finding.path, str)
        and isinstance(finding.code, str)
        and isinstance(finding.message, str)
        and all(isinstance(value, int) for value in (finding.line, finding.column))
        and all(value is None or isinstance(value, int) for value in (finding.end_line, finding.end_column))
    ):
        raise TypeError("malformed cache entry")
    return finding
