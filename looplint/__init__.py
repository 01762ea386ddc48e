"""looplint: find the silent bugs of hand-written PyTorch training loops.

Importing looplint stays light (no torch, no pytest); the runtime side loads torch on first use.
"""

from __future__ import annotations

from typing import Any

from looplint.findings import Edit, Finding, Fix, RuntimeFindingsError

__version__ = "0.1.0"
__all__ = [
    "Edit",
    "Finding",
    "Fix",
    "RuntimeFindingsError",
    "__version__",
    "lint_source",
    "lr_find",
    "watch",
]


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext looplint`: check each notebook cell before it runs (see looplint.adapters.ipython)."""
    from looplint.adapters.ipython import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext looplint`: stop checking cells."""
    from looplint.adapters.ipython import unload

    unload(ipython)


def lint_source(source: str, path: str = "<stdin>") -> list[Finding]:
    """Statically analyze one file's text; returns findings before noqa/config filtering."""
    from looplint.static import analyze_source

    return analyze_source(source, path)


def watch(*args: Any, **kwargs: Any) -> Any:
    """Instrument a training loop at run time; see looplint.runtime.watch."""
    from looplint.runtime import watch as runtime_watch

    return runtime_watch(*args, **kwargs)


def lr_find(*args: Any, **kwargs: Any) -> Any:
    """Learning-rate range test; see looplint.lrfind.lr_find."""
    from looplint.lrfind import lr_find as run_lr_find

    return run_lr_find(*args, **kwargs)
