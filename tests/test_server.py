"""`looplint server` end to end: a real LSP client (pygls's) talks to the server over stdio.

The client announces what real editors announce for the features the server uses (VS Code: UTF-16
positions, lazily resolved fixes, versioned edits; Neovim: UTF-8, resolve, plain `changes`; Emacs:
UTF-32 and no resolve support), so each path through the server runs the way that editor drives it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.lsp.client import LanguageClient
from pygls.protocol import default_converter

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30

MISSING_ZERO_GRAD = """\
import torch


def train(model, loader, optimizer, criterion):
    for inputs, targets in loader:
        loss = criterion(model(inputs), targets)
        loss.backward()
        optimizer.step()
"""

TWO_FIXABLE = """\
def train(model, loader, optimizer, criterion, writer, epochs):
    for epoch in range(epochs):
        for inputs, targets in loader:
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
        writer.add_scalar("loss", loss.item(), epoch)
        writer.close()
"""

_COMMON = {
    "textDocument": {
        "synchronization": {"didSave": True},
        "publishDiagnostics": {"versionSupport": True, "codeDescriptionSupport": True},
        "hover": {"contentFormat": ["markdown", "plaintext"]},
    },
    "notebookDocument": {"synchronization": {}},
}
_ACTIONS = {"codeActionLiteralSupport": {"codeActionKind": {"valueSet": ["", "quickfix", "source"]}}}
# What each editor announces for the features the server uses.
EDITORS = {
    "vscode": {
        "textDocument": {
            "codeAction": {
                **_ACTIONS,
                "isPreferredSupport": True,
                "dataSupport": True,
                "resolveSupport": {"properties": ["edit"]},
            }
        },
        "workspace": {
            "workspaceEdit": {"documentChanges": True},
            "didChangeWatchedFiles": {"dynamicRegistration": True},
        },
    },
    "neovim": {
        "general": {"positionEncodings": ["utf-8", "utf-16", "utf-32"]},
        "textDocument": {
            "codeAction": {
                **_ACTIONS,
                "isPreferredSupport": True,
                "dataSupport": True,
                "resolveSupport": {"properties": ["edit", "command"]},
            }
        },
        "workspace": {"workspaceEdit": {"resourceOperations": ["rename", "create", "delete"]}},
    },
    "emacs": {
        "general": {"positionEncodings": ["utf-32", "utf-8", "utf-16"]},
        "textDocument": {"codeAction": {**_ACTIONS, "isPreferredSupport": True}},
        "workspace": {"workspaceEdit": {"documentChanges": True}},
    },
}


def _capabilities(editor: str) -> types.ClientCapabilities:
    merged = {**_COMMON, **EDITORS[editor]}
    merged["textDocument"] = {**_COMMON["textDocument"], **EDITORS[editor].get("textDocument", {})}
    return default_converter().structure(merged, types.ClientCapabilities)


class Editor:
    """A pygls client that keeps what the server sent: every publishDiagnostics, messages and
    registrations. Requests and notifications go through to the client."""

    def __init__(self, editor: str, root: Path) -> None:
        self.editor, self.root = editor, root
        self.client = LanguageClient("test-editor", "1")
        self.published: list[tuple[str, int | None, list[types.Diagnostic]]] = []
        self.diagnostics: dict[str, list[types.Diagnostic]] = {}
        self.messages: list[types.ShowMessageParams] = []
        self.registrations: list[types.Registration] = []
        self.arrived = asyncio.Event()

        @self.client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def published(params: types.PublishDiagnosticsParams) -> None:
            self.diagnostics[params.uri] = list(params.diagnostics)
            self.published.append((params.uri, params.version, list(params.diagnostics)))
            self.arrived.set()

        @self.client.feature(types.WINDOW_SHOW_MESSAGE)
        def show_message(params: types.ShowMessageParams) -> None:
            self.messages.append(params)

        @self.client.feature(types.WINDOW_LOG_MESSAGE)
        def log_message(params: types.LogMessageParams) -> None:
            pass

        @self.client.feature(types.CLIENT_REGISTER_CAPABILITY)
        def register(params: types.RegistrationParams) -> None:
            self.registrations.extend(params.registrations)

    def __getattr__(self, name: str):
        return getattr(self.client, name)

    async def start(self) -> None:
        # Rule pages go to a throwaway cache, not the home directory.
        env = dict(os.environ, XDG_CACHE_HOME=str(self.root / ".cache"))
        await self.client.start_io(sys.executable, "-m", "looplint", "server", "--stdio", env=env)
        await self.client.initialize_async(
            types.InitializeParams(
                capabilities=_capabilities(self.editor),
                root_uri=self.root.as_uri(),
                workspace_folders=[types.WorkspaceFolder(uri=self.root.as_uri(), name="project")],
            )
        )
        self.client.initialized(types.InitializedParams())

    async def stop(self) -> None:
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await self.client.stop()

    async def wait_for_notification(self, method: str) -> None:
        """Until the next publishDiagnostics arrives (the only notification waited for)."""
        assert method == types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS
        self.arrived.clear()
        await self.arrived.wait()


def scenario(*editors: str):
    """Run an async test body against a fresh server, once per editor's capabilities."""

    def wrap(body):
        @pytest.mark.parametrize("editor", editors or ("vscode",))
        def test(tmp_path: Path, editor: str) -> None:
            async def run() -> None:
                client = Editor(editor, tmp_path)
                await client.start()
                try:
                    await asyncio.wait_for(body(client), 120)
                finally:
                    await client.stop()

            asyncio.run(run())

        test.__name__ = test.__qualname__ = body.__name__
        test.__doc__ = body.__doc__
        return test

    return wrap


