"""The pre-commit hooks, run for real by pre-commit against this repository.

pre-commit installs looplint from a commit of this repository, so these tests exercise the last
commit (HEAD), not uncommitted work. `try-repo` builds a fresh virtualenv on every call; the other
tests use `pre-commit run` with a config naming this repository, whose virtualenv is built once and
shared by the session through PRE_COMMIT_HOME.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

BUGGY = """\
import torch

model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
"""

FIXED = BUGGY.replace("    loss.backward()", "    optimizer.zero_grad()\n    loss.backward()")


@pytest.fixture(scope="session")
def head() -> str:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout of looplint")
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="session")
def pre_commit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pre-commit-home")


@pytest.fixture
def project(tmp_path: Path, pre_commit_home: Path, head: str, monkeypatch: pytest.MonkeyPatch):
    """A fresh git repository in which to run our hooks."""
    monkeypatch.setenv("PRE_COMMIT_HOME", str(pre_commit_home))
    for variable in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(variable, "looplint tests")
    for variable in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(variable, "tests@looplint.invalid")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    return Project(tmp_path, head)


class Project:
    def __init__(self, path: Path, head: str) -> None:
        self.path = path
        self.head = head

    def add(self, name: str, text: str) -> Path:
        file = self.path / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
        subprocess.run(["git", "add", name], cwd=self.path, check=True)
        return file

    def try_repo(self, hook_id: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`pre-commit try-repo`: what a user runs first (it installs looplint afresh each time)."""
        return self._pre_commit("try-repo", str(ROOT), hook_id, "--ref", self.head, *args)

    def run(self, hook_id: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`pre-commit run` with looplint in the project's config (installed once per session)."""
        config = f"repos:\n-   repo: {ROOT}\n    rev: {self.head}\n    hooks:\n"
        config += "".join(f"    -   id: {hook}\n" for hook in ("looplint", "looplint-fix"))
        self.add(".pre-commit-config.yaml", config)
        return self._pre_commit("run", hook_id, *args)

    def _pre_commit(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pre_commit", *args, "--color", "never"]
        return subprocess.run(
            command, cwd=self.path, capture_output=True, text=True, timeout=600, check=False
        )


def test_hook_fails_on_the_bug_and_passes_once_fixed(project: Project):
    train = project.add("train.py", BUGGY)
    failed = project.try_repo("looplint", "--all-files")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "looplint..." in failed.stdout and "Failed" in failed.stdout
    assert "train.py:8:5: LL101" in failed.stdout

    train.write_text(FIXED)
    passed = project.try_repo("looplint", "--all-files")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "Passed" in passed.stdout


def test_fix_hook_rewrites_the_file_then_passes(project: Project):
    train = project.add("train.py", BUGGY)
    fixing = project.run("looplint-fix", "--all-files")
    # pre-commit fails a hook that changed files, so that the user reviews the change.
    assert fixing.returncode == 1, fixing.stdout + fixing.stderr
    assert "files were modified by this hook" in fixing.stdout
    assert train.read_text() == FIXED
    again = project.run("looplint-fix", "--all-files")
    assert again.returncode == 0, again.stdout + again.stderr


def test_no_matching_files_skips_the_hook(project: Project):
    project.add("README.md", "# not Python\n")
    result = project.run("looplint", "--all-files")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(no files to check)Skipped" in result.stdout


def test_hundreds_of_files_a_notebook_and_an_exclude(project: Project):
    nbformat = pytest.importorskip("nbformat")
    for index in range(300):
        project.add(f"pkg/module_{index}.py", FIXED if index % 2 else f"VALUE = {index}\n")
    project.add("pkg/module_150.py", BUGGY)
    # The project's own exclude applies to the files pre-commit names one by one.
    project.add("vendor/old_train.py", BUGGY)
    project.add("pyproject.toml", '[tool.looplint]\nexclude = ["vendor"]\n')
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# Train"), nbformat.v4.new_code_cell(BUGGY)]
    project.add("train.ipynb", nbformat.writes(notebook))
    result = project.run("looplint", "--all-files")
    assert result.returncode == 1, result.stdout + result.stderr
    reported = sorted(line for line in result.stdout.splitlines() if ": LL" in line)
    assert [line.split(" LL101 ")[0] for line in reported] == [
        "pkg/module_150.py:8:5:",
        "train.ipynb:cell 2:8:5:",
    ]


def test_hooks_file_is_a_valid_manifest_with_both_hooks():
    manifest = ROOT / ".pre-commit-hooks.yaml"
    subprocess.run([sys.executable, "-m", "pre_commit", "validate-manifest", str(manifest)], check=True)
    text = manifest.read_text()
    yaml = pytest.importorskip("yaml")
    hooks = {hook["id"]: hook for hook in yaml.safe_load(text)}
    assert set(hooks) == {"looplint", "looplint-fix"}
    for hook in hooks.values():
        assert hook["language"] == "python"
        assert hook["types_or"] == ["python", "jupyter"]
    assert hooks["looplint-fix"]["entry"].split()[:2] == ["looplint", "--fix"]
    assert os.path.basename(hooks["looplint"]["entry"].split()[0]) == "looplint"


def readme_config(*, fix: bool = False) -> str:
    """The `.pre-commit-config.yaml` the README shows, with its `looplint-fix` hook switched on
    (its lines uncommented, the first hook dropped) when `fix` is true."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n### pre-commit")
    config = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL).search(readme, start).group(1)
    if not fix:
        return config
    head, hooks = config.split("    hooks:\n")
    fix_hook = [
        re.sub(r"^(\s*)# ", r"\1", line) for line in hooks.splitlines() if line.lstrip().startswith("#")
    ]
    return head + "    hooks:\n" + "\n".join(fix_hook) + "\n"


def test_the_readme_config_works_as_written(project: Project, monkeypatch: pytest.MonkeyPatch):
    # The hook runs the looplint of the environment it is committed from: this one.
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    project.add(".pre-commit-config.yaml", readme_config())
    train = project.add("train.py", BUGGY)
    failed = project._pre_commit("run", "looplint")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "train.py:8:5: LL101" in failed.stdout and "Found 1 problem in 1 file" in failed.stdout

    project.add(".pre-commit-config.yaml", readme_config(fix=True))
    fixing = project._pre_commit("run", "looplint-fix")
    assert fixing.returncode == 1, fixing.stdout + fixing.stderr
    assert "files were modified by this hook" in fixing.stdout
    assert train.read_text() == FIXED
    subprocess.run(["git", "add", "train.py"], cwd=project.path, check=True)
    assert project._pre_commit("run", "looplint-fix").returncode == 0
