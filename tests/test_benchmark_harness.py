"""The measuring instruments of benchmarks/: the corpus manifest and its split, the sweep's
comparison of two runs, and the mutation test's candidates and verdicts on a small project
linted by the real looplint."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import corpus_tools
import mutation_recall
import sweep

ENGINE = """\
import torch


def train_one_epoch(model, loader, optimizer, criterion):
    total = 0.0
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / len(loader)
"""

TRAIN = """\
from torch.utils.tensorboard import SummaryWriter

from engine import train_one_epoch

writer = SummaryWriter()
for epoch in range(10):
    average = train_one_epoch(model, loader, optimizer, criterion)
    writer.add_scalar("loss", average, epoch)
"""

SCRIPT = """\
for epoch in range(10):
    running_loss = 0.0
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
    print(running_loss / len(loader))
"""

EVALUATE = """\
def evaluate(model, loader, criterion):
    test_loss = 0
    with torch.no_grad():
        for x, y in loader:
            test_loss += criterion(model(x), y).item()
    test_loss /= len(loader)
    print(test_loss)
"""

# A loss summed over time steps and backpropagated is the step's loss, not a logged sum.
SEQUENCE = """\
for epoch in range(10):
    loss = 0
    for t in range(steps):
        loss += criterion(model(x[t]), y[t])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "owner__project"
    for name, text in {
        "engine.py": ENGINE,
        "train.py": TRAIN,
        "script.py": SCRIPT,
        "sequence.py": SEQUENCE,
        "evaluate.py": EVALUATE,
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_manifest_follows_its_split_rule_and_halves_the_corpus() -> None:
    repositories = corpus_tools.load_manifest()
    assert len(repositories) >= 40
    tune = [r for r in repositories if r.split == "tune"]
    assert 0.4 <= len(tune) / len(repositories) <= 0.6
    assert all(len(r.commit) == 40 for r in repositories)


def test_candidates_by_kind_shape_and_file(project: Path) -> None:
    mutants = mutation_recall.find_mutants(mutation_recall.Project(project))
    found = sorted((m.kind, m.shape, m.source.rel) for m in mutants)
    assert found == [
        ("clear", "same-function", "engine.py"),
        ("clear", "same-function", "script.py"),
        ("clear", "same-function", "sequence.py"),
        ("division", "cross-module", "engine.py"),
        ("division", "same-function", "evaluate.py"),
        ("division", "same-function", "script.py"),
        ("item", "same-function", "engine.py"),
        ("item", "same-function", "script.py"),
        ("reset", "same-function", "script.py"),
    ]
    for mutant in mutants:
        ast.parse(mutant.mutated_text())
    reset = next(m for m in mutants if m.kind == "reset")
    assert reset.mutated_text().splitlines()[:3] == [
        "running_loss = 0.0",
        "for epoch in range(10):",
        "    pass",
    ]
    assert reset.anchors == {("script.py", 1)}
    division = next(m for m in mutants if m.kind == "division" and m.shape == "cross-module")
    assert "return total\n" in division.mutated_text()
    assert division.anchors == {("train.py", 8)}


def test_verdicts_against_looplint(project: Path) -> None:
    repository = corpus_tools.Repository("owner/project", "0" * 40, "tune")
    parsed = mutation_recall.Project(project)
    mutants = mutation_recall.find_mutants(parsed)
    outcomes = list(mutation_recall.test_repository(repository, project.parent, mutants, parsed, whole=False))
    verdicts = {(o.mutant.kind, o.mutant.shape, o.mutant.source.rel): o.status for o in outcomes}
    # The loops in one function are caught; every mutant was linted (none skipped or broken).
    assert verdicts[("clear", "same-function", "script.py")] == "caught"
    assert verdicts[("reset", "same-function", "script.py")] == "caught"
    assert verdicts[("item", "same-function", "script.py")] == "caught"
    assert verdicts[("division", "same-function", "evaluate.py")] == "caught"
    assert set(verdicts.values()) <= {"caught", "elsewhere", "missed"}
    assert (project / "engine.py").read_text() == ENGINE  # the project itself is never touched


def test_notebooks_are_joined_with_ipython_lines_blanked() -> None:
    cells = [
        {"cell_type": "markdown", "source": ["# title"]},
        {"cell_type": "code", "source": ["%matplotlib inline\n", "x = 1\n"]},
        {"cell_type": "code", "source": "!pip install torch\ny = x"},
    ]
    notebook = {"cells": cells, "metadata": {"kernelspec": {"language": "python"}}}
    source, origin = mutation_recall.join_cells(json.dumps(notebook))
    assert source == "\nx = 1\n\ny = x\n"
    assert origin == [(2, 1), (2, 2), (3, 1), (3, 2)]
    notebook["metadata"] = {"kernelspec": {"language": "R"}}
    assert mutation_recall.join_cells(json.dumps(notebook)) is None


def test_compare_prints_what_appeared_and_disappeared(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    def finding(line: int, code: str) -> dict:
        context = [f">{line:5} total += loss"]
        return {
            "repository": "o/r",
            "path": "t.py",
            "cell": None,
            "line": line,
            "column": 5,
            "code": code,
            "message": "m",
            "context": context,
        }

    def report(*findings: dict) -> dict:
        return {
            "looplint": "x",
            "split": "tune",
            "repositories": [{"name": "o/r"}],
            "findings": list(findings),
        }

    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(report(finding(3, "LL203"), finding(9, "LL202"))))
    new.write_text(json.dumps(report(finding(3, "LL203"), finding(5, "LL101"))))
    sweep.compare(old, new)
    out = capsys.readouterr().out
    assert "appeared: 1\n  o/r/t.py:5: LL101 m\n      total += loss" in out
    assert "disappeared: 1\n  o/r/t.py:9: LL202 m" in out
    assert "per rule (new - old): LL101:+1 LL202:-1" in out
