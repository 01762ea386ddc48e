"""`looplint run` under a real `torchrun --nproc_per_node 2` (gloo, CPU); merging rank reports."""

from __future__ import annotations

import os
import shutil
import subprocess
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


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="needs torchrun")
def test_torchrun_two_ranks_rank_0_prints_the_merged_report(tmp_path):
    module = "looplint" if (ROOT / "looplint" / "__main__.py").exists() else "looplint.runtime"
    command = ["torchrun", "--nproc_per_node", "2", "--standalone", "-m", module]
    if module == "looplint":
        command.append("run")
    result = subprocess.run(
        [*command, str(FIXTURE), "--no-static", "--", str(tmp_path / "runs")],
        capture_output=True,
        check=False,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
    )
    out = result.stdout
    assert out.count("LL505 a SummaryWriter writes on every rank (2 of 2 ranks wrote events)") == 1, (
        out + result.stderr
    )
    assert "looplint run: 2 ranks" in out
    assert "rank 0: 5 optimizer steps" in out and "rank 1: 5 optimizer steps" in out
    assert result.returncode != 0  # findings: rank 0 exits 1, and torchrun passes that on
    assert sorted(os.listdir(tmp_path / "runs")) == ["rank0", "rank1"]
