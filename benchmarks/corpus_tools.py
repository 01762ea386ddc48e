"""What benchmarks/sweep.py and benchmarks/mutation_recall.py share: the corpus manifest
(benchmarks/corpus.toml), its fixed tune/held-out split, and one looplint run over a project.

The corpus itself lives outside the repository: `<corpus>/<owner>__<name>/` holds each
repository of the manifest, checked out at its commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from looplint.engine import lint_paths
from looplint.engine.config import load_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

MANIFEST = Path(__file__).resolve().with_name("corpus.toml")
SPLITS = ("tune", "held-out", "all")


@dataclass(frozen=True)
class Repository:
    name: str  # owner/name on GitHub
    commit: str
    split: str  # "tune" or "held-out"

    @property
    def directory(self) -> str:
        return self.name.replace("/", "__", 1)


def fail(message: str) -> NoReturn:
    """Stop with a one-line message and exit status 2, as looplint does for bad input."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


def split_of(name: str) -> str:
    """The split rule, fixed before any result was looked at: the parity of sha256(name)."""
    return "tune" if hashlib.sha256(name.encode()).digest()[0] % 2 == 0 else "held-out"


def load_manifest(path: Path = MANIFEST) -> list[Repository]:
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    repositories = [Repository(r["name"], r["commit"], r["split"]) for r in data["repository"]]
    for repository in repositories:
        if repository.split != split_of(repository.name):
            rule = split_of(repository.name)
            fail(f"{path}: {repository.name} is in split {repository.split!r}, the rule says {rule!r}")
    return sorted(repositories, key=lambda r: r.name.lower())


def select(corpus: Path, split: str, only: list[str] | None = None) -> list[Repository]:
    """The manifest's repositories of `split` ("all" for both), optionally only those named.

    Exits with a one-line message when the corpus directory is missing."""
    if not corpus.is_dir():
        fail(f"corpus directory not found: {corpus}")
    chosen = [r for r in load_manifest() if split in ("all", r.split)]
    if only:
        chosen = [r for r in chosen if r.name in only or r.directory in only]
        unknown = set(only) - {r.name for r in chosen} - {r.directory for r in chosen}
        if unknown:
            fail(f"not in the manifest (split {split}): {', '.join(sorted(unknown))}")
    return chosen


@dataclass
class Run:
    """One looplint run over a project: findings as plain dicts, paths relative to the project."""

    findings: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # internal errors and unreadable files
    crash: str | None = None  # an exception that escaped looplint itself
    files: int = 0
    seconds: float = 0.0


def run_looplint(root: Path, paths: list[Path] | None = None, jobs: int = 1) -> Run:
    """Lint `paths` (default: all of `root`) in one run, as `looplint --no-cache` would from
    `root`, so analysis across the files of the project applies."""
    run = Run()
    start = time.perf_counter()
    cwd = os.getcwd()
    try:
        os.chdir(root)  # findings then carry paths relative to the project, as on the command line
        targets = [str(path.relative_to(root)) for path in paths] if paths is not None else ["."]
        result = lint_paths(targets, load_config("."), jobs=jobs, use_cache=False)
    except Exception as error:  # noqa: BLE001 - a crash is a result to report, not to hide
        run.crash = f"{type(error).__name__}: {error}"
        return run
    finally:
        os.chdir(cwd)
        run.seconds = time.perf_counter() - start
    run.files = result.files
    run.errors = list(result.errors)
    for finding in result.findings:
        run.findings.append(
            {
                "path": os.path.normpath(finding.path),
                "cell": (finding.details or {}).get("cell"),
                "line": finding.line,
                "column": finding.column,
                "code": finding.code,
                "message": finding.message,
            }
        )
    return run


def looplint_version() -> str:
    """looplint's version, plus the last commit that changed the package when it is a git
    checkout ("-dirty" when the package has uncommitted changes)."""
    import looplint

    source = Path(looplint.__file__).resolve().parent
    try:
        commit = _git(source, "log", "-1", "--format=%h", "--", ".")
        if _git(source, "status", "--porcelain", "--", "."):
            commit += "-dirty"
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown commit"
    return f"{looplint.__version__} ({commit})"


def _git(directory: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(directory), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def source_lines(path: Path, cell: int | None = None) -> list[str]:
    """The lines of a Python file, or of one cell of a notebook (cells counted from 1, markdown
    included, as looplint reports them); [] when unreadable."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        if cell is None:
            return text.splitlines()
        source = json.loads(text)["cells"][cell - 1]["source"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return []
    return ("".join(source) if isinstance(source, list) else source).splitlines()
