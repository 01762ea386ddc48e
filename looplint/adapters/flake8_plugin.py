"""`flake8 --select LL`: looplint's findings as a flake8 plugin (entry point `flake8.extension`).

The same engine, configuration (`[tool.looplint]`) and `# noqa` as `looplint` on the same file;
flake8 adds its own selection and `# noqa` on top. A file that does not parse is flake8's E999
(flake8 runs no plugin on it), not LL000.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import looplint
from looplint.engine.config import Config, load_config


@lru_cache(maxsize=64)
def _config(directory: str) -> Config:
    # flake8 creates one plugin per file; the project's configuration is read once per directory.
    return load_config(directory)


class Plugin:
    """A flake8 AST plugin: flake8 passes the file's name and lines; looplint lints their text."""

    name = "looplint"
    version = looplint.__version__

    def __init__(self, tree: ast.AST, filename: str, lines: list[str]) -> None:
        self.filename = filename
        self.lines = lines

    def run(self) -> Iterator[tuple[int, int, str, type[Any]]]:
        from looplint.engine import lint_text

        path = self.filename
        if path in ("stdin", "-", None):
            path = os.path.join(os.getcwd(), "stdin.py")
        config = _config(os.path.dirname(os.path.abspath(path)))
        for finding in lint_text("".join(self.lines), path, config):
            yield finding.line, finding.column - 1, f"{finding.code} {finding.message}", type(self)
