"""`[tool.looplint]` in pyproject.toml: which rules run, on which files."""

from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pathspec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

# Directories never worth linting: version control, caches, virtual environments, build output.
DEFAULT_EXCLUDE: tuple[str, ...] = (
    ".bzr",
    ".direnv",
    ".eggs",
    ".git",
    ".hg",
    ".ipynb_checkpoints",
    ".looplint_cache",
    ".mypy_cache",
    ".nox",
    ".pytest_cache",
    ".ruff_cache",
    ".svn",
    ".tox",
    ".venv",
    "__pycache__",
    "__pypackages__",
    "_build",
    "build",
    "dist",
    "node_modules",
    "site-packages",
    "venv",
    "*.egg-info",
)

_SELECTOR = re.compile(r"^(ALL|LL\d{0,3})$")
_KEYS = {"select", "ignore", "extend-select", "per-file-ignores", "exclude", "extend-exclude"}


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


def parse_selectors(values: list[str] | tuple[str, ...], where: str) -> tuple[str, ...]:
    """Normalize rule selectors (`LL101`, `ll2`, `LL`, `ALL`) and reject malformed ones."""
    selectors = []
    for value in values:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected rule codes as strings, got {value!r}")
        selector = value.strip().upper()
        if not _SELECTOR.match(selector):
            raise ConfigError(
                f"{where}: {value!r} is not a rule code or prefix (expected e.g. LL101, LL2 or ALL)"
            )
        if selector != "ALL" and not any(code.startswith(selector) for code in _known_codes()):
            raise ConfigError(f"{where}: {value!r} matches no rule; run `looplint rule` for the list")
        selectors.append("LL" if selector == "ALL" else selector)
    return tuple(selectors)


def _known_codes() -> set[str]:
    from looplint.catalog import RULES

    # LL000 (syntax error) exists even while the catalog is being written.
    return {"LL000", *RULES}


def _longest_match(code: str, selectors: tuple[str, ...]) -> int:
    return max((len(s) for s in selectors if code.startswith(s)), default=-1)


@dataclass(frozen=True)
class Config:
    """Effective settings. Paths in globs are matched relative to `root` (gitignore syntax)."""

    root: Path = field(default_factory=Path.cwd)
    source: Path | None = None  # the pyproject.toml it came from, if any
    select: tuple[str, ...] = ("LL",)
    extend_select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    per_file_ignores: tuple[tuple[str, tuple[str, ...]], ...] = ()
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    extend_exclude: tuple[str, ...] = ()
    # Set when `exclude` came from the user rather than the defaults.
    user_exclude: bool = False

    def is_enabled(self, code: str, path: str = "") -> bool:
        """Whether findings of `code` in `path` are reported.

        Like ruff, the most specific selector wins and `ignore` wins a tie, so `select = ["LL2"]`
        with `ignore = ["LL201"]` keeps LL202 and drops LL201. LL000 (the file does not parse)
        is reported unless it is ignored explicitly: narrowing `select` must not hide broken files.
        """
        code = code.upper()
        ignored = _longest_match(code, self.ignore)
        if path:
            for spec, codes in self._per_file_specs:
                if spec.match_file(self.relative(path)):
                    ignored = max(ignored, _longest_match(code, codes))
        if code == "LL000":
            return ignored < 0
        selected = _longest_match(code, self.select + self.extend_select)
        return selected > ignored

    def is_excluded(self, path: str | Path, *, explicit: bool = False, is_dir: bool | None = None) -> bool:
        """Whether `path` is left out. Paths named on the command line (`explicit`) are only
        left out by the user's own patterns, not by the built-in list of build directories."""
        spec = self._user_exclude_spec if explicit else self._exclude_spec
        if spec is None:
            return False
        relative = self.relative(path)
        if is_dir if is_dir is not None else Path(path).is_dir():
            relative += "/"
        return spec.match_file(relative)

    def relative(self, path: str | Path) -> str:
        """`path` relative to the project root in POSIX form (unchanged if outside it)."""
        absolute = Path(os.path.abspath(path))
        try:
            return absolute.relative_to(self.root).as_posix()
        except ValueError:
            return Path(path).as_posix()

    def fingerprint(self) -> str:
        """A short hash of everything that changes which findings a file yields."""
        payload = repr((self.select, self.extend_select, self.ignore, self.per_file_ignores))
        return hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()

    def with_cli(
        self,
        *,
        select: tuple[str, ...] | None = None,
        extend_select: tuple[str, ...] = (),
        ignore: tuple[str, ...] = (),
    ) -> Config:
        """Command-line selectors: --select replaces the configured set, the others add to it."""
        from dataclasses import replace

        return replace(
            self,
            select=self.select if select is None else select,
            extend_select=(self.extend_select if select is None else ()) + extend_select,
            ignore=self.ignore + ignore,
        )

    @cached_property
    def _per_file_specs(self) -> list[tuple[pathspec.PathSpec, tuple[str, ...]]]:
        return [(gitignore_spec([glob]), codes) for glob, codes in self.per_file_ignores]

    @cached_property
    def _exclude_spec(self) -> pathspec.PathSpec | None:
        return gitignore_spec([*self.exclude, *self.extend_exclude])

    @cached_property
    def _user_exclude_spec(self) -> pathspec.PathSpec | None:
        own = self.exclude if self.user_exclude else ()
        return gitignore_spec([*own, *self.extend_exclude])

    def __getstate__(self) -> dict[str, Any]:
        # Compiled specs are rebuilt on demand in worker processes.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


