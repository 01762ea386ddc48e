"""`looplint run` under a real `torchrun --nproc_per_node 2` (gloo, CPU); merging rank reports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from looplint.findings import Finding
from looplint.runtime.distributed import merge

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "fixtures" / "runtime" / "ddp_writer.py"


def payload(rank: int, writers: list[dict], findings: list[Finding] = ()) -> dict:
    return {
        "rank": rank,
        "findings": [f.to_dict() for f in findings],
        "summary": {"optimizer_steps": 5, "backward_passes": 5, "optimizers": {}, "writers": writers},
        "exit_code": 0,
    }


def test_merge_deduplicates_findings_and_flags_writers_on_every_rank():
    writer = {"log_dir": "runs", "created_at": "train.py:12", "events": 5, "closed": True}
    same = Finding("train.py", 20, 1, "LL101", "stale", origin="runtime")
    findings, summary = merge([payload(0, [writer], [same]), payload(1, [writer], [same])])
    assert [(f.code, f.line) for f in findings] == [("LL505", 12), ("LL101", 20)]
    assert findings[1].details["ranks"] == [0, 1]
    assert summary["ranks"] == 2


def test_merge_is_silent_when_only_rank_0_writes():
    writer = {"log_dir": "runs", "created_at": "train.py:12", "events": 5, "closed": True}
    findings, _ = merge([payload(0, [writer]), payload(1, [])])
    assert findings == []


def torchrun(script: Path, *args: str, cwd: Path, temp: Path) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 -m looplint run SCRIPT ARGS`, with its own temporary folder
    (torchrun leaves a `torchelastic_*` folder there; we must leave nothing)."""
    temp.mkdir(exist_ok=True)
    # `python -m torch.distributed.run` is torchrun, found even when the venv's bin is not on PATH.
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    command += ["-m", "looplint", "run"]
    return subprocess.run(
        [*command, str(script), "--no-static", *args],
        capture_output=True,
        check=False,
        text=True,
        cwd=cwd,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TMPDIR": str(temp)},
    )


def run_folders(temp: Path) -> list[str]:
    return sorted(name for name in os.listdir(temp) if name.startswith("looplint-"))


@pytest.mark.slow
def test_torchrun_two_ranks_rank_0_prints_the_merged_report(tmp_path):
    temp = tmp_path / "tmp"
    result = torchrun(FIXTURE, "--", str(tmp_path / "runs"), cwd=tmp_path, temp=temp)
    out = result.stdout
    assert out.count("LL505 a SummaryWriter writes on every rank (2 of 2 ranks wrote events)") == 1, (
        out + result.stderr
    )
    assert "looplint run: 2 ranks" in out
    assert "rank 0: 5 optimizer steps" in out and "rank 1: 5 optimizer steps" in out
    assert result.returncode != 0  # findings: rank 0 exits 1, and torchrun passes that on
    assert sorted(os.listdir(tmp_path / "runs")) == ["rank0", "rank1"]
    assert run_folders(temp) == []


FAILING_RANK = """\
import os
import sys
import time

import torch
from torch import nn

model = nn.Linear(2, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(3):
    optimizer.zero_grad()
    model(torch.randn(2, 2)).sum().backward()
    optimizer.step()
if os.environ["RANK"] == "1":
    sys.exit(3)
time.sleep(5)  # rank 0 is still running when torchrun stops it
"""


@pytest.mark.slow
def test_a_run_killed_by_torchrun_leaves_no_folder_behind_once_the_next_run_ends(tmp_path):
    temp = tmp_path / "tmp"
    failing = tmp_path / "failing.py"
    failing.write_text(FAILING_RANK)
    killed = torchrun(failing, cwd=tmp_path, temp=temp)
    assert killed.returncode != 0
    assert len(run_folders(temp)) == 1  # rank 0 was stopped before it could clean up
    clean = torchrun(FIXTURE, "--", str(tmp_path / "runs"), cwd=tmp_path, temp=temp)
    assert "looplint run: 2 ranks" in clean.stdout, clean.stdout + clean.stderr
    assert run_folders(temp) == []
