"""`looplint server`: the language server (stdio) for editors, built on pygls.

Diagnostics come from the engine's `lint_text`, with the configuration and `# noqa` of a
command-line run over the same file. Changes are debounced per document: an edit after a quiet
moment is linted at once, while edits that follow each other closely (typing, a paste sent in
pieces, an undo of many steps) wait for a short pause and cost one lint. A newer change cancels
the lint still waiting and makes the result of one already running stale (it is dropped, never
published): at most one lint runs and one waits. Saving any file re-lints every open
document, since a finding may depend on other modules of the project. Notebooks arrive as notebook
documents, their code cells linted as one program like `looplint notebook.ipynb`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from looplint.adapters import lsp_edits
from looplint.adapters.lsp_edits import Document
from looplint.engine.config import ConfigError, load_config
from looplint.findings import Finding

if TYPE_CHECKING:
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer

    from looplint.static.project import Project

# Changes closer together than this are one burst, linted once after it ends.
DEBOUNCE_SECONDS = 0.05
# Even the first change of a burst waits this long: messages already on their way join it.
COALESCE_SECONDS = 0.005
FIX_ALL_KIND = "source.fixAll.looplint"
NOTEBOOK_SUFFIX = ".ipynb"


def main(argv: list[str] | None = None) -> int:
    """`looplint server [--stdio]`: serve the Language Server Protocol on stdin/stdout."""
    parser = argparse.ArgumentParser(
        prog="looplint server",
        description="Language server for editors (LSP over stdin/stdout). Needs 'looplint[server]'.",
    )
    parser.add_argument(
        "--stdio", action="store_true", help="use stdin/stdout (the default and only transport)"
    )
    try:
        parser.parse_args(sys.argv[2:] if argv is None else argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        server = create_server()
    except ImportError as error:
        print(
            f"looplint: error: 'looplint server' needs the server extra "
            f"(pip install 'looplint[server]'): {error}",
            file=sys.stderr,
        )
        return 2
    server.start_io()
    return 0


@dataclass
class Snapshot:
    """What one lint saw: the unit's text (Python, or notebook JSON) and its documents."""

    generation: int
    path: str
    text: str
    documents: list[Document]
    notebook: bool

    def document(self, uri: str) -> Document | None:
        return next((document for document in self.documents if document.uri == uri), None)


@dataclass
class Result:
    snapshot: Snapshot
    findings: dict[str, list[Finding]]  # per document URI, lines counted within the document
    error: str | None = None


@dataclass
class Unit:
    """What one lint covers: a Python file, or a notebook with its cells."""

    uri: str
    notebook: bool
    generation: int = 0
    result: Result | None = None
    waiting: asyncio.Task | None = None
    last_change: float = float("-inf")  # time.monotonic() of the last change
    running: bool = False
    inflight: tuple[int, asyncio.Future] | None = None  # (generation, the lint of it)
    published: set[str] = field(default_factory=set)


def create_server() -> LanguageServer:
    """The language server with every feature registered (imports pygls: needs the extra)."""
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer

    from looplint import __version__

    server = LanguageServer(
        "looplint",
        __version__,
        text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
        notebook_document_sync=types.NotebookDocumentSyncOptions(
            notebook_selector=[
                types.NotebookDocumentFilterWithNotebook(
                    notebook="*", cells=[types.NotebookCellLanguage(language="python")]
                )
            ],
            save=True,
        ),
    )
    looplint = LoopLint(server)

    @server.feature(types.INITIALIZED)
    async def initialized(params: types.InitializedParams) -> None:
        await looplint.watch_files()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: types.DidOpenTextDocumentParams) -> None:
        looplint.changed(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: types.DidChangeTextDocumentParams) -> None:
        looplint.changed(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(params: types.DidSaveTextDocumentParams) -> None:
        looplint.everything_changed()

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: types.DidCloseTextDocumentParams) -> None:
        looplint.closed(params.text_document.uri)

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_OPEN)
    def notebook_open(params: types.DidOpenNotebookDocumentParams) -> None:
        looplint.changed(params.notebook_document.uri, notebook=True)

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_CHANGE)
    def notebook_change(params: types.DidChangeNotebookDocumentParams) -> None:
        looplint.changed(params.notebook_document.uri, notebook=True)

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_SAVE)
    def notebook_save(params: types.DidSaveNotebookDocumentParams) -> None:
        looplint.everything_changed()

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_CLOSE)
    def notebook_close(params: types.DidCloseNotebookDocumentParams) -> None:
        looplint.closed(params.notebook_document.uri, [cell.uri for cell in params.cell_text_documents])

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def watched_files(params: types.DidChangeWatchedFilesParams) -> None:
        looplint.everything_changed()

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(
            code_action_kinds=[types.CodeActionKind.QuickFix, FIX_ALL_KIND],
            resolve_provider=True,
        ),
    )
    async def code_action(params: types.CodeActionParams) -> list[types.CodeAction] | None:
        return await looplint.code_actions(params)

    @server.feature(types.CODE_ACTION_RESOLVE)
    async def code_action_resolve(action: types.CodeAction) -> types.CodeAction:
        return await looplint.resolve(action)

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    async def hover(params: types.HoverParams) -> types.Hover | None:
        return await looplint.hover(params)

    return server


