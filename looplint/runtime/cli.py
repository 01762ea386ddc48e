"""`looplint run SCRIPT [--max-steps N] [--format F] [--lr-find ...] [-- script args]`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from looplint.findings import Finding

FORMATS = ("text", "json", "sarif", "github")
USAGE_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="looplint run",
        description="Run a training script under instrumentation and report what really happened. "
        "Arguments after `--` go to the script.",
    )
    parser.add_argument("script", help="the training script, run as __main__ like `python SCRIPT`")
    parser.add_argument(
        "--max-steps", type=_positive_int, metavar="N", help="stop cleanly after N optimizer steps"
    )
    parser.add_argument("--format", choices=FORMATS, default="text", help="report format")
    parser.add_argument("--no-static", action="store_true", help="skip the static pass over the script")
    lr = parser.add_argument_group("learning-rate range test")
    lr.add_argument(
        "--lr-find", action="store_true", help="run an LR range test on the script instead of a normal run"
    )
    lr.add_argument("--min-lr", type=float, default=1e-7)
    lr.add_argument("--max-lr", type=float, default=10.0)
    lr.add_argument("--steps", type=_positive_int, default=100)
    lr.add_argument(
        "--trial-steps",
        type=_non_negative_int,
        default=0,
        help="steps of each confirmation trial after the range test (default 0: none; 40 is the tested length)",
    )
    lr.add_argument(
        "--out-dir",
        default="looplint-lr-find",
        help="where the range test writes its plot and TensorBoard scalars",
    )
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def main(argv: list[str]) -> int:
    """Entry point of `looplint run`; returns the process exit code."""
    argv = list(argv)
    script_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, script_args = argv[:cut], argv[cut + 1 :]
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return 0 if exit_.code == 0 else USAGE_ERROR
    if not os.path.exists(args.script):
        print(f"looplint run: error: no such file: {args.script}", file=sys.stderr)
        return USAGE_ERROR
    if os.path.isdir(args.script) and not os.path.isfile(os.path.join(args.script, "__main__.py")):
        print(f"looplint run: error: {args.script} is a directory without __main__.py", file=sys.stderr)
        return USAGE_ERROR
    if args.lr_find:
        return _lr_find(args, script_args)

    static = [] if args.no_static else _static_findings(args.script)
    exit_code, report = run_script(args.script, script_args, max_steps=args.max_steps)
    findings, summary = report.findings, report.summary

    from looplint.runtime.distributed import gather, merge, publish, rank_info

    ranks = rank_info()
    if ranks is not None:
        rank, world = ranks
        publish(rank, findings, summary, exit_code)
        if rank != 0:
            return exit_code
        payloads, missing = gather(world)
        findings, summary = merge(payloads)
        if missing:
            summary["missing_ranks"] = missing
        exit_code = next((p["exit_code"] for p in payloads if p["exit_code"]), exit_code)
    findings = merge_static(static, findings)
    sys.stdout.flush()
    rendered = _render(findings, args.format)
    if rendered:
        print(rendered)
    if args.format == "text":
        print(describe(summary))
    if exit_code:
        return exit_code
    return 1 if findings else 0


def run_script(script: str, script_args: list[str], *, max_steps: int | None = None) -> tuple[int, Any]:
    """Run SCRIPT as __main__ under watch(); returns (the script's exit code, the report)."""
    from looplint.runtime.scripts import run_as_main
    from looplint.runtime.session import StopRun, Watch
    from looplint.runtime.sites import alias_path

    alias_path(script, script)
    with Watch(max_steps=max_steps) as report:
        outcome = run_as_main(script, script_args, stop=(StopRun,))
    return outcome.exit_code, report


def _static_findings(script: str) -> list[Finding]:
    try:
        with open(script, encoding="utf-8") as handle:
            source = handle.read()
        from looplint.static import analyze_source

        return analyze_source(source, script)
    except Exception as error:  # noqa: BLE001 - the run still happens without the static pass
        print(f"looplint run: static pass skipped: {error}", file=sys.stderr)
        return []


def _related_lines(finding: Finding) -> set[int]:
    lines = {finding.line}
    for site in (finding.details or {}).get("related", []):
        path, _, line = str(site).rpartition(":")
        if path == finding.path and line.isdigit():
            lines.add(int(line))
    return lines


# Runtime codes that prove a static rule of another code: a scheduler whose LR never moved
# (LL507) confirms the static "scheduler never stepped" (LL403) at its creation.
_CONFIRMS = {"LL507": "LL403"}


def merge_static(static: list[Finding], runtime: list[Finding]) -> list[Finding]:
    """Static findings reproduced at run time become confirmed; their runtime twins are dropped.

    A runtime finding confirms a static one with the same path and code whose line is the runtime
    line or one of its related call sites (the backward, zero_grad or close that took part). The
    static finding keeps its place and fix and gains the runtime evidence in its message.
    """
    merged = list(static)
    for finding in runtime:
        lines = _related_lines(finding)
        candidates = [
            i
            for i, s in enumerate(merged)
            if s.origin == "static"
            and s.code in (finding.code, _CONFIRMS.get(finding.code))
            and s.path == finding.path
            and s.line in lines
        ]
        if not candidates:
            merged.append(finding)
            continue
        index = min(candidates, key=lambda i: (merged[i].line != finding.line, merged[i].line))
        target = merged[index]
        details = dict(target.details or {})
        details["runtime"] = {"message": finding.message, "line": finding.line, **(finding.details or {})}
        message = target.message if target.confirmed else f"{target.message} (run time: {finding.message})"
        merged[index] = target.with_(confirmed=True, message=message, details=details)
    return sorted(merged)


def _render(findings: list[Finding], fmt: str) -> str:
    from looplint.engine.report import render

    return render(findings, fmt).rstrip("\n")


def describe(summary: dict[str, Any]) -> str:
    """A few human lines about the run (steps, backward passes, writers, learning rates)."""
    if "ranks" in summary:
        parts = [f"looplint run: {summary['ranks']} ranks"]
        for key, value in summary.items():
            if key.startswith("rank ") and isinstance(value, dict):
                head, *rest = describe(value).splitlines()
                parts.append(f"  {key}: " + head.replace("looplint run: ", "", 1))
                parts.extend("  " + line for line in rest)
        if summary.get("missing_ranks"):
            parts.append(f"  ranks that never reported: {summary['missing_ranks']}")
        return "\n".join(parts)
    lines = [
        (
            f"looplint run: {summary.get('optimizer_steps', 0)} optimizer steps, "
            f"{summary.get('backward_passes', 0)} backward passes"
        )
    ]
    for label, info in summary.get("optimizers", {}).items():
        lines.append(f"  {label}{_where(info)}: {info['steps']} steps, {_passes(info)}")
    for writer in summary.get("writers", []):
        state = "closed" if writer["closed"] else "OPEN"
        lines.append(
            f"  SummaryWriter {writer['log_dir']}: {writer['events']} writes, "
            f"{writer['event_files']} event file{'s' if writer['event_files'] != 1 else ''}, "
            f"{state} at the end"
        )
    if summary.get("syncs_per_step"):
        lines.append(f"  host-device syncs in the last steps: {summary['syncs_per_step'][-10:]}")
    if summary.get("learning rates"):
        lines.extend(_learning_rates(summary["learning rates"]))
    if summary.get("internal_errors"):
        lines.append(f"  internal errors (results may be incomplete): {summary['internal_errors'][0]}")
    return "\n".join(lines)


def _where(info: dict[str, Any]) -> str:
    return f" (created at {info['created_at']})" if info.get("created_at") else ""


def _passes(info: dict[str, Any]) -> str:
    counts = {int(k): v for k, v in info.get("backward_passes_per_step", {}).items()}
    if not counts:
        return "no step used any gradient"
    if len(counts) == 1:
        ((passes, _),) = counts.items()
        return f"{passes} backward pass{'es' if passes != 1 else ''} per step"
    return f"{min(counts)} to {max(counts)} backward passes per step"


def _learning_rates(info: Any) -> list[str]:
    """Each param group's LR over the run, from the learning-rate monitor's summary."""
    try:
        lines = []
        for optimizer in info["optimizers"]:
            for group in optimizer["groups"]:
                start, end = group["initial_lr"], group["final_lr"]
                moved = f"{start:.3g} -> {end:.3g}" if group["changes"] else f"{start:.3g} (constant)"
                lines.append(f"  learning rate {optimizer['name']} group {group['group']}: {moved}")
        return lines
    except (KeyError, TypeError, ValueError):
        return [f"  learning rates: {json.dumps(info, default=str)[:300]}"]


def _lr_find(args: argparse.Namespace, script_args: list[str]) -> int:
    try:
        from looplint.lrfind.script import run_lr_find_script
    except ImportError:
        print("looplint run: error: the learning-rate range test is not available", file=sys.stderr)
        return USAGE_ERROR
    return run_lr_find_script(
        args.script,
        script_args,
        min_lr=args.min_lr,
        max_lr=args.max_lr,
        steps=args.steps,
        trial_steps=args.trial_steps,
        fmt=args.format,
        out_dir=args.out_dir,
    )