def gitignore_spec(lines: list[str]) -> pathspec.PathSpec | None:
    """Patterns with .gitignore semantics (`**`, `!negation`, `dir/`, anchoring), or None for
    none. pathspec is imported here because it costs more to import than a small lint run."""
    if not lines:
        return None
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(lines)


def find_pyproject(start: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The nearest pyproject.toml at or above `start` that has a [tool.looplint] table."""
    start = Path(os.path.abspath(start))
    directory = start if start.is_dir() else start.parent
    for candidate in (directory, *directory.parents):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file():
            table = _read_table(pyproject)
            if table is not None:
                return pyproject, table
    return None


def _read_table(pyproject: Path) -> dict[str, Any] | None:
    try:
        with open(pyproject, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"{pyproject}: cannot read: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{pyproject}: invalid TOML: {error}") from None
    table = data.get("tool", {}).get("looplint")
    if table is not None and not isinstance(table, dict):
        raise ConfigError(f"{pyproject}: [tool.looplint] must be a table")
    return table


def _project_root(start: Path) -> Path:
    """Where the cache lives when no configuration says: the nearest project marker, or cwd."""
    directory = start if start.is_dir() else start.parent
    for candidate in (directory, *directory.parents):
        if (candidate / "pyproject.toml").is_file() or (candidate / ".git").exists():
            return candidate
    return Path.cwd()


def load_config(start: str | Path, *, path: str | Path | None = None) -> Config:
    """Settings for linting at `start`: from `path` if given (a pyproject.toml), else from the
    nearest pyproject.toml with [tool.looplint] found walking up; defaults otherwise.

    Raises ConfigError for unreadable files, unknown keys and values of the wrong type.
    """
    if path is not None:
        pyproject = Path(os.path.abspath(path))
        if not pyproject.is_file():
            raise ConfigError(f"{path}: configuration file not found")
        table = _read_table(pyproject)
        if table is None:
            raise ConfigError(f"{path}: no [tool.looplint] table")
        found: tuple[Path, dict[str, Any]] | None = (pyproject, table)
    else:
        found = find_pyproject(start)
    if found is None:
        return Config(root=_project_root(Path(os.path.abspath(start))))
    pyproject, table = found
    return _from_table(pyproject, table)


def _from_table(pyproject: Path, table: dict[str, Any]) -> Config:
    where = f"{pyproject}: [tool.looplint]"
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")

    def string_list(key: str) -> list[str] | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{where}: {key} must be a list of strings, got {value!r}")
        return value

    per_file: list[tuple[str, tuple[str, ...]]] = []
    raw_per_file = table.get("per-file-ignores", {})
    if not isinstance(raw_per_file, dict):
        raise ConfigError(f"{where}: per-file-ignores must be a table of glob = [codes]")
    for glob, codes in raw_per_file.items():
        if not isinstance(codes, list):
            raise ConfigError(f"{where}: per-file-ignores.{glob!r} must be a list of codes")
        per_file.append((glob, parse_selectors(codes, f"{where} per-file-ignores.{glob!r}")))

    select = string_list("select")
    exclude = string_list("exclude")
    return Config(
        root=pyproject.parent,
        source=pyproject,
        select=parse_selectors(select, f"{where} select") if select is not None else ("LL",),
        extend_select=parse_selectors(string_list("extend-select") or [], f"{where} extend-select"),
        ignore=parse_selectors(string_list("ignore") or [], f"{where} ignore"),
        per_file_ignores=tuple(per_file),
        exclude=tuple(exclude) if exclude is not None else DEFAULT_EXCLUDE,
        extend_exclude=tuple(string_list("extend-exclude") or []),
        user_exclude=exclude is not None,
    )
