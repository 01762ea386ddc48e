"""The syntax check every file gets: CPython's parser, which is cheap and words errors well."""

from __future__ import annotations

import ast
import warnings

from looplint.findings import Finding

# Deeper trees are legal Python but make the CST parser crawl (minutes at a few thousand levels);
# real code stays far below (the deepest of 2,864 files from public training repositories: 29).
MAX_DEPTH = 200


def parse(source: str, path: str, flags: int = 0) -> ast.Module | Finding:
    """CPython's tree of the source, or the LL000 finding that says why there is none. `flags`:
    more compile flags (`ast.PyCF_ALLOW_TOP_LEVEL_AWAIT` for a notebook cell)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarnings are not ours to print
            # Not the real path: CPython would re-read the line from that file to place the error,
            # and the text parsed here (an editor's buffer, a notebook cell) is not that file.
            return compile(source, "<looplint>", "exec", ast.PyCF_ONLY_AST | flags, dont_inherit=True)
    except SyntaxError as error:
        return syntax_error(path, error.msg, error.lineno or 1, (error.offset or 1) - 1)
    except (RecursionError, MemoryError):
        return syntax_error(path, "too deeply nested to parse", 1, 0)
    except ValueError as error:  # null bytes
        return syntax_error(path, str(error), 1, 0)


def too_deep(source: str, tree: ast.AST) -> bool:
    """Whether the tree nests deeper than MAX_DEPTH.

    CPython caps brackets at 200 levels and indentation at 100, so what nests deeper is a chain on
    one long line (`a.b.b.b...`, `- - - x`): the tree is only measured when there is such a line.
    """
    if max(map(len, source.splitlines()), default=0) < MAX_DEPTH:
        return False
    level = [tree]
    for _ in range(MAX_DEPTH):
        level = [child for node in level for child in ast.iter_child_nodes(node)]
        if not level:
            return False
    return True


def syntax_error(path: str, message: str, line: int, column: int) -> Finding:
    """An LL000 finding; `column` is 0-based like the parsers'."""
    text = message.strip().splitlines()[0] if message.strip() else "invalid syntax"
    line = max(line, 1)
    return Finding(path, line, column + 1, "LL000", f"syntax error: {text}", line, column + 1)
