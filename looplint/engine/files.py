"""Which files a run lints: the paths named, directories walked recursively, minus what
.gitignore files, virtual environments and the configured excludes leave out."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pathspec

from looplint.engine.config import Config, gitignore_spec

PYTHON_SUFFIX = ".py"
NOTEBOOK_SUFFIX = ".ipynb"


@dataclass
class Discovery:
    """The files to lint (display paths, sorted, each once) and the paths that could not be read."""

    files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def describe_os_error(error: OSError) -> str:
    """A one-line reason for an I/O error, without Python's exception syntax."""
    if error.errno == 40:  # ELOOP
        return "symbolic link loop"
    return error.strerror or str(error)


def discover(paths: list[str], config: Config, *, notebooks: bool = True) -> Discovery:
    """Expand `paths` into the files to lint. Missing or unreadable paths become error lines."""
    result = Discovery()
    seen: set[str] = set()
    suffixes = (PYTHON_SUFFIX, NOTEBOOK_SUFFIX) if notebooks else (PYTHON_SUFFIX,)

    def add(display: str) -> None:
        key = os.path.abspath(display)
        if key not in seen:
            seen.add(key)
            result.files.append(display)

    for raw in paths:
        display = os.path.normpath(raw)
        try:
            is_dir = os.path.isdir(display)
            os.stat(display)
        except OSError as error:
            result.errors.append(f"{raw}: {describe_os_error(error)}")
            continue
        if config.is_excluded(display, explicit=True, is_dir=is_dir):
            continue
        if is_dir:
            walker = _Walker(config, suffixes, result.errors)
            walker.walk(display, os.path.abspath(display), _ancestor_ignores(display, config))
            for found in walker.found:
                add(found)
        else:
            add(display)
    result.files.sort()
    return result


# A .gitignore's patterns, anchored at the absolute directory it lives in.
_Ignore = tuple[str, "pathspec.PathSpec"]


def _read_gitignore(directory: str) -> _Ignore | None:
    try:
        with open(os.path.join(directory, ".gitignore"), encoding="utf-8", errors="replace") as f:
            spec = gitignore_spec(f.read().splitlines())
    except OSError:
        return None
    return None if spec is None else (directory, spec)


def _ancestor_ignores(top: str, config: Config) -> list[_Ignore]:
    """The .gitignore files above `top` that still apply to it: up to the repository root,
    or up to the project root when there is no repository."""
    top_abs = Path(os.path.abspath(top))
    chain = [top_abs]
    for parent in top_abs.parents:
        if (chain[-1] / ".git").exists() or chain[-1] == config.root:
            break
        chain.append(parent)
    if not ((chain[-1] / ".git").exists() or chain[-1] == config.root):
        chain = [top_abs]
    ignores = [_read_gitignore(str(directory)) for directory in reversed(chain[1:])]
    return [ignore for ignore in ignores if ignore is not None]


def _is_ignored(path_abs: str, is_dir: bool, ignores: list[_Ignore]) -> bool:
    # The deepest .gitignore with a matching pattern decides (so `!keep.py` can re-include).
    verdict = False
    for base, spec in ignores:
        relative = path_abs[len(base) + 1 :]
        if is_dir:
            relative += "/"
        include = spec.check_file(relative).include
        if include is not None:
            verdict = include
    return verdict


def _is_environment(directory: str) -> bool:
    """Virtual environments and conda environments, whatever they are called."""
    return os.path.exists(os.path.join(directory, "pyvenv.cfg")) or os.path.isdir(
        os.path.join(directory, "conda-meta")
    )


class _Walker:
    def __init__(self, config: Config, suffixes: tuple[str, ...], errors: list[str]) -> None:
        self.config = config
        self.suffixes = suffixes
        self.errors = errors
        self.found: list[str] = []

    def walk(self, display: str, absolute: str, ignores: list[_Ignore]) -> None:
        try:
            entries = sorted(os.scandir(absolute), key=lambda entry: entry.name)
        except OSError as error:
            self.errors.append(f"{display}: {describe_os_error(error)}")
            return
        own = _read_gitignore(absolute) if any(e.name == ".gitignore" for e in entries) else None
        if own is not None:
            ignores = [*ignores, own]
        for entry in entries:
            child_display = entry.name if display == "." else os.path.join(display, entry.name)
            try:
                # Symlinked directories are not followed: that is how a link loop cannot hang us.
                is_dir = entry.is_dir(follow_symlinks=False)
                if entry.is_symlink() and not is_dir and entry.is_dir():
                    continue
            except OSError:
                is_dir = False
            if not is_dir and not entry.name.endswith(self.suffixes):
                continue
            if _is_ignored(entry.path, is_dir, ignores):
                continue
            if self.config.is_excluded(child_display, is_dir=is_dir):
                continue
            if is_dir:
                if not _is_environment(entry.path):
                    self.walk(child_display, entry.path, ignores)
            else:
                self.found.append(child_display)
