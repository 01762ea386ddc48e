"""Run looplint over a corpus of real training code and list everything it reports, for judging.

    python benchmarks/sweep.py --corpus /work/corpus [--split tune|held-out|all] [--json out.json]
    python benchmarks/sweep.py --compare old.json new.json

Each repository of benchmarks/corpus.toml is linted as one project (one run over its directory,
so analysis across its files applies). Printed: per repository the files, the findings per rule,
internal errors and crashes; then per rule the findings, files and repositories. `--json` writes
every finding with a few lines of context around it. `--compare` prints the findings that
appeared and disappeared between two such files, so a change of the model is judged by its diff.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from corpus_tools import SPLITS, fail, looplint_version, run_looplint, select, source_lines

CONTEXT = 3  # lines of context on each side of a finding


def context(project: Path, finding: dict) -> list[str]:
    """The finding's line and CONTEXT lines around it, numbered, the finding's line marked."""
    lines = source_lines(project / finding["path"], finding["cell"])
    first = max(1, finding["line"] - CONTEXT)
    last = min(len(lines), finding["line"] + CONTEXT)
    return [f"{'>' if n == finding['line'] else ' '}{n:5} {lines[n - 1]}" for n in range(first, last + 1)]


def place(finding: dict) -> str:
    cell = f"cell {finding['cell']}:" if finding.get("cell") else ""
    return f"{finding['repository']}/{finding['path']}:{cell}{finding['line']}"


def sweep(corpus: Path, split: str, only: list[str], jobs: int) -> dict:
    repositories = select(corpus, split, only)
    report: dict = {"looplint": looplint_version(), "split": split, "repositories": [], "findings": []}
    width = max((len(r.name) for r in repositories), default=10)
    header = (
        f"{'repository':{width}} {'split':8} {'files':>5} {'found':>5} {'errors':>6} {'secs':>6}  per rule"
    )
    print(header)
    print("-" * len(header))
    for repository in repositories:
        project = corpus / repository.directory
        if not project.is_dir():
            print(f"{repository.name:{width}} missing: {project} (see the README to rebuild the corpus)")
            report["repositories"].append({"name": repository.name, "missing": True})
            continue
        run = run_looplint(project, jobs=jobs)
        for finding in run.findings:
            finding["repository"] = repository.name
            finding["context"] = context(project, finding)
        codes = Counter(finding["code"] for finding in run.findings)
        internal = [error for error in run.errors if "internal error" in error]
        report["repositories"].append(
            {
                "name": repository.name,
                "commit": repository.commit,
                "split": repository.split,
                "files": run.files,
                "findings": dict(sorted(codes.items())),
                "internal_errors": internal,
                "other_errors": [error for error in run.errors if error not in internal],
                "crash": run.crash,
                "seconds": round(run.seconds, 2),
            }
        )
        report["findings"].extend(run.findings)
        per_rule = " ".join(f"{code}:{n}" for code, n in sorted(codes.items()))
        errors = len(run.errors) + (run.crash is not None)
        print(
            f"{repository.name:{width}} {repository.split:8} {run.files:5} {len(run.findings):5} "
            f"{errors:6} {run.seconds:6.1f}  {per_rule}",
            flush=True,
        )
        for problem in ([f"CRASH {run.crash}"] if run.crash else []) + run.errors:
            print(f"    {problem}")
    print_totals(report)
    return report


def print_totals(report: dict) -> None:
    repositories = [r for r in report["repositories"] if not r.get("missing")]
    findings = report["findings"]
    files = sum(r["files"] for r in repositories)
    internal = sum(len(r["internal_errors"]) for r in repositories)
    crashes = sum(r["crash"] is not None for r in repositories)
    seconds = sum(r["seconds"] for r in repositories)
    print(
        f"\n{len(repositories)} repositories, {files} files, {len(findings)} findings, "
        f"{internal} internal errors, {crashes} crashes, {seconds:.0f} s ({report['looplint']})"
    )
    print(f"\n{'rule':6} {'findings':>8} {'files':>6} {'repositories':>12}")
    for code in sorted({f["code"] for f in findings}):
        of_code = [f for f in findings if f["code"] == code]
        in_files = {(f["repository"], f["path"]) for f in of_code}
        in_repositories = {f["repository"] for f in of_code}
        print(f"{code:6} {len(of_code):8} {len(in_files):6} {len(in_repositories):12}")


def key(finding: dict) -> tuple:
    cell = finding.get("cell") or 0
    return (finding["repository"], finding["path"], cell, finding["line"], finding["column"], finding["code"])


def compare(old_path: Path, new_path: Path) -> None:
    """Print the findings only in `new_path` (appeared) and only in `old_path` (disappeared)."""
    try:
        old, new = (json.loads(path.read_text(encoding="utf-8")) for path in (old_path, new_path))
    except (OSError, ValueError) as error:
        fail(f"cannot read the sweeps to compare: {error}")
    old_keys = {key(f): f for f in old["findings"]}
    new_keys = {key(f): f for f in new["findings"]}
    print(f"old: {old_path} ({old['looplint']}, split {old['split']}, {len(old_keys)} findings)")
    print(f"new: {new_path} ({new['looplint']}, split {new['split']}, {len(new_keys)} findings)")
    old_repositories = {r["name"] for r in old["repositories"] if not r.get("missing")}
    new_repositories = {r["name"] for r in new["repositories"] if not r.get("missing")}
    if old_repositories != new_repositories:
        print(
            f"note: the runs cover different repositories ({len(old_repositories ^ new_repositories)} differ)"
        )
    for title, keys, source in (
        ("appeared", sorted(new_keys.keys() - old_keys.keys()), new_keys),
        ("disappeared", sorted(old_keys.keys() - new_keys.keys()), old_keys),
    ):
        print(f"\n{title}: {len(keys)}")
        for finding in (source[k] for k in keys):
            print(f"  {place(finding)}: {finding['code']} {finding['message']}")
            marked = [line for line in finding.get("context", []) if line.startswith(">")]
            if marked:  # the reported line itself, without its number
                print(f"      {marked[0][1:].strip().partition(' ')[2]}")
    changes = Counter(f["code"] for f in new_keys.values())
    changes.subtract(f["code"] for f in old_keys.values())
    changed = " ".join(f"{code}:{n:+d}" for code, n in sorted(changes.items()) if n)
    print(f"\nper rule (new - old): {changed or 'no change'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, help="directory holding <owner>__<name>/ of each repository")
    parser.add_argument("--split", choices=SPLITS, default="all")
    parser.add_argument("--repository", action="append", help="only this repository (repeatable)")
    parser.add_argument("--json", type=Path, help="write every finding with its context here")
    parser.add_argument("--jobs", type=int, default=1, help="looplint worker processes (default 1)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("OLD", "NEW"), help="diff two --json files")
    args = parser.parse_args(argv)
    if args.compare:
        missing = [str(path) for path in args.compare if not path.is_file()]
        if missing:
            parser.error(f"no such file: {', '.join(missing)}")
        compare(*args.compare)
        return 0
    if args.corpus is None:
        parser.error("--corpus is required (or --compare OLD NEW)")
    report = sweep(args.corpus, args.split, args.repository or [], args.jobs)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"\nwrote {len(report['findings'])} findings to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
