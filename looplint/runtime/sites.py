"""Call sites: the first frame of the user's own code on the current stack."""

from __future__ import annotations

import os
import sys
import sysconfig
from dataclasses import dataclass


@dataclass(frozen=True)
class Site:
    """A place in the user's code (raw filename as Python knows it, 1-based line)."""

    filename: str
    line: int

    def display(self) -> str:
        return f"{display_path(self.filename)}:{self.line}"


def _library_dirs() -> tuple[str, ...]:
    import torch

    import looplint

    dirs = {os.path.dirname(torch.__file__), os.path.dirname(looplint.__file__)}
    try:
        import tensorboard

        dirs.add(os.path.dirname(tensorboard.__file__))
    except ImportError:
        pass
    # Frames in the standard library and installed packages (runpy, accelerate, ...) are not the
    # user's call site either.
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.add(path)
    return tuple(os.path.realpath(d) + os.sep for d in dirs)


_LIBRARY_DIRS: tuple[str, ...] | None = None
_internal_cache: dict[str, bool] = {}


def _is_internal(filename: str) -> bool:
    internal = _internal_cache.get(filename)
    if internal is None:
        global _LIBRARY_DIRS
        if _LIBRARY_DIRS is None:
            _LIBRARY_DIRS = _library_dirs()
        if filename.startswith(("<frozen", "<built-in")):
            internal = True
        elif filename.startswith("<"):
            internal = False  # exec'd code, notebook cells
        else:
            internal = os.path.realpath(filename).startswith(_LIBRARY_DIRS)
        _internal_cache[filename] = internal
    return internal


def user_site(skip: int = 1) -> Site | None:
    """The innermost frame outside torch, tensorboard, looplint and installed libraries."""
    frame = sys._getframe(skip)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not _is_internal(filename):
            return Site(filename, frame.f_lineno)
        frame = frame.f_back
    return None


# Maps the filename Python runs to the path the user typed (set by `looplint run`).
_path_aliases: dict[str, str] = {}


def alias_path(real: str, shown: str) -> None:
    _path_aliases[os.path.realpath(real)] = shown


def display_path(filename: str) -> str:
    """The path to show for a code filename: as typed on the command line, else relative to cwd."""
    if filename.startswith("<"):
        return filename
    real = os.path.realpath(filename)
    if real in _path_aliases:
        return _path_aliases[real]
    cwd = os.path.realpath(os.getcwd()) + os.sep
    if real.startswith(cwd):
        return real[len(cwd) :]
    return filename