# -- helpers: a small editor ----------------------------------------------------------------------


def _units(text: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(text.encode("utf-8"))
    if encoding == "utf-32":
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def _offset(text: str, position: types.Position, encoding: str) -> int:
    lines = text.splitlines(keepends=True)
    offset = sum(len(line) for line in lines[: position.line])
    line = lines[position.line] if position.line < len(lines) else ""
    for index in range(len(line) + 1):
        if _units(line[:index], encoding) >= position.character:
            return offset + index
    return offset + len(line)


def apply_edits(text: str, edits, encoding: str) -> str:
    """Apply LSP text edits as an editor does (all ranges refer to the original text)."""
    spans = [
        (_offset(text, e.range.start, encoding), _offset(text, e.range.end, encoding), e.new_text)
        for e in edits
    ]
    for start, end, new in sorted(spans, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def edits_for(edit: types.WorkspaceEdit, uri: str) -> list[types.TextEdit]:
    if edit.document_changes:
        return [
            e for change in edit.document_changes if change.text_document.uri == uri for e in change.edits
        ]
    return list((edit.changes or {}).get(uri, []))


def encoding_of(client) -> str:
    return {"neovim": "utf-8", "emacs": "utf-32"}.get(client.editor, "utf-16")


async def diagnostics_for(client: Editor, uri: str, version: int | None = None) -> list[types.Diagnostic]:
    """The diagnostics of `uri` once the server has published them for `version` (any if None)."""

    async def wait() -> list[types.Diagnostic]:
        while True:
            for published_uri, published_version, diagnostics in reversed(client.published):
                if published_uri == uri:
                    if version is None or published_version == version:
                        return diagnostics
                    break
            await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)

    return await asyncio.wait_for(wait(), TIMEOUT)


def open_file(client: Editor, path: Path, text: str, version: int = 1) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    uri = path.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", version, text))
    )
    return uri


def change(client: Editor, uri: str, version: int, text: str) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            [types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )


async def actions_at(client: Editor, uri: str, diagnostic: types.Diagnostic, only=None):
    context = types.CodeActionContext(diagnostics=[diagnostic], only=only)
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(types.TextDocumentIdentifier(uri), diagnostic.range, context)
    )
    return actions or []


async def resolved(client: Editor, action: types.CodeAction) -> types.CodeAction:
    if action.edit is None:
        action = await client.code_action_resolve_async(action)
    assert action.edit is not None
    return action


# -- tests ----------------------------------------------------------------------------------------


@scenario("vscode", "neovim", "emacs")
async def test_quick_fix_inserts_zero_grad_and_the_diagnostic_clears(client):
    uri = open_file(client, client.root / "train.py", MISSING_ZERO_GRAD)
    (diagnostic,) = await diagnostics_for(client, uri, 1)
    assert diagnostic.code == "LL101"
    assert diagnostic.source == "looplint"
    assert diagnostic.severity == types.DiagnosticSeverity.Warning
    assert (diagnostic.range.start.line, diagnostic.range.start.character) == (7, 8)
    assert diagnostic.code_description is not None
    page = Path(diagnostic.code_description.href.removeprefix("file://"))
    assert "### LL101 `missing-zero-grad`" in page.read_text()

    actions = await actions_at(client, uri, diagnostic)
    titles = [action.title for action in actions]
    assert titles == [
        "Insert `optimizer.zero_grad()` before the backward pass (LL101)",
        "Disable LL101 for this line",
        "Fix all looplint problems",
    ]
    fix = await resolved(client, actions[0])
    assert fix.kind == types.CodeActionKind.QuickFix and fix.is_preferred
    fixed = apply_edits(MISSING_ZERO_GRAD, edits_for(fix.edit, uri), encoding_of(client))
    assert fixed == MISSING_ZERO_GRAD.replace(
        "        loss.backward()", "        optimizer.zero_grad()\n        loss.backward()"
    )
    change(client, uri, 2, fixed)
    assert await diagnostics_for(client, uri, 2) == []


