"""Call sites: the first frame of the user's own code on the current stack."""

from __future__ import annotations

import gc
import os
import sys
import sysconfig
import warnings
from typing import Any, NamedTuple


class Site(NamedTuple):
    """A place in the user's code (raw filename as Python knows it, 1-based line). A tuple: made,
    hashed and compared at C speed on every step."""

    filename: str
    line: int

    def display(self) -> str:
        return f"{display_path(self.filename)}:{self.line}"


def _library_dirs() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(core dirs: torch, tensorboard, looplint, the standard library; installed packages)."""
    import torch

    import looplint

    core = {os.path.dirname(torch.__file__), os.path.dirname(looplint.__file__)}
    try:
        import tensorboard

        core.add(os.path.dirname(tensorboard.__file__))
    except ImportError:
        pass
    paths = sysconfig.get_paths()
    core.update(paths[key] for key in ("stdlib", "platstdlib") if paths.get(key))
    installed = {paths[key] for key in ("purelib", "platlib") if paths.get(key)}
    return (
        tuple(os.path.realpath(d) + os.sep for d in core),
        tuple(os.path.realpath(d) + os.sep for d in installed),
    )


_LIBRARY_DIRS: tuple[tuple[str, ...], tuple[str, ...]] | None = None
_kind_cache: dict[str, int] = {}
_USER, _INSTALLED, _CORE = 0, 1, 2


def _kind(filename: str) -> int:
    kind = _kind_cache.get(filename)
    if kind is None:
        global _LIBRARY_DIRS
        if _LIBRARY_DIRS is None:
            _LIBRARY_DIRS = _library_dirs()
        core, installed = _LIBRARY_DIRS
        if filename.startswith(("<frozen", "<built-in")):
            kind = _CORE
        elif filename.startswith("<"):
            kind = _USER  # exec'd code, notebook cells
        else:
            real = os.path.realpath(filename)
            kind = _CORE if real.startswith(core) else _INSTALLED if real.startswith(installed) else _USER
        _kind_cache[filename] = kind
    return kind


def _is_internal(filename: str) -> bool:
    return _kind(filename) != _USER


def user_site(skip: int = 1) -> Site | None:
    """The innermost frame of the user's code: outside torch, tensorboard, looplint, the standard
    library and installed packages (or, when the whole stack is library code, the innermost frame
    of an installed package that is not torch, e.g. a training framework)."""
    frame = sys._getframe(skip)
    fallback = None
    kinds = _kind_cache
    while frame is not None:
        filename = frame.f_code.co_filename
        kind = kinds.get(filename)
        if kind is None:
            kind = _kind(filename)
        if kind == _USER:
            return _site(filename, frame.f_lineno)
        if kind == _INSTALLED and fallback is None:
            fallback = _site(filename, frame.f_lineno)
        frame = frame.f_back
    return fallback


def user_names(skip: int = 1) -> dict[int, str]:
    """Names the user's innermost frame gives its objects (locals, then its module's globals),
    by object id: how a report can call a module `decoder` rather than `Sequential`."""
    frame = sys._getframe(skip)
    while frame is not None and _kind(frame.f_code.co_filename) != _USER:
        frame = frame.f_back
    if frame is None:
        return {}
    names: dict[int, str] = {}
    for namespace in (frame.f_globals, frame.f_locals):
        names.update((id(value), name) for name, value in list(namespace.items()) if not name.startswith("_"))
    return names


def modules_holding(params: list[Any]) -> list[Any]:
    """The outermost live `torch.nn.Module`s that hold any of `params` (a scan of the objects the
    garbage collector tracks: slow, for a report, once)."""
    import torch

    wanted = {id(p) for p in params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated torch attributes warn when looked at
        modules = [obj for obj in gc.get_objects() if isinstance(obj, torch.nn.Module)]
    children = {id(child) for module in modules for child in module.children()}
    return [
        module
        for module in modules
        if id(module) not in children and any(id(p) in wanted for p in module.parameters())
    ]


_site_cache: dict[str, dict[int, Site]] = {}


def _site(filename: str, line: int) -> Site:
    """One Site object per place: a step loop asks for the same few sites again and again."""
    lines = _site_cache.get(filename)
    if lines is None:
        lines = _site_cache[filename] = {}
    site = lines.get(line)
    if site is None:
        site = lines[line] = Site(filename, line)
    return site


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
