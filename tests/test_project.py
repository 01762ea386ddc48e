"""The analysis sees the project: imports resolved from disk, summaries cached, and cached
results recomputed exactly when something they depended on changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from looplint.adapters.cli import main
from looplint.engine import lint_paths
from looplint.engine.config import load_config
from looplint.static import Project, analyze_source

ENGINE = """\
import torch.nn.functional as F


def train_step(model, optimizer, x, y):
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()
"""
ENGINE_CLEARING = ENGINE.replace("    loss = F", "    optimizer.zero_grad()\n    loss = F")
TRAIN = """\
import torch

from engine import train_step

optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    train_step(model, optimizer, x, y)
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.looplint]\n")
    (tmp_path / "engine.py").write_text(ENGINE)
    (tmp_path / "train.py").write_text(TRAIN)
    return tmp_path


def codes(result) -> list[tuple[str, int, str]]:
    return [(Path(f.path).name, f.line, f.code) for f in result.findings]


def lint(root: Path):
    return lint_paths([str(root)], load_config(str(root)), jobs=1)


def test_a_file_linted_alone_sees_the_module_beside_it(project, capsys) -> None:
    assert main(["--no-cache", "train.py"]) == 1
    out = capsys.readouterr().out
    assert "train.py:7:5: LL101 `optimizer` steps (in `train_step()` of engine.py)" in out


def test_analyze_source_resolves_siblings_of_a_real_path(project) -> None:
    findings = analyze_source(TRAIN, str(project / "train.py"))
    assert [(f.line, f.code) for f in findings] == [(7, "LL101")]
    # Text with no file behind it has no project: the helper is unknown, and unknown is silent.
    assert analyze_source(TRAIN, "<stdin>") == []


def test_cached_results_follow_what_the_imported_module_does(project) -> None:
    first = lint(project)
    assert codes(first) == [("train.py", 7, "LL101")] and first.cached == 0
    warm = lint(project)
    assert codes(warm) == codes(first) and warm.cached == 2

    # A comment does not change what engine.py does: train.py's result stays cached.
    (project / "engine.py").write_text("# steps the optimizer\n" + ENGINE)
    commented = lint(project)
    assert codes(commented) == codes(first)
    assert commented.cached == 1  # train.py; engine.py itself changed

    # Now the helper clears the gradients: train.py must be analyzed again, and is clean.
    (project / "engine.py").write_text(ENGINE_CLEARING)
    fixed = lint(project)
    assert codes(fixed) == [] and fixed.cached == 0


def test_an_import_that_starts_resolving_invalidates_the_cached_result(project) -> None:
    (project / "engine.py").unlink()
    assert codes(lint(project)) == []  # `engine` is unknown: silent
    (project / "engine.py").write_text(ENGINE)
    assert codes(lint(project)) == [("train.py", 7, "LL101")]


def test_summaries_are_cached_on_disk_and_a_corrupt_entry_is_rebuilt(project) -> None:
    lint(project)
    entries = list((project / ".looplint_cache" / "summaries").glob("*.json"))
    assert entries
    for entry in entries:
        assert json.loads(entry.read_text())["summary"]["path"].endswith("engine.py")
        entry.write_text("{not json")
    cache = project / ".looplint_cache"
    fresh = Project(project, cache)
    assert fresh.function_summary(str(project / "engine.py"), "train_step") is not None
    assert codes(lint_paths(["train.py"], load_config("train.py"), jobs=1, use_cache=False)) == [
        ("train.py", 7, "LL101")
    ]


def test_packages_relative_imports_and_src_layouts(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.looplint]\n")
    package = tmp_path / "src" / "trainer"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from .engine import train_step\n")
    (package / "engine.py").write_text(ENGINE)
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "train.py").write_text(TRAIN.replace("from engine import", "from trainer import"))
    (scripts / "train_module.py").write_text(
        TRAIN.replace("from engine import train_step", "import trainer.engine as engine").replace(
            "    train_step(", "    engine.train_step("
        )
    )
    assert codes(lint(tmp_path)) == [("train.py", 7, "LL101"), ("train_module.py", 7, "LL101")]


def test_import_cycles_and_broken_modules_stay_unknown(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.looplint]\n")
    (tmp_path / "a.py").write_text("from b import helper\n\n\ndef step(opt):\n    helper(opt)\n")
    (tmp_path / "b.py").write_text("from a import step\n\n\ndef helper(opt):\n    step(opt)\n")
    (tmp_path / "broken.py").write_text("def train_step(model, optimizer, x, y):\n    loss = (\n")
    (tmp_path / "train.py").write_text(TRAIN.replace("from engine import", "from broken import"))
    result = lint(tmp_path)
    assert codes(result) == [("broken.py", 2, "LL000")]
    assert result.errors == []
