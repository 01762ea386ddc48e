"""`%load_ext looplint`: each cell is checked before it runs, in the context of the cells that ran
before it, and the findings are shown under the cell.

The cells that ran are kept in execution order (a cell run again replaces its earlier run) and
linted as one notebook by the engine, like `looplint notebook.ipynb`; only what is in the cell
about to run, or what it newly causes in an earlier cell, is shown. A cell the engine cannot parse
(incomplete code, IPython syntax it does not know) is never reported and never blocks anything:
Python reports its own syntax errors. `%looplint` switches modes (see `LooplintMagic.__doc__`).
"""

from __future__ import annotations

import ast
import html
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from looplint.findings import Finding

# A notebook longer than this (in lines of kept cells) forgets its oldest cells first: the check
# of one cell must stay cheap, and a loop is rarely spread over more.
MAX_CONTEXT_LINES = 4000

_USAGE = """\
%looplint            show the state of the checks
%looplint on         check each cell before it runs (what %load_ext looplint starts)
%looplint off        stop checking and watching
%looplint strict     a cell with findings does not run
%looplint warn       show findings and run the cell anyway (the default)
%looplint watch      run the following cells under looplint.watch() and show its report
%looplint watch off  stop watching"""


@dataclass
class _Cell:
    key: str  # the front end's cell id, else the cell's text: a cell run again replaces itself
    text: str
    execution_count: int


@dataclass
class CellReport:
    """What looplint shows under a cell: static findings (`(where, finding)` pairs, where names an
    earlier cell or is empty for this one) and, with `%looplint watch`, the runtime report."""

    findings: list[tuple[str, Finding]] = field(default_factory=list)
    runtime: list[Finding] = field(default_factory=list)
    summary: str = ""
    strict: bool = False

    def text(self) -> str:
        lines = []
        if self.findings:
            count = len(self.findings)
            lines.append(
                f"looplint: {count} problem{'s' if count != 1 else ''} in this cell"
                + (" (not run: %looplint strict)" if self.strict else "")
            )
            for where, finding in self.findings:
                place = f"{where}, line {finding.line}" if where else f"line {finding.line}"
                lines.append(f"  {place}:{finding.column}: {finding.code} {finding.message}")
                if finding.fix is not None and finding.fix.safe:
                    lines.append(f"    fix: {finding.fix.message}")
        if self.summary or self.runtime:
            lines.append(
                "looplint watch: " + (f"{len(self.runtime)} problem(s)" if self.runtime else "no problems")
            )
            for finding in self.runtime:
                lines.append(f"  {finding.path}:{finding.line}: {finding.code} {finding.message}")
            lines.extend("  " + line for line in self.summary.splitlines())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.text())

    def _repr_html_(self) -> str:
        parts = []
        if self.findings:
            count = len(self.findings)
            title = f"looplint: {count} problem{'s' if count != 1 else ''} in this cell"
            if self.strict:
                title += " &mdash; not run (<code>%looplint strict</code>)"
            items = []
            for where, finding in self.findings:
                place = f"{html.escape(where)}, line {finding.line}" if where else f"line {finding.line}"
                fix = ""
                if finding.fix is not None and finding.fix.safe:
                    fix = f'<div style="{_FIX}">fix: {_inline_code(finding.fix.message)}</div>'
                items.append(
                    f'<li style="{_ITEM}"><span style="{_BADGE}">{finding.code}</span> '
                    f'<span style="{_PLACE}">{place}</span><div>{_inline_code(finding.message)}</div>{fix}</li>'
                )
            parts.append(_box(_AMBER, title, "".join(items)))
        if self.summary or self.runtime:
            title = "looplint watch: " + (
                f"{len(self.runtime)} problem(s)" if self.runtime else "no problems"
            )
            items = "".join(
                f'<li style="{_ITEM}"><span style="{_BADGE}">{f.code}</span> '
                f'<span style="{_PLACE}">{html.escape(f.path)}:{f.line}</span>'
                f"<div>{_inline_code(f.message)}</div></li>"
                for f in self.runtime
            )
            summary = f'<pre style="{_PRE}">{html.escape(self.summary)}</pre>' if self.summary else ""
            parts.append(_box(_RED if self.runtime else _GREEN, title, items + summary))
        return "".join(parts)


