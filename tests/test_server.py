"""`looplint server` end to end: a real LSP client (pytest-lsp) talks to the server over stdio.

The client announces the capabilities of real editors (VS Code: UTF-16 positions and lazily
resolved fixes; Neovim: UTF-8 and plain `changes`; Emacs: UTF-32 and no resolve support), so each
path through the server is exercised the way that editor would.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("pygls", reason="needs the server extra")
pytest_lsp = pytest.importorskip("pytest_lsp")
pytestmark = pytest.mark.asyncio

from lsprotocol import types
from pygls.protocol import default_converter
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

ROOT = Path(__file__).resolve().parent.parent
EDITORS = {"vscode": "visual-studio-code@v1.65.2", "neovim": "neovim@v0.11.0", "emacs": "emacs@v29.1"}
TIMEOUT = 20

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


def _record_publish(client: LanguageClient, params: types.PublishDiagnosticsParams) -> None:
    client.diagnostics[params.uri] = params.diagnostics
    client.published.append((params.uri, params.version, list(params.diagnostics)))  # type: ignore[attr-defined]


def _register_capability(client: LanguageClient, params: types.RegistrationParams) -> None:
    client.registrations.extend(params.registrations)  # type: ignore[attr-defined]


def make_client() -> LanguageClient:
    """pytest-lsp's client, also keeping every publishDiagnostics and accepting registrations."""
    client = LanguageClient(converter_factory=default_converter)
    client.published = []  # type: ignore[attr-defined]
    client.registrations = []  # type: ignore[attr-defined]
    features = dict(DEFAULT_CLIENT_FEATURES)
    features[types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS] = _record_publish
    features[types.CLIENT_REGISTER_CAPABILITY] = _register_capability
    register_lsp_features(client, features)
    return client


# Rule pages go to a throwaway cache, not the home directory.
SERVER_ENV = dict(os.environ, XDG_CACHE_HOME=os.path.join(tempfile.gettempdir(), "looplint-test-cache"))
CONFIG = ClientServerConfig(
    server_command=[sys.executable, "-m", "looplint", "server", "--stdio"],
    client_factory=make_client,
    server_env=SERVER_ENV,
)


def _capabilities(editor: str) -> types.ClientCapabilities:
    capabilities = client_capabilities(EDITORS[editor])
    capabilities.notebook_document = types.NotebookDocumentClientCapabilities(
        synchronization=types.NotebookDocumentSyncClientCapabilities()
    )
    return capabilities


async def _start(lsp_client: LanguageClient, editor: str, root: Path):
    lsp_client.editor = editor  # type: ignore[attr-defined]
    lsp_client.root = root  # type: ignore[attr-defined]
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=_capabilities(editor),
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name="project")],
        )
    )


@pytest_lsp.fixture(config=CONFIG)
async def client(lsp_client: LanguageClient, tmp_path):
    """A client with VS Code's capabilities."""
    await _start(lsp_client, "vscode", tmp_path)
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=CONFIG, params=list(EDITORS))
async def each_client(lsp_client: LanguageClient, request, tmp_path):
    """One client per editor's capabilities (position encodings, resolve support, edit kinds)."""
    await _start(lsp_client, request.param, tmp_path)
    yield
    await lsp_client.shutdown_session()


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


def encoding_of(client: LanguageClient) -> str:
    return {"neovim": "utf-8", "emacs": "utf-32"}.get(client.editor, "utf-16")  # type: ignore[attr-defined]


async def diagnostics_for(
    client: LanguageClient, uri: str, version: int | None = None
) -> list[types.Diagnostic]:
    """The diagnostics of `uri` once the server has published them for `version` (any if None)."""

    async def wait() -> list[types.Diagnostic]:
        while True:
            for published_uri, published_version, diagnostics in reversed(client.published):  # type: ignore[attr-defined]
                if published_uri == uri:
                    if version is None or published_version == version:
                        return diagnostics
                    break
            await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)

    return await asyncio.wait_for(wait(), TIMEOUT)


def open_file(client: LanguageClient, path: Path, text: str, version: int = 1) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    uri = path.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", version, text))
    )
    return uri


def change(client: LanguageClient, uri: str, version: int, text: str) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            [types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )


async def actions_at(client: LanguageClient, uri: str, diagnostic: types.Diagnostic, only=None):
    context = types.CodeActionContext(diagnostics=[diagnostic], only=only)
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(types.TextDocumentIdentifier(uri), diagnostic.range, context)
    )
    return actions or []


async def resolved(client: LanguageClient, action: types.CodeAction) -> types.CodeAction:
    if action.edit is None:
        action = await client.code_action_resolve_async(action)
    assert action.edit is not None
    return action


