"""The editor set-ups in the README work as written: each snippet is taken from the README and run
in the real editor, headless, against `looplint server`. An editor that is not installed is
skipped (`LOOPLINT_TEST_NVIM` may name a Neovim binary that is not on PATH)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
FIXTURE = ROOT / "fixtures" / "static" / "ll101_missing.py"

NVIM_CHECK = """\
local out = {}
local ok = vim.wait(60000, function() return #vim.diagnostic.get(0) > 0 end, 50)
table.insert(out, "diagnostics: " .. tostring(ok))
for _, d in ipairs(vim.diagnostic.get(0)) do
  table.insert(out, string.format("%d:%d %s %s", d.lnum + 1, d.col + 1, d.source, d.code))
end
local d = vim.diagnostic.get(0)[1]
if d then
  vim.api.nvim_win_set_cursor(0, { d.lnum + 1, d.col })
  vim.lsp.buf.code_action({ apply = true, filter = function(a) return a.isPreferred end })
  local cleared = vim.wait(60000, function() return #vim.diagnostic.get(0) == 0 end, 50)
  table.insert(out, "cleared after quick fix: " .. tostring(cleared))
  vim.cmd("write")
end
vim.fn.writefile(out, vim.env.CHECK_OUT)
vim.cmd("qa!")
"""

EMACS_CHECK = """\
(package-initialize)
(require 'eglot)
(load (expand-file-name "setup.el"))
(find-file "train.py")
(run-hooks 'post-command-hook)  ; eglot-ensure connects after the next command
(let ((deadline (+ (float-time) 60)))
  (while (and (< (float-time) deadline) (null (flymake-diagnostics)))
    (accept-process-output nil 0.1)))
(dolist (d (flymake-diagnostics))
  (princ (format "%d: %s\\n" (line-number-at-pos (flymake-diagnostic-beg d)) (flymake-diagnostic-text d))))
(kill-emacs 0)
"""


def snippet(language: str, contains: str) -> str:
    blocks = [b for b in re.findall(rf"```{language}\n(.*?)```", README, re.DOTALL) if contains in b]
    assert len(blocks) == 1, f"one {language} block with {contains!r} in the README"
    return blocks[0]


def _environment() -> dict[str, str]:
    # The editor starts `looplint` from PATH, as the README says: this interpreter's scripts first.
    scripts = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=scripts + os.pathsep + os.environ.get("PATH", ""))


def _nvim() -> str:
    binary = os.environ.get("LOOPLINT_TEST_NVIM") or shutil.which("nvim")
    if not binary:
        pytest.skip("Neovim is not installed")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"NVIM v0\.(\d+)", version)
    if not match or int(match.group(1)) < 11:
        pytest.skip(f"the README's snippets need Neovim 0.11 to run both: {version.splitlines()[:1]}")
    return binary


@pytest.mark.slow
@pytest.mark.parametrize("contains", ["vim.lsp.config", "vim.lsp.start"])
def test_neovim_snippet(tmp_path, contains):
    nvim = _nvim()
    (tmp_path / "init.lua").write_text(snippet("lua", contains))
    (tmp_path / "check.lua").write_text(NVIM_CHECK)
    (tmp_path / "pyproject.toml").write_text("[tool.looplint]\n")
    shutil.copy(FIXTURE, tmp_path / "train.py")
    out = tmp_path / "out.txt"
    subprocess.run(
        [nvim, "--headless", "-u", "init.lua", "train.py", "-c", "luafile check.lua"],
        cwd=tmp_path,
        env={**_environment(), "CHECK_OUT": str(out), "XDG_CACHE_HOME": str(tmp_path / "cache")},
        timeout=180,
        capture_output=True,
        check=False,
    )
    assert out.read_text().splitlines() == [
        "diagnostics: true",
        "10:13 looplint LL101",
        "cleared after quick fix: true",
    ]
    assert (
        "            optimizer.zero_grad()\n            loss.backward()"
        in (tmp_path / "train.py").read_text()
    )


@pytest.mark.slow
def test_emacs_eglot_snippet(tmp_path):
    emacs = shutil.which("emacs")
    if not emacs:
        pytest.skip("Emacs is not installed")
    probe = subprocess.run(
        [emacs, "--batch", "--eval", "(progn (package-initialize) (require 'eglot))"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip("eglot is not installed")
    (tmp_path / "setup.el").write_text(snippet("elisp", "eglot-server-programs"))
    (tmp_path / "check.el").write_text(EMACS_CHECK)
    shutil.copy(FIXTURE, tmp_path / "train.py")
    result = subprocess.run(
        [emacs, "--batch", "-l", "check.el"],
        cwd=tmp_path,
        env={**_environment(), "XDG_CACHE_HOME": str(tmp_path / "cache")},
        timeout=180,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.startswith(
        "10: looplint [LL101]: `optimizer` steps inside the `for inputs, targets` loop"
    )