@scenario("vscode", "neovim", "emacs")
async def test_fix_all_and_noqa_actions(client):
    uri = open_file(client, client.root / "train.py", TWO_FIXABLE)
    diagnostics = await diagnostics_for(client, uri, 1)
    assert sorted(d.code for d in diagnostics) == ["LL101", "LL301"]

    (fix_all,) = await actions_at(client, uri, diagnostics[0], only=["source.fixAll"])
    assert fix_all.kind == "source.fixAll.looplint"
    fix_all = await resolved(client, fix_all)
    fixed = apply_edits(TWO_FIXABLE, edits_for(fix_all.edit, uri), encoding_of(client))
    assert "optimizer.zero_grad()" in fixed and fixed.rstrip().endswith("    writer.close()")
    change(client, uri, 2, fixed)
    assert await diagnostics_for(client, uri, 2) == []

    # Back to the buggy text: silence LL301 with the "Disable" action.
    change(client, uri, 3, TWO_FIXABLE)
    diagnostics = await diagnostics_for(client, uri, 3)
    ll301 = next(d for d in diagnostics if d.code == "LL301")
    noqa = next(a for a in await actions_at(client, uri, ll301) if a.title == "Disable LL301 for this line")
    silenced = apply_edits(TWO_FIXABLE, edits_for(noqa.edit, uri), encoding_of(client))
    assert "        writer.close()  # noqa: LL301\n" in silenced
    change(client, uri, 4, silenced)
    assert [d.code for d in await diagnostics_for(client, uri, 4)] == ["LL101"]


@scenario()
async def test_hover_shows_the_rule_page(client):
    uri = open_file(client, client.root / "train.py", MISSING_ZERO_GRAD)
    (diagnostic,) = await diagnostics_for(client, uri, 1)
    hover = await client.text_document_hover_async(
        types.HoverParams(types.TextDocumentIdentifier(uri), diagnostic.range.start)
    )
    assert hover is not None and hover.contents.kind == types.MarkupKind.Markdown
    text = hover.contents.value
    for part in (
        "**LL101**",
        "**What it does**",
        "**Why is this bad?**",
        "**Example**",
        "**Fix**",
        "```python",
    ):
        assert part in text
    elsewhere = await client.text_document_hover_async(
        types.HoverParams(types.TextDocumentIdentifier(uri), types.Position(0, 0))
    )
    assert elsewhere is None


@scenario()
async def test_configuration_is_read_again_when_it_changes(client):
    root: Path = client.root
    uri = open_file(client, root / "scripts" / "train.py", MISSING_ZERO_GRAD)
    assert [d.code for d in await diagnostics_for(client, uri, 1)] == ["LL101"]
    published = len(client.published)

    # The project starts ignoring LL101 under scripts/; saving pyproject.toml in the editor
    # (or the watcher reporting it changed) re-lints every open document.
    pyproject = root / "pyproject.toml"
    pyproject.write_text('[tool.looplint]\nper-file-ignores = {"scripts/*" = ["LL101"]}\n')
    client.text_document_did_save(
        types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(pyproject.as_uri()))
    )

    async def cleared() -> None:
        while client.diagnostics[uri]:
            await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)

    await asyncio.wait_for(cleared(), TIMEOUT)
    assert len(client.published) > published

    # VS Code registers for file events: a change made outside the editor is seen too.
    assert any(r.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES for r in client.registrations)
    pyproject.write_text("[tool.looplint]\n")
    client.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams([types.FileEvent(pyproject.as_uri(), types.FileChangeType.Changed)])
    )

    async def back() -> None:
        while not client.diagnostics[uri]:
            await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)

    await asyncio.wait_for(back(), TIMEOUT)


@scenario()
async def test_noqa_comment_typed_in_the_editor_is_respected(client):
    uri = open_file(client, client.root / "train.py", MISSING_ZERO_GRAD)
    assert len(await diagnostics_for(client, uri, 1)) == 1
    change(client, uri, 2, MISSING_ZERO_GRAD.replace("optimizer.step()", "optimizer.step()  # noqa: LL1"))
    assert await diagnostics_for(client, uri, 2) == []


