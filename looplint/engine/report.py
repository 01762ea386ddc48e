"""Render findings as text, JSON, SARIF 2.1.0 or GitHub Actions annotations."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import looplint
from looplint.findings import Finding

FORMATS = ("text", "json", "sarif", "github")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def render(findings: list[Finding], fmt: str = "text", *, statistics: bool = False) -> str:
    """The report for `findings` in `fmt`; with `statistics`, counts per code instead
    (a table for text, a list of {code, name, count} for JSON)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if statistics:
        return _statistics(findings, fmt)
    if fmt == "json":
        return json.dumps([finding.to_dict() for finding in findings], indent=2) + "\n"
    if fmt == "sarif":
        return json.dumps(sarif(findings), indent=2) + "\n"
    line = _text_line if fmt == "text" else _github_line
    return "".join(line(finding) + "\n" for finding in findings)


def _rule_name(code: str) -> str:
    from looplint.catalog import RULES

    info = RULES.get(code)
    if info is not None:
        return info.name
    return "syntax-error" if code == "LL000" else ""


def _text_line(finding: Finding) -> str:
    cell = (finding.details or {}).get("cell")
    where = f"{finding.path}:cell {cell}:" if cell is not None else f"{finding.path}:"
    text = f"{where}{finding.line}:{finding.column}: {finding.code} {finding.message}"
    if finding.confirmed:
        text += " [confirmed at run time]"
    return text


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def _github_line(finding: Finding) -> str:
    properties = [("file", finding.path), ("line", finding.line), ("col", finding.column)]
    if finding.end_line:
        properties += [("endLine", finding.end_line), ("endColumn", finding.end_column)]
    title = f"{finding.code} {_rule_name(finding.code)}".strip()
    properties.append(("title", title))
    rendered = ",".join(f"{key}={_escape_property(str(value))}" for key, value in properties)
    message = finding.message
    cell = (finding.details or {}).get("cell")
    if cell is not None:
        message = f"cell {cell}: {message}"
    return f"::error {rendered}::{_escape_data(message)}"


def _statistics(findings: list[Finding], fmt: str) -> str:
    counts = Counter(finding.code for finding in findings)
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    if fmt == "json":
        data = [{"code": code, "name": _rule_name(code), "count": n} for code, n in rows]
        return json.dumps(data, indent=2) + "\n"
    if fmt != "text":
        raise ValueError("statistics are available as text or json")
    width = max((len(str(n)) for _, n in rows), default=1)
    return "".join(f"{n:>{width}}  {code}  {_rule_name(code)}\n" for code, n in rows)


def _uri(path: str) -> str:
    candidate = Path(path)
    if candidate.is_absolute():
        return candidate.as_uri()
    return candidate.as_posix()


def sarif(findings: list[Finding]) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run: every known rule, and one result per finding."""
    from looplint.catalog import RULES
    from looplint.catalog import render as render_rule

    rules: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    codes = sorted({*RULES, *(finding.code for finding in findings)})
    for code in codes:
        info = RULES.get(code)
        rule: dict[str, Any] = {"id": code, "name": _rule_name(code) or code}
        if info is not None:
            rule["shortDescription"] = {"text": info.summary}
            rule["fullDescription"] = {"text": render_rule(info)}
        else:
            rule["shortDescription"] = {"text": rule["name"]}
        index[code] = len(rules)
        rules.append(rule)

    results = []
    for finding in findings:
        region: dict[str, Any] = {"startLine": finding.line, "startColumn": finding.column}
        if finding.end_line:
            region["endLine"] = finding.end_line
            region["endColumn"] = finding.end_column
        location = {"physicalLocation": {"artifactLocation": {"uri": _uri(finding.path)}, "region": region}}
        result: dict[str, Any] = {
            "ruleId": finding.code,
            "ruleIndex": index[finding.code],
            "level": "error",
            "message": {"text": finding.message},
            "locations": [location],
        }
        properties = {}
        if finding.details:
            properties.update(finding.details)
        if finding.origin != "static":
            properties["origin"] = finding.origin
        if finding.confirmed:
            properties["confirmedAtRunTime"] = True
        if properties:
            result["properties"] = properties
        # A notebook fix's offsets point into the joined cells, not into the .ipynb file.
        if finding.fix is not None and "cell" not in properties:
            result["fixes"] = [_sarif_fix(finding)]
        results.append(result)

    driver = {
        "name": "looplint",
        "version": looplint.__version__,
        "semanticVersion": looplint.__version__,
        "rules": rules,
    }
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{"tool": {"driver": driver}, "results": results}],
    }


def _sarif_fix(finding: Finding) -> dict[str, Any]:
    assert finding.fix is not None
    replacements = [
        {
            "deletedRegion": {"charOffset": edit.start, "charLength": edit.end - edit.start},
            "insertedContent": {"text": edit.text},
        }
        for edit in finding.fix.edits
    ]
    return {
        "description": {"text": finding.fix.message},
        "properties": {"safe": finding.fix.safe},
        "artifactChanges": [{"artifactLocation": {"uri": _uri(finding.path)}, "replacements": replacements}],
    }
