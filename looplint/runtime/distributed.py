"""`looplint run` under torchrun: every rank reports to a shared folder, rank 0 merges and prints.

Ranks meet in a folder keyed by torchrun's run id and the launching agent's pid (the parent of
every local rank), so two runs never mix. `LOOPLINT_RUN_DIR` overrides the folder (e.g. a shared
file system for several nodes).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

from looplint.findings import Finding

WAIT_SECONDS = 120.0


def rank_info() -> tuple[int, int] | None:
    """(rank, world size) when launched by torchrun with more than one process, else None."""
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    except (KeyError, ValueError):
        return None
    return (rank, world) if world > 1 else None


def _run_dir() -> str:
    explicit = os.environ.get("LOOPLINT_RUN_DIR")
    if explicit:
        return explicit
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "run")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in run_id)
    return os.path.join(tempfile.gettempdir(), f"looplint-{safe}-{os.getppid()}")


def _agent_pid(name: str) -> int | None:
    """The launching agent's pid in the name of a folder `_run_dir()` made, else None."""
    prefix, _, pid = name.rpartition("-")
    return int(pid) if prefix.startswith("looplint-") and pid.isdigit() else None


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, under another user
        return True
    return True


def _remove(folder: str) -> None:
    """Remove a run folder and the rank reports in it (nothing else is ever in it)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    if not all(name.startswith("rank-") for name in names):
        return  # not one of ours after all
    for name in names:
        try:
            os.remove(os.path.join(folder, name))
        except OSError:
            pass
    try:
        os.rmdir(folder)
    except OSError:
        pass


def remove_stale_folders(parent: str | None = None) -> None:
    """Remove the folders of earlier runs whose agent is gone. A run whose rank 0 was killed (when
    one rank fails, torchrun stops the others) never got to remove its own."""
    parent = parent or tempfile.gettempdir()
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        pid = _agent_pid(entry.name)
        if pid is not None and entry.is_dir(follow_symlinks=False) and not _is_running(pid):
            _remove(entry.path)


def publish(rank: int, findings: list[Finding], summary: dict[str, Any], exit_code: int) -> None:
    """Write this rank's results where rank 0 will look for them."""
    folder = _run_dir()
    if not os.environ.get("LOOPLINT_RUN_DIR"):
        remove_stale_folders()
    os.makedirs(folder, exist_ok=True)
    payload = {
        "rank": rank,
        "findings": [f.to_dict() for f in findings],
        "summary": summary,
        "exit_code": exit_code,
    }
    target = os.path.join(folder, f"rank-{rank}.json")
    with open(target + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(payload, handle, default=str)
    os.replace(target + ".tmp", target)


def gather(world: int, timeout: float = WAIT_SECONDS) -> tuple[list[dict[str, Any]], list[int]]:
    """On rank 0: wait for every rank's results; returns them and the ranks that never reported."""
    folder = _run_dir()
    deadline = time.monotonic() + timeout
    results: dict[int, dict[str, Any]] = {}
    try:
        while True:
            for rank in range(world):
                path = os.path.join(folder, f"rank-{rank}.json")
                if rank not in results and os.path.exists(path):
                    with open(path, encoding="utf-8") as handle:
                        results[rank] = json.load(handle)
            if len(results) == world or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        _remove(folder)
    missing = [rank for rank in range(world) if rank not in results]
    return [results[rank] for rank in sorted(results)], missing


def merge(payloads: list[dict[str, Any]]) -> tuple[list[Finding], dict[str, Any]]:
    """Same finding on several ranks becomes one, listing its ranks; adds LL505."""
    merged: dict[tuple[str, int, str], Finding] = {}
    ranks_of: dict[tuple[str, int, str], list[int]] = {}
    for payload in payloads:
        for data in payload["findings"]:
            data = dict(data)
            data.pop("fix", None)
            finding = Finding(**data)
            key = (finding.path, finding.line, finding.code)
            merged.setdefault(key, finding)
            ranks_of.setdefault(key, []).append(payload["rank"])
    findings = []
    for key, finding in merged.items():
        details = dict(finding.details or {})
        if len(payloads) > 1:
            details["ranks"] = ranks_of[key]
        findings.append(finding.with_(details=details))
    writing = [
        (payload["rank"], writer)
        for payload in payloads
        for writer in payload["summary"].get("writers", [])
        if writer.get("events")
    ]
    writing_ranks = sorted({rank for rank, _ in writing})
    if len(writing_ranks) > 1:
        site = next((w["created_at"] for _, w in writing if w.get("created_at")), None)
        path, line = ("<unknown>", 1)
        if site:
            path, _, number = site.rpartition(":")
            line = int(number)
        findings.append(
            Finding(
                path,
                line,
                1,
                "LL505",
                f"a SummaryWriter writes on every rank ({len(writing_ranks)} of {len(payloads)} ranks "
                "wrote events): each rank logs the same curves into its own event files; create the "
                "writer on rank 0 only (`if dist.get_rank() == 0`)",
                origin="runtime",
                details={"ranks": writing_ranks},
            )
        )
    summary = {
        "ranks": len(payloads),
        **{f"rank {p['rank']}": p["summary"] for p in payloads},
    }
    return sorted(findings), summary
