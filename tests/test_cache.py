"""The per-file cache: reused when nothing changed, never trusted when anything did."""

from __future__ import annotations

import json
import textwrap

import pytest

from looplint.adapters.cli import main
from looplint.engine import lint_paths
from looplint.engine.cache import CACHE_DIR
from looplint.engine.config import Config

LOOP = textwrap.dedent(
    """\
    def train(model, loader, optimizer, criterion):
        for inputs, targets in loader:
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
    """
)


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    for index in range(5):
        (tmp_path / "src" / f"m{index}").mkdir(parents=True)
        (tmp_path / "src" / f"m{index}" / "train.py").write_text(LOOP)
    (tmp_path / "src" / "broken.py").write_text("x = (\n")
    return tmp_path


def entries(root):
    return sorted((root / CACHE_DIR / "entries").glob("*.json"))


def test_warm_run_reuses_every_entry(project):
    config = Config(root=project)
    cold = lint_paths(["src"], config, jobs=1)
    assert (cold.files, cold.cached) == (6, 0)
    assert len(entries(project)) == 6
    warm = lint_paths(["src"], config, jobs=1)
    assert (warm.files, warm.cached) == (6, 6)
    assert warm.findings == cold.findings
    assert [f.message for f in warm.findings] == [f.message for f in cold.findings]
    assert warm.findings[0].fix == cold.findings[0].fix


def test_warm_results_really_come_from_the_cache(project):
    config = Config(root=project)
    lint_paths(["src/m0/train.py"], config, jobs=1)
    [entry] = entries(project)
    data = json.loads(entry.read_text())
    data["findings"][0]["message"] = "served from the cache"
    entry.write_text(json.dumps(data))
    [finding] = lint_paths(["src/m0/train.py"], config, jobs=1).findings
    assert finding.message == "served from the cache"


def test_cache_directory_ignores_itself_for_git(project):
    lint_paths(["src"], Config(root=project), jobs=1)
    assert (project / CACHE_DIR / ".gitignore").read_text() == "*\n"


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: "",
        lambda text: text[: len(text) // 2],  # a write cut short
        lambda text: "\x00\xff garbage",
        lambda text: json.dumps({"key": json.loads(text)["key"], "findings": [{"line": "x"}]}),
        lambda text: json.dumps(
            {"key": json.loads(text)["key"], "findings": [{**json.loads(text)["findings"][0], "line": "7"}]}
        ),
        lambda text: json.dumps([1, 2, 3]),
    ],
    ids=["empty", "truncated", "binary", "missing-fields", "wrong-type", "wrong-shape"],
)
def test_damaged_entries_are_ignored_and_rewritten(project, damage):
    config = Config(root=project)
    cold = lint_paths(["src"], config, jobs=1)
    for entry in entries(project):
        entry.write_text(damage(entry.read_text()), errors="surrogateescape")
    rerun = lint_paths(["src"], config, jobs=1)
    assert rerun.cached == 0
    assert rerun.findings == cold.findings and not rerun.errors
    assert lint_paths(["src"], config, jobs=1).cached == 6


def test_changing_the_configuration_invalidates(project):
    lint_paths(["src"], Config(root=project), jobs=1)
    ignoring = lint_paths(["src"], Config(root=project, ignore=("LL101",)), jobs=1)
    assert ignoring.cached == 0
    assert [f.code for f in ignoring.findings] == ["LL000"]
    per_file = Config(root=project, per_file_ignores=(("src/m0/*", ("LL1",)),))
    result = lint_paths(["src"], per_file, jobs=1)
    assert result.cached == 0 and len(result.findings) == 5


def test_changing_the_content_invalidates_that_file_only(project):
    config = Config(root=project)
    lint_paths(["src"], config, jobs=1)
    (project / "src" / "m3" / "train.py").write_text(LOOP.replace("loss.backward()", "pass"))
    result = lint_paths(["src"], config, jobs=1)
    assert result.cached == 5
    assert len([f for f in result.findings if f.code == "LL101"]) == 4


def test_no_cache_reads_and_writes_nothing(project, capsys):
    assert main(["--no-cache", "src"]) == 1
    assert not (project / CACHE_DIR).exists()
    uncached = capsys.readouterr().out
    assert main(["src"]) == 1
    first = capsys.readouterr().out
    assert len(entries(project)) == 6
    assert main(["src"]) == 1
    assert capsys.readouterr().out == first == uncached


def test_a_file_that_fails_to_read_is_not_cached(project):
    config = Config(root=project)
    result = lint_paths(["src", "gone.py"], config, jobs=1)
    assert result.errors == ["gone.py: No such file or directory"]
    assert len(entries(project)) == 6


def test_parallel_workers_fill_the_same_cache(project):
    for index in range(30):
        (project / "more" / f"m{index:02d}.py").parent.mkdir(exist_ok=True)
        (project / "more" / f"m{index:02d}.py").write_text(LOOP if index % 2 else "x = 1\n")
    config = Config(root=project)
    cold = lint_paths(["more"], config, jobs=2)
    warm = lint_paths(["more"], config, jobs=2)
    assert warm.cached == 30
    assert warm.findings == cold.findings and len(cold.findings) == 15