# -- tests ----------------------------------------------------------------------------------------


async def test_quick_fix_inserts_zero_grad_and_the_diagnostic_clears(each_client: LanguageClient):
    uri = open_file(each_client, each_client.root / "train.py", MISSING_ZERO_GRAD)  # type: ignore[attr-defined]
    (diagnostic,) = await diagnostics_for(each_client, uri, 1)
    assert diagnostic.code == "LL101"
    assert diagnostic.source == "looplint"
    assert diagnostic.severity == types.DiagnosticSeverity.Warning
    assert (diagnostic.range.start.line, diagnostic.range.start.character) == (7, 8)
    assert diagnostic.code_description is not None
    page = Path(diagnostic.code_description.href.removeprefix("file://"))
    assert "### LL101 `missing-zero-grad`" in page.read_text()

    actions = await actions_at(each_client, uri, diagnostic)
    titles = [action.title for action in actions]
    assert titles == [
        "Insert `optimizer.zero_grad()` before the backward pass (LL101)",
        "Disable LL101 for this line",
        "Fix all looplint problems",
    ]
    fix = await resolved(each_client, actions[0])
    assert fix.kind == types.CodeActionKind.QuickFix and fix.is_preferred
    fixed = apply_edits(MISSING_ZERO_GRAD, edits_for(fix.edit, uri), encoding_of(each_client))
    assert fixed == MISSING_ZERO_GRAD.replace(
        "        loss.backward()", "        optimizer.zero_grad()\n        loss.backward()"
    )
    change(each_client, uri, 2, fixed)
    assert await diagnostics_for(each_client, uri, 2) == []


async def test_fix_all_and_noqa_actions(each_client: LanguageClient):
    uri = open_file(each_client, each_client.root / "train.py", TWO_FIXABLE)  # type: ignore[attr-defined]
    diagnostics = await diagnostics_for(each_client, uri, 1)
    assert sorted(d.code for d in diagnostics) == ["LL101", "LL301"]

    (fix_all,) = await actions_at(each_client, uri, diagnostics[0], only=["source.fixAll"])
    assert fix_all.kind == "source.fixAll.looplint"
    fix_all = await resolved(each_client, fix_all)
    fixed = apply_edits(TWO_FIXABLE, edits_for(fix_all.edit, uri), encoding_of(each_client))
    assert "optimizer.zero_grad()" in fixed and fixed.rstrip().endswith("    writer.close()")
    change(each_client, uri, 2, fixed)
    assert await diagnostics_for(each_client, uri, 2) == []

    # Back to the buggy text: silence LL301 with the "Disable" action.
    change(each_client, uri, 3, TWO_FIXABLE)
    diagnostics = await diagnostics_for(each_client, uri, 3)
    ll301 = next(d for d in diagnostics if d.code == "LL301")
    noqa = next(
        a for a in await actions_at(each_client, uri, ll301) if a.title == "Disable LL301 for this line"
    )
    silenced = apply_edits(TWO_FIXABLE, edits_for(noqa.edit, uri), encoding_of(each_client))
    assert "        writer.close()  # noqa: LL301\n" in silenced
    change(each_client, uri, 4, silenced)
    assert [d.code for d in await diagnostics_for(each_client, uri, 4)] == ["LL101"]


async def test_hover_shows_the_rule_page(client: LanguageClient):
    uri = open_file(client, client.root / "train.py", MISSING_ZERO_GRAD)  # type: ignore[attr-defined]
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


async def test_configuration_is_read_again_when_it_changes(client: LanguageClient):
    root: Path = client.root  # type: ignore[attr-defined]
    uri = open_file(client, root / "scripts" / "train.py", MISSING_ZERO_GRAD)
    assert [d.code for d in await diagnostics_for(client, uri, 1)] == ["LL101"]
    published = len(client.published)  # type: ignore[attr-defined]

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
    assert len(client.published) > published  # type: ignore[attr-defined]

    # VS Code registers for file events: a change made outside the editor is seen too.
    assert any(r.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES for r in client.registrations)  # type: ignore[attr-defined]
    pyproject.write_text("[tool.looplint]\n")
    client.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams([types.FileEvent(pyproject.as_uri(), types.FileChangeType.Changed)])
    )

    async def back() -> None:
        while not client.diagnostics[uri]:
            await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)

    await asyncio.wait_for(back(), TIMEOUT)