class LoopLint:
    """The server's state: one Unit per open Python file or notebook, and the lint scheduling."""

    def __init__(self, server: LanguageServer) -> None:
        from lsprotocol import types

        self.server = server
        self.types = types
        self.units: dict[str, Unit] = {}
        # One worker: lints never pile up in parallel, and a stale one waiting in the queue is
        # skipped when its turn comes.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="looplint-lint")
        self.shown_errors: set[str] = set()
        # One project per configuration root: the summaries of imported modules are kept between
        # edits, and dropped when a file of the workspace is saved or changes on disk.
        self.projects: dict[str, Project] = {}

    # -- scheduling --------------------------------------------------------------------------

    def changed(self, uri: str, *, notebook: bool = False) -> None:
        unit = self._unit_for(uri, notebook=notebook, create=True)
        if unit is None:
            return
        unit.generation += 1
        now = time.monotonic()
        in_burst = unit.running or now - unit.last_change < DEBOUNCE_SECONDS
        unit.last_change = now
        self._schedule(unit, DEBOUNCE_SECONDS if in_burst else COALESCE_SECONDS)

    def everything_changed(self) -> None:
        for project in self.projects.values():
            project.refresh()
        for unit in self.units.values():
            unit.generation += 1
            self._schedule(unit, DEBOUNCE_SECONDS)

    def closed(self, uri: str, cell_uris: list[str] | None = None) -> None:
        unit = self.units.pop(uri, None)
        if unit is None:
            return
        if unit.waiting is not None:
            unit.waiting.cancel()
        for document_uri in unit.published | set(cell_uris or ()):
            self._publish(document_uri, None, [])

    def _schedule(self, unit: Unit, delay: float) -> None:
        if unit.waiting is not None and not unit.waiting.done():
            unit.waiting.cancel()
        unit.waiting = asyncio.ensure_future(self._lint_later(unit, delay))

    async def _lint_later(self, unit: Unit, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        await self.current(unit)

    async def current(self, unit: Unit) -> Result | None:
        """The unit's findings for its current content, linting it now if they are stale (a
        request arriving while that lint runs waits for it instead of starting another)."""
        if unit.result is not None and unit.result.snapshot.generation == unit.generation:
            return unit.result
        if unit.inflight is None or unit.inflight[0] != unit.generation:
            snapshot = self._snapshot(unit)
            if snapshot is None:
                return None
            unit.inflight = (unit.generation, asyncio.ensure_future(self._run(unit, snapshot)))
        # Shielded: cancelling a superseded wait must not cancel a lint someone else awaits.
        return await asyncio.shield(unit.inflight[1])

    async def _run(self, unit: Unit, snapshot: Snapshot) -> Result | None:
        loop = asyncio.get_running_loop()
        unit.running = True
        try:
            result = await loop.run_in_executor(self.executor, self._lint, unit, snapshot)
        finally:
            unit.running = False
        if result is None or unit.generation != snapshot.generation or self.units.get(unit.uri) is not unit:
            return None  # superseded while it waited or ran: a newer lint is scheduled
        unit.result = result
        self._report(unit, result)
        return result

    # -- linting (in the worker thread) ---------------------------------------------------------

    def _lint(self, unit: Unit, snapshot: Snapshot) -> Result | None:
        if unit.generation != snapshot.generation:
            return None  # a newer change arrived while this one was queued
        from looplint.engine import FileError, lint_text, project_for

        findings: dict[str, list[Finding]] = {document.uri: [] for document in snapshot.documents}
        try:
            config = load_config(snapshot.path)
            project = self.projects.get(str(config.root))
            if project is None:
                project = self.projects[str(config.root)] = project_for(config)
            found = lint_text(snapshot.text, snapshot.path, config, project)
        except (ConfigError, FileError) as error:
            return Result(snapshot, findings, str(error))
        for finding in found:
            if snapshot.notebook:
                index = (finding.details or {}).get("cell", 0) - 1
                if not 0 <= index < len(snapshot.documents):
                    continue
                uri = snapshot.documents[index].uri
            else:
                uri = snapshot.documents[0].uri
            findings[uri].append(finding)
        return Result(snapshot, findings)

    def _snapshot(self, unit: Unit) -> Snapshot | None:
        workspace = self.server.workspace
        if not unit.notebook:
            document = workspace.text_documents.get(unit.uri)
            if document is None:
                return None
            view = Document(unit.uri, document.version, document.source)
            return Snapshot(unit.generation, self._path(unit.uri, ".py"), view.text, [view], False)
        notebook = workspace.get_notebook_document(notebook_uri=unit.uri)
        if notebook is None:
            return None
        views, cells = [], []
        for cell in notebook.cells:
            document = workspace.text_documents.get(cell.document)
            text = document.source if document is not None else ""
            views.append(Document(cell.document, document.version if document else None, text))
            is_code = cell.kind == self.types.NotebookCellKind.Code and (
                document is None or document.language_id in (None, "python")
            )
            cells.append(
                {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": text}
                if is_code
                else {"cell_type": "markdown", "metadata": {}, "source": text}
            )
        text = json.dumps(
            {
                "cells": cells,
                "metadata": {"language_info": {"name": "python"}},
                "nbformat": 4,
                "nbformat_minor": 5,
            },
            indent=1,
        )
        return Snapshot(unit.generation, self._path(unit.uri, NOTEBOOK_SUFFIX), text, views, True)

    def _path(self, uri: str, suffix: str) -> str:
        """The document's real path; an unsaved one is placed in the workspace's root, so the
        project's configuration still applies."""
        from pygls.uris import to_fs_path

        path = to_fs_path(uri) if uri.startswith("file:") else None
        if path:
            return path
        root = self.server.workspace.root_path or os.getcwd()
        name = (
            "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in uri.rsplit("/", 1)[-1]) or "untitled"
        )
        return os.path.join(root, name if name.endswith(suffix) else name + suffix)

    def _unit_for(self, uri: str, *, notebook: bool = False, create: bool = False) -> Unit | None:
        """The unit a document belongs to: its own, or its notebook's for a cell."""
        if uri in self.units:
            return self.units[uri]
        workspace = self.server.workspace
        if not notebook:
            owner = workspace.get_notebook_document(cell_uri=uri)
            if owner is not None:
                return (
                    self.units.get(owner.uri)
                    if not create
                    else self._unit_for(owner.uri, notebook=True, create=True)
                )
            document = workspace.text_documents.get(uri)
            if document is None or not _is_python(uri, document.language_id):
                return None
        if not create:
            return None
        unit = Unit(uri, notebook)
        self.units[uri] = unit
        return unit

    # -- publishing -------------------------------------------------------------------------

    def _report(self, unit: Unit, result: Result) -> None:
        if result.error is not None and result.error not in self.shown_errors:
            self.shown_errors.add(result.error)
            self.server.window_show_message(
                self.types.ShowMessageParams(self.types.MessageType.Error, f"looplint: {result.error}")
            )
        for document in result.snapshot.documents:
            diagnostics = [self.diagnostic(document, finding) for finding in result.findings[document.uri]]
            self._publish(document.uri, document.version, diagnostics)
            unit.published.add(document.uri)

    def _publish(self, uri: str, version: int | None, diagnostics: list[types.Diagnostic]) -> None:
        self.server.text_document_publish_diagnostics(
            self.types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version)
        )

    @property
    def encoding(self) -> str:
        encoding = self.server.workspace.position_encoding
        return str(getattr(encoding, "value", encoding) or "utf-16")

    def range(self, document: Document, start: tuple[int, int], end: tuple[int, int]) -> types.Range:
        """A range in code points as the protocol's range in the client's position encoding."""
        types = self.types

        def position(line: int, column: int) -> types.Position:
            return types.Position(
                line, lsp_edits.client_column(document.line_text(line), column, self.encoding)
            )

        return types.Range(position(*start), position(*end))

    def diagnostic(self, document: Document, finding: Finding) -> types.Diagnostic:
        types = self.types
        line, column, end_line, end_column = document.finding_range(finding)
        page = lsp_edits.rule_page_uri(finding.code)
        return types.Diagnostic(
            range=self.range(document, (line, column), (end_line, end_column)),
            message=finding.message,
            severity=types.DiagnosticSeverity.Error
            if finding.code == "LL000"
            else types.DiagnosticSeverity.Warning,
            code=finding.code,
            code_description=types.CodeDescription(href=page) if page else None,
            source="looplint",
        )

    # -- requests ---------------------------------------------------------------------------

    async def _document_findings(self, uri: str) -> tuple[Unit, Result, Document, list[Finding]] | None:
        unit = self._unit_for(uri)
        if unit is None:
            return None
        result = await self.current(unit)
        if result is None:
            return None
        document = result.snapshot.document(uri)
        if document is None:
            return None
        return unit, result, document, result.findings.get(uri, [])

    async def code_actions(self, params: types.CodeActionParams) -> list[types.CodeAction] | None:
        types = self.types
        found = await self._document_findings(params.text_document.uri)
        if found is None:
            return None
        unit, result, document, findings = found
        only = params.context.only
        wanted = params.range
        lazy = self._can_resolve_edits()
        actions: list[types.CodeAction] = []
        for index, finding in enumerate(findings):
            diagnostic = self.diagnostic(document, finding)
            if not _overlaps(diagnostic.range, wanted) or not _wants(types.CodeActionKind.QuickFix, only):
                continue
            if finding.fix is not None and finding.fix.safe and finding.code != "LL000":
                action = types.CodeAction(
                    title=f"{finding.fix.message} ({finding.code})",
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[diagnostic],
                    is_preferred=True,
                    data={
                        "uri": document.uri,
                        "unit": unit.uri,
                        "generation": result.snapshot.generation,
                        "finding": index,
                    },
                )
                actions.append(action if lazy else await self.resolve(action))
            if finding.code != "LL000":
                noqa = self._noqa_action(document, finding, diagnostic)
                if noqa is not None:
                    actions.append(noqa)
        fixable = any(
            finding.fix is not None and finding.fix.safe and finding.code != "LL000"
            for group in result.findings.values()
            for finding in group
        )
        if fixable and _wants(FIX_ALL_KIND, only):
            action = types.CodeAction(
                title="Fix all looplint problems",
                kind=FIX_ALL_KIND,
                data={
                    "uri": document.uri,
                    "unit": unit.uri,
                    "generation": result.snapshot.generation,
                    "finding": None,
                },
            )
            actions.append(action if lazy else await self.resolve(action))
        # Without resolve support every edit was computed now; a fix that failed verification has none.
        return [action for action in actions if lazy or action.edit is not None] or None

    async def resolve(self, action: types.CodeAction) -> types.CodeAction:
        """Fill in the edit of a fix: computed now, on the content the action was offered for."""
        data = action.data if isinstance(action.data, dict) else {}
        unit = self.units.get(str(data.get("unit")))
        if unit is None or unit.result is None or unit.generation != data.get("generation"):
            return action  # the document changed since: no edit rather than a wrong one
        result = unit.result
        target = None
        if data.get("finding") is not None:
            group = result.findings.get(str(data.get("uri")), [])
            index = data["finding"]
            if not isinstance(index, int) or not 0 <= index < len(group):
                return action
            target = group[index]
        loop = asyncio.get_running_loop()
        texts = await loop.run_in_executor(self.executor, _fixed_texts, result.snapshot, target)
        if texts:
            action.edit = self._workspace_edit(result.snapshot, texts)
        return action

    def _noqa_action(
        self, document: Document, finding: Finding, diagnostic: types.Diagnostic
    ) -> types.CodeAction | None:
        types = self.types
        line = document.finding_range(finding)[0]
        text = document.line_text(line)
        new = lsp_edits.noqa_line(text, finding.code)
        if new is None:
            return None
        edit = types.TextEdit(self.range(document, (line, 0), (line, len(text))), new)
        return types.CodeAction(
            title=f"Disable {finding.code} for this line",
            kind=types.CodeActionKind.QuickFix,
            diagnostics=[diagnostic],
            edit=self._edit({document.uri: (document, [edit])}),
        )

    def _workspace_edit(self, snapshot: Snapshot, texts: dict[str, str]) -> types.WorkspaceEdit:
        types = self.types
        changes = {}
        for uri, new in texts.items():
            document = snapshot.document(uri)
            if document is None or new == document.text:
                continue
            edits = []
            for edit in lsp_edits.line_edits(document.text, new):
                end = (edit.end_line, edit.end_column)
                edits.append(types.TextEdit(self.range(document, (edit.start_line, 0), end), edit.text))
            changes[uri] = (document, edits)
        return self._edit(changes)

    def _edit(self, changes: dict[str, tuple[Document, list[types.TextEdit]]]) -> types.WorkspaceEdit:
        types = self.types
        from pygls.capabilities import get_capability

        versioned = get_capability(
            self.server.client_capabilities, "workspace.workspace_edit.document_changes", False
        )
        if versioned:
            return types.WorkspaceEdit(
                document_changes=[
                    types.TextDocumentEdit(
                        text_document=types.OptionalVersionedTextDocumentIdentifier(
                            uri=uri, version=document.version
                        ),
                        edits=edits,
                    )
                    for uri, (document, edits) in changes.items()
                ]
            )
        return types.WorkspaceEdit(changes={uri: edits for uri, (_, edits) in changes.items()})

    def _can_resolve_edits(self) -> bool:
        from pygls.capabilities import get_capability

        properties = get_capability(
            self.server.client_capabilities, "text_document.code_action.resolve_support.properties", []
        )
        return "edit" in (properties or [])

    async def hover(self, params: types.HoverParams) -> types.Hover | None:
        types = self.types
        found = await self._document_findings(params.text_document.uri)
        if found is None:
            return None
        _, _, document, findings = found
        line = params.position.line
        column = lsp_edits.server_column(document.line_text(line), params.position.character, self.encoding)
        pages, first = [], None
        for finding in findings:
            start_line, start_column, end_line, end_column = document.finding_range(finding)
            if not (start_line, start_column) <= (line, column) <= (end_line, end_column):
                continue
            first = first or (start_line, start_column, end_line, end_column)
            page = lsp_edits.rule_markdown(finding.code) or f"### {finding.code}\n"
            pages.append(f"**{finding.code}** {finding.message}\n\n{page}")
        if not pages:
            return None
        assert first is not None
        return types.Hover(
            contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value="\n\n---\n\n".join(pages)),
            range=self.range(document, first[:2], first[2:]),
        )

    async def watch_files(self) -> None:
        """Ask the client to tell about Python files and pyproject.toml changed outside the editor
        (a branch switch, a formatter): open documents may depend on them."""
        from pygls.capabilities import get_capability

        types = self.types
        if not get_capability(
            self.server.client_capabilities, "workspace.did_change_watched_files.dynamic_registration", False
        ):
            return
        options = types.DidChangeWatchedFilesRegistrationOptions(
            watchers=[
                types.FileSystemWatcher(glob_pattern=pattern) for pattern in ("**/*.py", "**/pyproject.toml")
            ]
        )
        registration = types.Registration(
            id="looplint-watched-files",
            method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
            register_options=options,
        )
        try:
            await self.server.client_register_capability_async(types.RegistrationParams([registration]))
        except Exception as error:  # noqa: BLE001 - a client that refuses only loses outside changes
            self.server.window_log_message(
                types.LogMessageParams(types.MessageType.Log, f"looplint: no file watching: {error}")
            )


