"""The server's text computations: `# noqa` lines, line edits, position units."""

from __future__ import annotations

import pytest

from looplint.adapters.lsp_edits import (
    client_column,
    line_edits,
    noqa_line,
    rule_markdown,
    server_column,
    split_lines,
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("    optimizer.step()", "    optimizer.step()  # noqa: LL101"),
        ("    optimizer.step()   ", "    optimizer.step()  # noqa: LL101"),
        ("    optimizer.step()  # noqa: LL2", "    optimizer.step()  # noqa: LL2, LL101"),
        ("    optimizer.step()  # noqa:LL203 because", "    optimizer.step()  # noqa:LL203, LL101 because"),
        ("    optimizer.step()  # see issue", "    optimizer.step()  # see issue  # noqa: LL101"),
        (
            '    log("# noqa: LL2"); optimizer.step()',
            '    log("# noqa: LL2"); optimizer.step()  # noqa: LL101',
        ),
        ("    x = optimizer.step() + \\", None),
    ],
)
def test_noqa_line(line, expected):
    assert noqa_line(line, "LL101") == expected


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("a\nb\nc\n", "a\nx\nb\nc\n"),
        ("a\nb\nc", "a\nb\nz"),
        ("a\r\nb\r\n", "a\r\nb\r\nc\r\n"),
        ("", "a\n"),
        ("a\nb", "a\n"),
    ],
)
def test_line_edits_rebuild_the_new_text(old, new):
    lines = split_lines(old)
    text = old
    for edit in sorted(line_edits(old, new), key=lambda e: e.start_line, reverse=True):
        start = sum(len(line) for line in lines[: edit.start_line])
        end = sum(len(line) for line in lines[: edit.end_line]) + edit.end_column
        text = text[:start] + edit.text + text[end:]
    assert text == new


def test_columns_in_each_encoding():
    line = 'x = "\U0001f525é"; y'
    column = line.index("y")
    assert client_column(line, column, "utf-32") == column
    assert client_column(line, column, "utf-16") == column + 1
    assert client_column(line, column, "utf-8") == column + 3 + 1
    for encoding in ("utf-8", "utf-16", "utf-32"):
        assert server_column(line, client_column(line, column, encoding), encoding) == column


def test_rule_pages_fence_their_code():
    page = rule_markdown("LL101")
    assert page is not None and page.count("```python") == 2
    assert rule_markdown("LL999") is None


def test_server_without_its_extra_says_how_to_install_it():
    import subprocess
    import sys

    # pygls made unimportable, as in an installation without the `server` extra.
    code = (
        "import sys; sys.modules['pygls'] = None; sys.modules['lsprotocol'] = None\n"
        "from looplint.adapters.cli import main; sys.exit(main(['server']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert result.stderr.startswith("looplint: error: 'looplint server' needs the server extra")
    assert len(result.stderr.splitlines()) == 1


def test_importing_looplint_loads_no_adapter_dependency():
    import subprocess
    import sys

    code = (
        "import sys, looplint, looplint.adapters.cli\n"
        "print(sorted(m for m in ('pygls', 'lsprotocol', 'IPython', 'flake8') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == "[]"
