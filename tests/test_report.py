"""Report formats, checked by parsing them back."""

from __future__ import annotations

import json

import pytest

from looplint.catalog import RULES
from looplint.engine.report import render, sarif
from looplint.findings import Edit, Finding, Fix

FIX = Fix("Insert `optimizer.zero_grad()`", (Edit(10, 10, "optimizer.zero_grad()\n"),), safe=True)
FINDINGS = [
    Finding("src/train.py", 7, 9, "LL101", "gradients never cleared", 7, 25, fix=FIX),
    Finding("src/train.py", 12, 5, "LL202", "sum of losses logged", 12, 30),
    Finding("nb/train.ipynb", 3, 1, "LL301", "close in loop", details={"cell": 4}),
    Finding("src/run.py", 20, 1, "LL101", "seen at run time", origin="runtime", confirmed=True),
    Finding("broken.py", 1, 5, "LL000", "syntax error: '(' was never closed"),
]


def test_text_is_one_line_per_finding():
    assert render(FINDINGS).splitlines() == [
        "src/train.py:7:9: LL101 gradients never cleared",
        "src/train.py:12:5: LL202 sum of losses logged",
        "nb/train.ipynb:cell 4:3:1: LL301 close in loop",
        "src/run.py:20:1: LL101 seen at run time [confirmed at run time]",
        "broken.py:1:5: LL000 syntax error: '(' was never closed",
    ]
    assert render([]) == ""


def test_json_holds_every_field_and_the_fix():
    data = json.loads(render(FINDINGS, "json"))
    assert len(data) == len(FINDINGS)
    first = data[0]
    assert {k: first[k] for k in ("code", "path", "line", "column", "end_line", "end_column")} == {
        "code": "LL101",
        "path": "src/train.py",
        "line": 7,
        "column": 9,
        "end_line": 7,
        "end_column": 25,
    }
    assert first["fix"] == {
        "message": "Insert `optimizer.zero_grad()`",
        "safe": True,
        "edits": [{"start": 10, "end": 10, "text": "optimizer.zero_grad()\n"}],
    }
    assert data[1]["fix"] is None
    assert data[2]["details"] == {"cell": 4}
    assert data[3]["origin"] == "runtime" and data[3]["confirmed"] is True
    assert json.loads(render([], "json")) == []


def test_sarif_is_a_2_1_0_log_with_rules_results_locations_and_fixes():
    log = json.loads(render(FINDINGS, "sarif"))
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-2.1.0.json")
    [run] = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "looplint"
    rules = driver["rules"]
    ids = [rule["id"] for rule in rules]
    assert len(ids) == len(set(ids)) and set(RULES) <= set(ids)
    ll101 = rules[ids.index("LL101")]
    assert ll101["name"] == "missing-zero-grad"
    assert ll101["fullDescription"]["text"].startswith("LL101 missing-zero-grad")
    assert "helpUri" not in ll101

    results = run["results"]
    assert len(results) == len(FINDINGS)
    for finding, result in zip(FINDINGS, results):
        assert result["ruleId"] == finding.code
        assert rules[result["ruleIndex"]]["id"] == finding.code
        assert result["message"]["text"] == finding.message
        [location] = result["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"]["uri"] == finding.path
        assert physical["region"]["startLine"] == finding.line
        assert physical["region"]["startColumn"] == finding.column
    assert results[0]["locations"][0]["physicalLocation"]["region"] == {
        "startLine": 7,
        "startColumn": 9,
        "endLine": 7,
        "endColumn": 25,
    }
    [fix] = results[0]["fixes"]
    [change] = fix["artifactChanges"]
    assert change["artifactLocation"]["uri"] == "src/train.py"
    assert change["replacements"] == [
        {
            "deletedRegion": {"charOffset": 10, "charLength": 0},
            "insertedContent": {"text": "optimizer.zero_grad()\n"},
        }
    ]
    assert "fixes" not in results[1]
    assert results[2]["properties"] == {"cell": 4}
    assert results[3]["properties"] == {"origin": "runtime", "confirmedAtRunTime": True}


def test_sarif_uses_file_uris_for_absolute_paths(tmp_path):
    path = tmp_path / "my dir" / "train.py"
    log = sarif([Finding(str(path), 1, 1, "LL000", "syntax error")])
    uri = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri.startswith("file:///") and "my%20dir/train.py" in uri


def test_github_annotations_escape_their_properties_and_message():
    lines = render(FINDINGS, "github").splitlines()
    assert lines[0] == (
        "::error file=src/train.py,line=7,col=9,endLine=7,endColumn=25,"
        "title=LL101 missing-zero-grad::gradients never cleared"
    )
    assert lines[2] == (
        "::error file=nb/train.ipynb,line=3,col=1,title=LL301 writer-close-in-loop::cell 4: close in loop"
    )
    odd = Finding("a,b:c.py", 1, 1, "LL000", "100% wrong\nsecond line")
    assert render([odd], "github") == (
        "::error file=a%2Cb%3Ac.py,line=1,col=1,title=LL000 syntax-error::100%25 wrong%0Asecond line\n"
    )


def test_statistics_count_per_code_most_frequent_first():
    assert render(FINDINGS, statistics=True) == (
        "2  LL101  missing-zero-grad\n"
        "1  LL000  syntax-error\n"
        "1  LL202  unaveraged-loss-logged\n"
        "1  LL301  writer-close-in-loop\n"
    )
    data = json.loads(render(FINDINGS, "json", statistics=True))
    assert data[0] == {"code": "LL101", "name": "missing-zero-grad", "count": 2}


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        render(FINDINGS, "xml")


def test_sarif_validates_against_the_sarif_2_1_0_object_model():
    # An independent implementation of the SARIF 2.1.0 object model (types, required fields).
    sarif_model = pytest.importorskip("sarif_pydantic.sarif")
    log = sarif_model.Sarif.model_validate(json.loads(render(FINDINGS, "sarif")))
    [run] = log.runs
    assert [result.rule_id for result in run.results] == [f.code for f in FINDINGS]
    assert run.results[0].fixes[0].artifact_changes[0].replacements[0].deleted_region.char_offset == 10