def _fixed_texts(snapshot: Snapshot, target: Finding | None) -> dict[str, str]:
    """New text per document URI for one fix or for all safe fixes (runs in the worker)."""
    try:
        config = load_config(snapshot.path)
    except ConfigError:
        return {}
    if not snapshot.notebook:
        document = snapshot.documents[0]
        fixed = lsp_edits.fixed_python(document.text, snapshot.path, config, target)
        return {} if fixed is None else {document.uri: fixed}
    cells = lsp_edits.fixed_notebook_cells(snapshot.text, snapshot.path, config, target)
    if cells is None or len(cells) != len(snapshot.documents):
        return {}
    return {document.uri: text for document, text in zip(snapshot.documents, cells)}


def _is_python(uri: str, language_id: str | None) -> bool:
    if language_id:
        return language_id == "python"
    return uri.endswith((".py", ".pyi"))


def _wants(kind: str, only: Any) -> bool:
    """Whether a request restricted to the kinds `only` accepts `kind` (kinds are dotted)."""
    if not only:
        return True
    kind = str(getattr(kind, "value", kind))
    prefixes = [str(getattr(prefix, "value", prefix)) for prefix in only]
    return any(kind == prefix or kind.startswith(f"{prefix}.") for prefix in prefixes)


def _overlaps(a: types.Range, b: types.Range) -> bool:
    def key(position: types.Position) -> tuple[int, int]:
        return position.line, position.character

    return key(a.start) <= key(b.end) and key(b.start) <= key(a.end)