_AMBER, _RED, _GREEN = ("#b45309", "#fffbeb"), ("#b91c1c", "#fef2f2"), ("#15803d", "#f0fdf4")
_ITEM = "margin:4px 0;list-style:none"
_BADGE = (
    "font-family:monospace;font-weight:bold;background:#e5e7eb;color:#111827;padding:0 4px;border-radius:3px"
)
_PLACE = "color:#4b5563"
_FIX = "color:#15803d;margin-top:2px"
_PRE = "margin:4px 0 0 0;background:transparent;color:#1f2937"


def _box(colors: tuple[str, str], title: str, body: str) -> str:
    border, background = colors
    return (
        f'<div style="border-left:4px solid {border};background:{background};color:#1f2937;'
        f'padding:6px 10px;margin:4px 0;font-family:system-ui,sans-serif;font-size:13px;line-height:1.4">'
        f'<div style="font-weight:600;color:{border}">{title}</div>'
        f'<ul style="margin:4px 0 0 0;padding:0">{body}</ul></div>'
    )


def _inline_code(text: str) -> str:
    """Escape, and show `backquoted` parts as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


class CellChecker:
    """The state of the extension in one IPython shell."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.cells: list[_Cell] = []
        self.shown: set[tuple] = set()
        self.strict = False
        self.checking = False
        self.watching = False
        self.rejection: str | None = None
        self.parsed = True  # whether the cell about to run parsed for the engine
        self.watch: Any = None
        self.watch_report: Any = None
        self.config_errors: set[str] = set()
        self.gate = _StrictGate(self)
        self.seed()

    # -- switching ----------------------------------------------------------------------------

    def start(self) -> None:
        if self.checking:
            return
        self.checking = True
        self.shell.events.register("pre_run_cell", self.pre_run_cell)
        self.shell.events.register("post_run_cell", self.post_run_cell)
        if self.gate not in self.shell.ast_transformers:
            self.shell.ast_transformers.append(self.gate)

    def stop(self) -> None:
        if not self.checking:
            return
        self.checking = False
        self.watching = False
        self.shell.events.unregister("pre_run_cell", self.pre_run_cell)
        self.shell.events.unregister("post_run_cell", self.post_run_cell)
        if self.gate in self.shell.ast_transformers:
            self.shell.ast_transformers.remove(self.gate)

    def seed(self) -> None:
        """The cells that ran before the extension was loaded, from IPython's input history."""
        history = getattr(getattr(self.shell, "history_manager", None), "input_hist_raw", None) or []
        for number, text in enumerate(history[1:-1], start=1):  # [-1] is the cell loading us
            if text.strip() and _program(text) is not None:
                self._keep(_Cell(text, text, number))
        if self.cells:
            # What those cells already held is not news for the cells that follow.
            from looplint.engine import FileError, lint_text
            from looplint.engine.config import ConfigError

            try:
                found = lint_text(_notebook_json([cell.text for cell in self.cells]), self.notebook_path())
            except (ConfigError, FileError):
                found = []
            for finding in found:
                index = (finding.details or {}).get("cell", 0) - 1
                if 0 <= index < len(self.cells):
                    self.shown.add(_identity(self.cells[index].key, self.cells[index].text, finding))

    # -- the events ---------------------------------------------------------------------------

    def pre_run_cell(self, info: Any) -> None:
        raw = getattr(info, "raw_cell", None) or ""
        self.rejection = None
        self.parsed = True
        if _is_our_magic(raw):
            return
        report = CellReport(strict=self.strict)
        try:
            report.findings = self.check(raw, getattr(info, "cell_id", None))
        except Exception as error:  # noqa: BLE001 - a bug of ours must never stop a cell
            print(f"looplint: internal error while checking this cell ({type(error).__name__}: {error})")
        if report.findings:
            _display(report)
            if self.strict:
                self.rejection = (
                    "looplint strict: this cell was not run; fix the problems above, or %looplint warn"
                )
        if self.watching:
            self._start_watch()

    def post_run_cell(self, result: Any) -> None:
        info = getattr(result, "info", None)
        raw = getattr(info, "raw_cell", None) or ""
        if self.watch is not None:
            self._finish_watch()
        if _is_our_magic(raw) or not self.parsed:
            return
        if getattr(result, "error_before_exec", None) is not None:
            return  # it did not run: a syntax error, or rejected in strict mode
        self._keep(_Cell(getattr(info, "cell_id", None) or raw, raw, self._count()))

    # -- the check ----------------------------------------------------------------------------

    def check(self, raw: str, cell_id: str | None = None) -> list[tuple[str, Finding]]:
        """The findings to show for `raw` about to run after the kept cells."""
        code = _program(raw)
        if code is None:
            self.parsed = False
            return []
        from looplint.static import might_have_findings
        from looplint.static.prefilter import needs_analysis

        # A cell without a backward pass, a step, a writer call, a loss sum or parameter groups
        # cannot cause a finding: it is not analyzed (this keeps ordinary cells at ~1 ms).
        if not might_have_findings(code) or not needs_analysis(ast.parse(code)):
            return []
        from looplint.engine import FileError, lint_text
        from looplint.engine.config import ConfigError, load_config

        key = cell_id or raw
        context = [cell for cell in self.cells if cell.key != key]
        path = self.notebook_path()
        try:
            config = load_config(path)
            found = lint_text(_notebook_json([c.text for c in context] + [raw]), path, config)
        except (ConfigError, FileError) as error:
            if str(error) not in self.config_errors:
                self.config_errors.add(str(error))
                print(f"looplint: {error}")
            return []
        current = len(context) + 1
        shown = []
        for finding in found:
            cell = (finding.details or {}).get("cell", current)
            if finding.code == "LL000":
                if cell == current:
                    self.parsed = False
                continue
            if cell == current:
                self.shown.add(_identity(key, raw, finding))
                shown.append(("", finding))
                continue
            earlier = context[cell - 1]
            identity = _identity(earlier.key, earlier.text, finding)
            if identity not in self.shown:  # newly caused by this cell in an earlier one
                self.shown.add(identity)
                shown.append((f"In [{earlier.execution_count}]", finding))
        return shown

    def notebook_path(self) -> str:
        """The notebook's real path when the front end says it (Jupyter, VS Code), so that the
        project's `[tool.looplint]` and per-file-ignores apply; else one in the working directory."""
        candidates = [self.shell.user_ns.get("__vsc_ipynb_file__"), os.environ.get("JPY_SESSION_NAME")]
        for candidate in candidates:
            if isinstance(candidate, str) and candidate.endswith(".ipynb"):
                return os.path.abspath(candidate)
        return os.path.join(os.getcwd(), "notebook.ipynb")

    def _keep(self, cell: _Cell) -> None:
        self.cells = [kept for kept in self.cells if kept.key != cell.key] + [cell]
        lines = sum(kept.text.count("\n") + 1 for kept in self.cells)
        while len(self.cells) > 1 and lines > MAX_CONTEXT_LINES:
            lines -= self.cells.pop(0).text.count("\n") + 1

    def _count(self) -> int:
        # post_run_cell runs after IPython advanced the counter past this cell.
        return max(int(getattr(self.shell, "execution_count", 1)) - 1, 0)

    # -- watch --------------------------------------------------------------------------------

    def _start_watch(self) -> None:
        try:
            import looplint

            self.watch = looplint.watch()
            self.watch_report = self.watch.__enter__()
        except Exception as error:  # noqa: BLE001 - torch missing or broken: say so, run the cell
            self.watch = None
            self.watching = False
            print(f"looplint watch: cannot watch ({type(error).__name__}: {error}); %looplint watch is off")

    def _finish_watch(self) -> None:
        watch, self.watch = self.watch, None
        try:
            watch.__exit__(None, None, None)
        except Exception as error:  # noqa: BLE001
            print(f"looplint watch: internal error ({type(error).__name__}: {error})")
            return
        report = self.watch_report
        summary = report.summary or {}
        if not (report.findings or summary.get("optimizer_steps") or summary.get("backward_passes")):
            return  # nothing trained in this cell
        from looplint.runtime.cli import describe

        runtime = [finding.with_(path=self._cell_label(finding.path)) for finding in report.findings]
        _display(CellReport(runtime=runtime, summary=describe(summary).replace("looplint run: ", "", 1)))

    def _cell_label(self, path: str) -> str:
        """`In [5]` for a runtime site in a cell's code, else the path as the report gives it."""
        names = getattr(getattr(self.shell, "compile", None), "_filename_map", {}) or {}
        for name, number in names.items():
            if path in (name, os.path.relpath(name) if os.path.isabs(name) else name):
                return f"In [{number}]"
        return path