async def test_noqa_comment_typed_in_the_editor_is_respected(client: LanguageClient):
    uri = open_file(client, client.root / "train.py", MISSING_ZERO_GRAD)  # type: ignore[attr-defined]
    assert len(await diagnostics_for(client, uri, 1)) == 1
    change(client, uri, 2, MISSING_ZERO_GRAD.replace("optimizer.step()", "optimizer.step()  # noqa: LL1"))
    assert await diagnostics_for(client, uri, 2) == []


async def test_syntax_error_is_ll000_and_the_server_keeps_serving(client: LanguageClient):
    broken = MISSING_ZERO_GRAD.replace("loss.backward()", "loss.backward(")
    uri = open_file(client, client.root / "train.py", broken)  # type: ignore[attr-defined]
    (diagnostic,) = await diagnostics_for(client, uri, 1)
    assert diagnostic.code == "LL000"
    assert diagnostic.severity == types.DiagnosticSeverity.Error
    assert [a.title for a in await actions_at(client, uri, diagnostic)] == []
    change(client, uri, 2, MISSING_ZERO_GRAD)
    assert [d.code for d in await diagnostics_for(client, uri, 2)] == ["LL101"]


async def test_positions_are_in_the_each_clients_encoding(each_client: LanguageClient):
    text = MISSING_ZERO_GRAD.replace(
        "        optimizer.step()", '        note = "\U0001f525 é"; optimizer.step()'
    )
    uri = open_file(each_client, each_client.root / "train.py", text)  # type: ignore[attr-defined]
    (diagnostic,) = await diagnostics_for(each_client, uri, 1)
    line = text.splitlines()[7]
    start = line.index("optimizer.step()")
    encoding = encoding_of(each_client)
    assert diagnostic.range.start.character == _units(line[:start], encoding)
    assert diagnostic.range.end.character == _units(line[: start + len("optimizer.step()")], encoding)


async def test_rapid_changes_do_not_pile_up(client: LanguageClient):
    base = MISSING_ZERO_GRAD * 20
    uri = open_file(client, client.root / "train.py", base)  # type: ignore[attr-defined]
    await diagnostics_for(client, uri, 1)
    before = len(client.published)  # type: ignore[attr-defined]
    for version in range(2, 202):
        change(client, uri, version, base + f"# edit {version}\n")
    final = await diagnostics_for(client, uri, 201)
    assert len(final) == 20
    versions = [v for u, v, _ in client.published[before:] if u == uri]  # type: ignore[attr-defined]
    # Superseded work is dropped: a handful of lints for 200 changes, in order, ending at the last.
    print("published versions:", versions)
    assert len(versions) <= 10, versions
    assert versions == sorted(versions) and versions[-1] == 201


async def test_notebook_cells_are_linted_as_one_program(each_client: LanguageClient):
    root: Path = each_client.root  # type: ignore[attr-defined]
    notebook_uri = (root / "train.ipynb").as_uri()
    cells = [
        "import torch\nmodel = torch.nn.Linear(2, 1)\noptimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n",
        (
            "%matplotlib inline\nfor x, y in loader:\n    loss = (model(x) - y).pow(2).mean()\n"
            "    loss.backward()\n    optimizer.step()\n"
        ),
    ]
    cell_uris = [f"vscode-notebook-cell:{root / 'train.ipynb'}#cell{index}" for index in range(len(cells))]
    each_client.notebook_document_did_open(
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
    (diagnostic,) = await diagnostics_for(each_client, cell_uris[1], 1)
    assert diagnostic.code == "LL101"
    assert diagnostic.range.start.line == 4  # line 5 of the cell, under the %magic line
    assert await diagnostics_for(each_client, cell_uris[0], 1) == []

    actions = await actions_at(each_client, cell_uris[1], diagnostic)
    fix = await resolved(each_client, actions[0])
    fixed = apply_edits(cells[1], edits_for(fix.edit, cell_uris[1]), encoding_of(each_client))
    assert "    optimizer.zero_grad()\n    loss.backward()" in fixed
    assert fixed.startswith("%matplotlib inline\n")

    each_client.notebook_document_did_change(
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
    assert await diagnostics_for(each_client, cell_uris[1], 2) == []


async def test_a_broken_configuration_is_shown_not_guessed(client: LanguageClient):
    root: Path = client.root  # type: ignore[attr-defined]
    (root / "pyproject.toml").write_text("[tool.looplint]\nselec = ['LL1']\n")
    uri = open_file(client, root / "train.py", MISSING_ZERO_GRAD)
    assert await diagnostics_for(client, uri, 1) == []
    (message,) = client.messages
    assert message.type == types.MessageType.Error
    assert "unknown key 'selec'" in message.message