@scenario()
async def test_syntax_error_is_ll000_and_the_server_keeps_serving(client):
    broken = MISSING_ZERO_GRAD.replace("loss.backward()", "loss.backward(")
    uri = open_file(client, client.root / "train.py", broken)
    (diagnostic,) = await diagnostics_for(client, uri, 1)
    assert diagnostic.code == "LL000"
    assert diagnostic.severity == types.DiagnosticSeverity.Error
    assert [a.title for a in await actions_at(client, uri, diagnostic)] == []
    change(client, uri, 2, MISSING_ZERO_GRAD)
    assert [d.code for d in await diagnostics_for(client, uri, 2)] == ["LL101"]


@scenario("vscode", "neovim", "emacs")
async def test_positions_are_in_the_clients_encoding(client):
    text = MISSING_ZERO_GRAD.replace(
        "        optimizer.step()", '        note = "\U0001f525 é"; optimizer.step()'
    )
    uri = open_file(client, client.root / "train.py", text)
    (diagnostic,) = await diagnostics_for(client, uri, 1)
    line = text.splitlines()[7]
    start = line.index("optimizer.step()")
    encoding = encoding_of(client)
    assert diagnostic.range.start.character == _units(line[:start], encoding)
    assert diagnostic.range.end.character == _units(line[: start + len("optimizer.step()")], encoding)


@scenario()
async def test_rapid_changes_do_not_pile_up(client):
    base = MISSING_ZERO_GRAD * 20
    uri = open_file(client, client.root / "train.py", base)
    await diagnostics_for(client, uri, 1)
    before = len(client.published)
    for version in range(2, 202):
        change(client, uri, version, base + f"# edit {version}\n")
    final = await diagnostics_for(client, uri, 201)
    assert len(final) == 20
    versions = [v for u, v, _ in client.published[before:] if u == uri]
    # Superseded work is dropped: a handful of lints for 200 changes, in order, ending at the last.
    assert len(versions) <= 10, versions
    assert versions == sorted(versions) and versions[-1] == 201


@scenario("vscode", "neovim", "emacs")
async def test_notebook_cells_are_linted_as_one_program(client):
    root: Path = client.root
    notebook_uri = (root / "train.ipynb").as_uri()
    cells = [
        "import torch\nmodel = torch.nn.Linear(2, 1)\noptimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n",
        (
            "%matplotlib inline\nfor x, y in loader:\n    loss = (model(x) - y).pow(2).mean()\n"
            "    loss.backward()\n    optimizer.step()\n"
        ),
    ]
    cell_uris = [f"vscode-notebook-cell:{root / 'train.ipynb'}#cell{index}" for index in range(len(cells))]
    client.notebook_document_did_open(
        types.DidOpenNotebookDocumentParams(
            notebook_document=types.NotebookDocument(
                uri=notebook_uri,
                notebook_type="jupyter-notebook",
                version=1,
                cells=[
                    types.NotebookCell(kind=types.NotebookCellKind.Code, document=uri) for uri in cell_uris
                ],
            ),
            cell_text_documents=[
                types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
                for uri, text in zip(cell_uris, cells)
            ],
        )
    )
    (diagnostic,) = await diagnostics_for(client, cell_uris[1], 1)
    assert diagnostic.code == "LL101"
    assert diagnostic.range.start.line == 4  # line 5 of the cell, under the %magic line
    assert await diagnostics_for(client, cell_uris[0], 1) == []

    actions = await actions_at(client, cell_uris[1], diagnostic)
    fix = await resolved(client, actions[0])
    fixed = apply_edits(cells[1], edits_for(fix.edit, cell_uris[1]), encoding_of(client))
    assert "    optimizer.zero_grad()\n    loss.backward()" in fixed
    assert fixed.startswith("%matplotlib inline\n")

    client.notebook_document_did_change(
        types.DidChangeNotebookDocumentParams(
            notebook_document=types.VersionedNotebookDocumentIdentifier(version=2, uri=notebook_uri),
            change=types.NotebookDocumentChangeEvent(
                cells=types.NotebookDocumentCellChanges(
                    text_content=[
                        types.NotebookDocumentCellContentChanges(
                            document=types.VersionedTextDocumentIdentifier(uri=cell_uris[1], version=2),
                            changes=[types.TextDocumentContentChangeWholeDocument(text=fixed)],
                        )
                    ]
                )
            ),
        )
    )
    assert await diagnostics_for(client, cell_uris[1], 2) == []


@scenario()
async def test_a_broken_configuration_is_shown_not_guessed(client):
    root: Path = client.root
    (root / "pyproject.toml").write_text("[tool.looplint]\nselec = ['LL1']\n")
    uri = open_file(client, root / "train.py", MISSING_ZERO_GRAD)
    assert await diagnostics_for(client, uri, 1) == []
    (message,) = client.messages
    assert message.type == types.MessageType.Error
    assert "unknown key 'selec'" in message.message
