"""pytest integration, registered through the `pytest11` entry point.

* `pytest --looplint` adds one lint item per matching file (ini `looplint_globs`, default `*.py`).
  The item fails with the findings as `path:line:col: CODE message`. A file that passed is skipped
  on later runs until it, looplint or the configuration changes (kept in pytest's cache).
* `@pytest.mark.loop_hygiene(accumulation_steps=4)` or the `looplint_watch` fixture run the test
  body under `looplint.watch()` and fail the test with the runtime findings.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any

import pytest

import looplint
from looplint.findings import Finding

CACHE_KEY = "looplint/passed"
WATCH_MARKER = "loop_hygiene"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("looplint", "training-loop linting")
    group.addoption(
        "--looplint",
        action="store_true",
        default=False,
        help="lint the training loops of the collected files with looplint",
    )
    parser.addini(
        "looplint_globs",
        type="args",
        default=["*.py"],
        help="file patterns linted by --looplint (default: *.py; add *.ipynb for notebooks)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "looplint: a looplint lint item (select with -m looplint)")
    config.addinivalue_line(
        "markers",
        f"{WATCH_MARKER}(accumulation_steps=None, ignore=(), grad_checks=True, "
        "writer_checks=True, health_checks=True): run the test body under looplint.watch() and "
        "fail on what it finds",
    )
    if config.getoption("looplint"):
        config.stash[_STATE] = _LintState(config)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    state = parent.config.stash.get(_STATE, None)
    if state is None or not state.wants(file_path):
        return None
    return LooplintFile.from_parent(parent, path=file_path)


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is not None:
        state.save()


class _LintState:
    """Per-session settings, configuration lookups, and the record of files that passed."""

    def __init__(self, config: pytest.Config) -> None:
        self.globs: list[str] = config.getini("looplint_globs")
        self.rootdir = Path(config.rootpath)
        self.invocation_dir = Path(config.invocation_params.dir)
        self.cache = getattr(config, "cache", None)  # absent with -p no:cacheprovider
        self.passed: dict[str, list[Any]] = self.cache.get(CACHE_KEY, {}) if self.cache else {}
        self.newly_passed: dict[str, list[Any]] = {}
        self._configs: dict[Path, Any] = {}

    def wants(self, path: Path) -> bool:
        relative = _relative(path, self.rootdir)
        matched = any(fnmatch.fnmatch(relative if "/" in glob else path.name, glob) for glob in self.globs)
        return matched and not self.config_for(path).is_excluded(path)

    def config_for(self, path: Path) -> Any:
        """The looplint configuration that applies to a file (one lookup per directory)."""
        from looplint.engine.config import ConfigError, load_config

        directory = path.parent
        if directory not in self._configs:
            try:
                self._configs[directory] = load_config(directory)
            except ConfigError as error:  # reported as a collection error, without a traceback
                raise pytest.Collector.CollectError(f"looplint: {error}") from None
        return self._configs[directory]

    def fingerprint(self, path: Path) -> list[Any]:
        """What must stay the same for a passed file to be skipped: the file, looplint, config."""
        from looplint.engine.cache import code_fingerprint  # looplint's version and its modules

        stat = path.stat()
        config = self.config_for(path)
        return [stat.st_mtime_ns, stat.st_size, code_fingerprint(), config.fingerprint()]

    def save(self) -> None:
        """Merge this session's passes into the cache (other processes may have added theirs)."""
        if self.cache is None or not self.newly_passed:
            return
        merged = {**self.cache.get(CACHE_KEY, {}), **self.newly_passed}
        kept = {path: key for path, key in merged.items() if os.path.exists(path)}
        self.cache.set(CACHE_KEY, kept)


_STATE = pytest.StashKey[_LintState]()


class LooplintFile(pytest.File):
    """A file linted by looplint: it holds one item."""

    def collect(self):  # type: ignore[override]
        item = LooplintItem.from_parent(self, name="looplint")
        state = self.config.stash[_STATE]
        if state.passed.get(str(self.path)) == state.fingerprint(self.path):
            item.add_marker(pytest.mark.skip(reason="looplint: unchanged since it last passed"))
        yield item


class LooplintError(Exception):
    """The findings of one file (rendered by `LooplintItem.repr_failure`)."""


class LooplintItem(pytest.Item):
    """Lints one file; fails with its findings."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_marker("looplint")

    @property
    def _state(self) -> _LintState:
        return self.config.stash[_STATE]

    def runtest(self) -> None:
        from looplint.engine import FileError, lint_file
        from looplint.engine.report import render

        state = self._state
        fingerprint = state.fingerprint(self.path)
        try:
            findings = lint_file(self.path, state.config_for(self.path))
        except FileError as error:
            raise LooplintError(str(error)) from None
        if findings:
            display = _relative(self.path, state.invocation_dir)
            shown: list[Finding] = [f.with_(path=display) for f in findings]
            raise LooplintError(render(shown, "text").rstrip("\n"))
        state.newly_passed[str(self.path)] = fingerprint

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None):  # type: ignore[override]
        if excinfo.errisinstance(LooplintError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"looplint: {_relative(self.path, self._state.rootdir)}"


def _relative(path: Path, start: Path) -> str:
    try:
        return Path(os.path.relpath(path, start)).as_posix()
    except ValueError:  # another drive on Windows
        return path.as_posix()


class LoopHygiene:
    """The `looplint_watch` fixture: the report of the watched test body, and codes to ignore."""

    def __init__(self) -> None:
        self.report: Any = None  # looplint.runtime.RuntimeReport, filled when the body returns
        self.ignored: set[str] = set()

    def ignore(self, *codes: str) -> None:
        """Do not fail the test for these rule codes (a prefix such as `LL5` covers its codes)."""
        self.ignored.update(code.upper() for code in codes)

    def is_ignored(self, finding: Finding) -> bool:
        return finding.code.startswith(tuple(self.ignored))


@pytest.fixture
def looplint_watch() -> LoopHygiene:
    """Run this test's body under `looplint.watch()`; the test fails on runtime findings.

    Options come from a `loop_hygiene(...)` marker when there is one.
    """
    return LoopHygiene()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    marker = item.get_closest_marker(WATCH_MARKER)
    hygiene = getattr(item, "funcargs", {}).get("looplint_watch")
    if marker is None and not isinstance(hygiene, LoopHygiene):
        return (yield)
    hygiene = hygiene if isinstance(hygiene, LoopHygiene) else LoopHygiene()
    options = dict(marker.kwargs) if marker else {}
    ignored = options.pop("ignore", ())
    hygiene.ignore(*([ignored] if isinstance(ignored, str) else ignored))
    if marker is not None and marker.args:
        pytest.fail(f"{WATCH_MARKER}() takes keyword arguments only", pytrace=False)
    try:
        watcher = looplint.watch(**options)
    except (TypeError, ValueError) as error:
        problem = f"{WATCH_MARKER}: {error}"
    else:
        problem = None
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    with watcher as report:
        hygiene.report = report
        result = yield
    problems = [f for f in report.findings if not hygiene.is_ignored(f)]
    if problems:
        pytest.fail(_watch_failure(problems), pytrace=False)
    return result


def _watch_failure(findings: list[Finding]) -> str:
    from looplint.engine.report import render

    count = f"{len(findings)} problem{'s' if len(findings) != 1 else ''}"
    return f"looplint.watch found {count} in this test's training loop:\n" + render(findings, "text").rstrip(
        "\n"
    )