class _StrictGate(ast.NodeTransformer):
    """Keeps a cell with findings from running in strict mode: IPython does not run a cell whose
    AST transformer raises InputRejected, and shows the message instead."""

    def __init__(self, checker: CellChecker) -> None:
        self.checker = checker

    def visit(self, node: ast.AST) -> ast.AST:
        message, self.checker.rejection = self.checker.rejection, None
        if message:
            raise _rejection(message)
        return node


def _rejection(message: str) -> Exception:
    from IPython.core.error import InputRejected

    class LooplintStrict(InputRejected):
        """Shown as its message alone, without a traceback."""

        def _render_traceback_(self) -> list[str]:
            return [message]

    return LooplintStrict(message)


def _identity(key: str, text: str, finding: Finding) -> tuple:
    return (key, text, finding.code, finding.line, finding.message)


def _program(raw: str) -> str | None:
    """The cell as Python, its IPython lines blanked as in `looplint notebook.ipynb`; None when
    it does not parse."""
    from looplint.engine.notebook import NotebookError, notebook_source

    try:
        code = notebook_source(_notebook_json([raw])).source
        compile(code, "<cell>", "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except (NotebookError, SyntaxError, ValueError, OverflowError, RecursionError, MemoryError):
        return None
    return code


def _notebook_json(cells: list[str]) -> str:
    return json.dumps(
        {
            "cells": [
                {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": text}
                for text in cells
            ],
            "metadata": {"language_info": {"name": "python"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


_OUR_MAGIC = re.compile(r"^\s*%+(looplint|load_ext\s+looplint|reload_ext\s+looplint|unload_ext\s+looplint)\b")


def _is_our_magic(raw: str) -> bool:
    return bool(_OUR_MAGIC.match(raw)) and raw.strip().count("\n") == 0


def _display(report: CellReport) -> None:
    from IPython.display import display

    display(report)


def looplint_magic(checker: CellChecker, line: str) -> None:
    words = line.split()
    if words in ([], ["status"]):
        pass
    elif words == ["on"]:
        checker.start()
    elif words == ["off"]:
        checker.stop()
    elif words == ["strict"]:
        checker.strict = True
        checker.start()
    elif words == ["warn"]:
        checker.strict = False
        checker.start()
    elif words == ["watch"]:
        checker.watching = True
        checker.start()
    elif words == ["watch", "off"]:
        checker.watching = False
    else:
        print(f"looplint: unknown option {line.strip()!r}\n{_USAGE}")
        return
    print(_state(checker))


def _state(checker: CellChecker) -> str:
    if not checker.checking:
        return "looplint: off (%looplint on to check cells again)"
    mode = (
        "strict: a cell with findings does not run"
        if checker.strict
        else "findings are shown, cells still run"
    )
    watch = "; training cells run under looplint.watch()" if checker.watching else ""
    return f"looplint: checking each cell before it runs ({mode}){watch}"


_CHECKERS: dict[int, CellChecker] = {}


def load(shell: Any) -> None:
    """`%load_ext looplint`: start checking cells and register `%looplint`."""
    checker = _CHECKERS.get(id(shell))
    if checker is None:
        checker = CellChecker(shell)
        _CHECKERS[id(shell)] = checker

        def looplint(line: str = "") -> None:
            checker_ = _CHECKERS.get(id(shell))
            if checker_ is not None:
                looplint_magic(checker_, line)

        looplint.__doc__ = "Check each cell for training-loop bugs before it runs.\n\n" + _USAGE
        shell.register_magic_function(looplint, magic_kind="line", magic_name="looplint")
    checker.start()


def unload(shell: Any) -> None:
    """`%unload_ext looplint`: stop checking (the magic stays, answering that it is off)."""
    checker = _CHECKERS.pop(id(shell), None)
    if checker is not None:
        checker.stop()
