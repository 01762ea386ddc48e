"""`looplint run` on every runtime fixture: the codes it must report, or silence, and the line
each runtime finding lands on where a static rule has a twin (marked `# static: CODE` in the
script), so that `looplint run` confirms the static finding instead of reporting it twice.

A case is a line in fixtures/runtime/expected.json; adding a case is adding a script and a line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from looplint.findings import Finding
from looplint.runtime.cli import merge_static, run_script

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "runtime"
CASES = json.loads((FIXTURES / "expected.json").read_text())["cases"]
# Every runtime code, the learning-rate ones (LL506/LL507) included: these correct-but-noisy
# short runs are exactly where a loose divergence check would cry wolf.
RUNTIME_CODES = ("LL1", "LL2", "LL3", "LL4", "LL5")
MARKER = re.compile(r"#\s*static:\s*(LL\d{3})")


def case_id(case: dict) -> str:
    return " ".join([case["script"], *case["args"]]).replace("{tmp}", "DIR")


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_fixture(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [a.replace("{tmp}", str(tmp_path / "runs")) for a in case["args"]]
    exit_code, report = run_script(str(FIXTURES / case["script"]), args)
    assert exit_code == 0
    observed = sorted({f.code for f in report.findings if f.code.startswith(RUNTIME_CODES)})
    assert observed == sorted(case["codes"]), [f.message for f in report.findings]
    assert all(f.origin == "runtime" for f in report.findings)
    assert all(Path(f.path).name == case["script"] for f in report.findings if f.code in case["codes"])
    script = FIXTURES / case["script"]
    for line, code in static_markers(script):
        if code not in case["codes"]:
            continue
        (finding,) = [f for f in report.findings if f.code == code]
        assert finding.line == line, (code, finding.line, line)
        static = Finding(finding.path, line, 1, code, "the static twin", origin="static")
        (merged,) = merge_static([static], [finding])
        assert merged.confirmed and merged.origin == "static"


def static_markers(script: Path) -> list[tuple[int, str]]:
    lines = script.read_text().splitlines()
    return [
        (number, match.group(1)) for number, text in enumerate(lines, 1) if (match := MARKER.search(text))
    ]
