"""Lint files: read and decode them, analyze, apply `# noqa` and the configuration, cache, and
spread the work over processes. Bad input becomes an LL000 finding or a one-line error, never a
traceback."""

from __future__ import annotations

import contextlib
import gc
import io
import os
import tokenize
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

from looplint.engine.cache import CACHE_DIR, Cache
from looplint.engine.config import Config, load_config
from looplint.engine.files import NOTEBOOK_SUFFIX, describe_os_error, discover
from looplint.engine.suppress import filter_noqa
from looplint.findings import Finding
from looplint.static import Project, analyze_source

# Below this many files to analyze, starting worker processes costs more than it saves.
MIN_FILES_FOR_POOL = 16


class FileError(Exception):
    """A file could not be linted at all (I/O error); the message is one line with the path."""


@dataclass
class LintResult:
    """Findings sorted by path, (notebook cell,) line, column; errors are one-line messages."""

    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    files: int = 0
    cached: int = 0


def default_jobs() -> int:
    """The CPUs this process may run on (respects taskset/cgroup affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def notebooks_supported() -> bool:
    """Whether the notebook reader is installed in this build."""
    try:
        import looplint.engine.notebook  # noqa: F401
    except ImportError:
        return False
    return True


def sort_key(finding: Finding) -> tuple:
    """Report order: path, notebook cell, line, column, code."""
    cell = (finding.details or {}).get("cell", 0)
    return (finding.path, cell, finding.line, finding.column, finding.code, finding.message)


def _syntax_error(path: str, line: int, column: int, message: str) -> Finding:
    line, column = max(line, 1), max(column, 1)
    return Finding(path, line, column, "LL000", message, line, column)


def decode_source(data: bytes, path: str) -> str | Finding:
    """The text of a Python file, honoring a BOM and a PEP 263 coding cookie; an LL000 finding
    when the bytes are not text in the declared encoding."""
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        return _syntax_error(path, line, 1, "file contains a null byte; is it a binary file?")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as error:
        return _syntax_error(path, error.lineno or 1, 1, f"syntax error: {error.msg}")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        byte = data[error.start]
        return _syntax_error(
            path,
            line,
            1,
            f"cannot decode byte 0x{byte:02x} as {encoding}; save the file as UTF-8 "
            "or declare its encoding with a '# -*- coding: ... -*-' line",
        )


def project_for(config: Config, use_cache: bool = True) -> Project:
    """The project a run analyzes: imports resolve among the files under the configuration's
    root (and next to each file); module summaries are cached beside the results."""
    return Project(config.root, Path(config.root) / CACHE_DIR if use_cache else None)


def lint_bytes(
    data: bytes, path: str, config: Config | None = None, project: Project | None = None
) -> list[Finding]:
    """Findings for one file's content: decoded, analyzed, then filtered by `# noqa` and config.

    `path` is what findings show and what per-file-ignores match; its content is `data`, but the
    modules it imports are read from disk, as the project (by default: the configuration's
    root) finds them.
    """
    config = config or Config()
    if project is None:
        project = project_for(config, use_cache=False)
    try:
        if path.endswith(NOTEBOOK_SUFFIX):
            findings = _lint_notebook(data, path, project)
        else:
            source = decode_source(data, path)
            if isinstance(source, Finding):
                findings = [source]
            else:
                findings = filter_noqa(analyze_source(source, path, project), source)
    except FileError:
        raise
    except Exception as error:  # a bug in a rule must not hide the other files' results
        raise FileError(
            f"{path}: internal error while analyzing ({type(error).__name__}: {error}); "
            "please report it with this file"
        ) from error
    return sorted((finding for finding in findings if config.is_enabled(finding.code, path)), key=sort_key)


def lint_text(
    text: str, path: str | Path, config: Config | None = None, project: Project | None = None
) -> list[Finding]:
    """Findings for text held in memory (an editor's unsaved buffer, a notebook cell) as if it
    were the content of the file `path`: the same analysis, `# noqa` and configuration as a run
    over that file on disk. `path` should be the document's real path, so that the configuration
    and the project around it are found; the file itself is not read. A path ending in `.ipynb`
    takes the notebook's JSON text.
    """
    path = str(path)
    if config is None:
        config = load_config(path)
    return lint_bytes(_encode(text, path), path, config, project)


def _encode(text: str, path: str) -> bytes:
    """The bytes that saving `text` would write: in the encoding its coding cookie declares."""
    data = text.encode("utf-8", "surrogatepass")
    if path.endswith(NOTEBOOK_SUFFIX):
        return data
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:
        return data  # an unknown or malformed cookie: decoding reports it as LL000
    if encoding in ("utf-8", "utf-8-sig"):
        return data
    try:
        return text.encode(encoding)
    except (LookupError, UnicodeEncodeError):
        return data  # decoding these bytes with the declared codec reports where it fails


def _lint_notebook(data: bytes, path: str, project: Project) -> list[Finding]:
    try:
        from looplint.engine.notebook import NotebookError, notebook_source, without_broken_cells
    except ImportError:
        raise FileError(f"{path}: notebook support is not available in this installation") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return [_syntax_error(path, 1, 1, f"invalid notebook: not UTF-8 JSON ({error.reason})")]
    try:
        notebook = notebook_source(text)
    except NotebookError as error:
        return [_syntax_error(path, 1, 1, f"invalid notebook: {error}")]
    findings = analyze_source(notebook.source, path, project)
    broken: list[Finding] = []
    if any(finding.code == "LL000" for finding in findings):
        notebook, broken = without_broken_cells(notebook, path)
        findings = analyze_source(notebook.source, path, project)
    findings = filter_noqa(findings, notebook.source)
    return broken + [notebook.locate_finding(finding) for finding in findings]


def read_bytes(path: str) -> bytes:
    """The file's bytes; FileError with a one-line reason when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise FileError(f"{path}: {describe_os_error(error)}") from None


def lint_file(path: str | Path, config: Config | None = None) -> list[Finding]:
    """Findings for one file on disk (FileError when it cannot be read)."""
    path = str(path)
    if config is None:
        config = load_config(path)
    return lint_bytes(read_bytes(path), path, config)


# (findings, error) for one file; exactly one of them is meaningful.
_Outcome = tuple[list[Finding], str | None]


@contextlib.contextmanager
def _few_collections():
    """Run with the cyclic garbage collector's thresholds raised. A run builds millions of small
    objects (syntax trees, the models built on them) that live until it ends; with the default
    thresholds every older-generation collection walks all of them again, which cost a cold run
    over a project a third of its time. What the run leaves is collected once, after it."""
    old = gc.get_threshold()
    gc.set_threshold(100_000, 1_000, 1_000)
    try:
        yield
    finally:
        gc.set_threshold(*old)


@_few_collections()
def _lint_batch(paths: Sequence[str], config: Config, use_cache: bool) -> list[_Outcome]:
    """Lint files already ordered by their imports (by `_run`)."""
    cache = Cache(config.root, config.fingerprint()) if use_cache else None
    project = project_for(config, use_cache)
    outcomes: list[_Outcome] = []
    for path in paths:
        project.start()
        try:
            data = read_bytes(path)
            findings = lint_bytes(data, path, config, project)
        except FileError as error:
            outcomes.append(([], str(error)))
            continue
        if cache is not None:
            cache.put(path, cache.key(path, data), findings, project.dependencies(path))
        outcomes.append((findings, None))
    return outcomes


@_few_collections()
def lint_paths(
    paths: Iterable[str | Path],
    config: Config | None = None,
    *,
    jobs: int | None = None,
    use_cache: bool = True,
) -> LintResult:
    """Lint files and directories (walked recursively, honoring .gitignore and excludes)."""
    paths = [str(path) for path in paths]
    if config is None:
        config = load_config(paths[0] if paths else ".")
    discovery = discover(paths, config, notebooks=notebooks_supported())
    result = LintResult(errors=list(discovery.errors), files=len(discovery.files))

    # Cache look-ups happen here: a warm run never pays for starting workers.
    pending = discovery.files
    if use_cache:
        cache = Cache(config.root, config.fingerprint())
        project = project_for(config)  # checks that imported modules kept their summaries
        pending = []
        for path in discovery.files:
            try:
                data = read_bytes(path)
            except FileError as error:
                result.errors.append(str(error))
                continue
            cached = cache.get(path, cache.key(path, data), project.dependencies_hold)
            if cached is None:
                pending.append(path)
            else:
                result.findings.extend(cached)
                result.cached += 1

    for findings, error in _run(pending, config, use_cache, jobs or default_jobs(), result):
        if error is None:
            result.findings.extend(findings)
        else:
            result.errors.append(error)
    result.findings.sort(key=sort_key)
    result.errors.sort()
    return result


def _run(paths: list[str], config: Config, use_cache: bool, jobs: int, result: LintResult) -> list[_Outcome]:
    # Modules that other files import go first, so their summaries are ready when needed.
    paths = project_for(config, use_cache=False).order_by_imports(paths)
    if jobs <= 1 or len(paths) < MIN_FILES_FOR_POOL:
        return _lint_batch(paths, config, use_cache)
    # Contiguous batches keep the inter-process traffic small; several per worker balance load.
    size = max(1, len(paths) // (jobs * 4))
    batches = [paths[start : start + size] for start in range(0, len(paths), size)]
    outcomes: list[_Outcome] = []
    try:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for batch in pool.map(_lint_batch, batches, repeat(config), repeat(use_cache)):
                outcomes.extend(batch)
    except BrokenProcessPool:
        result.errors.append("a worker process died; rerun with --jobs 1 to find the file")
    return outcomes
