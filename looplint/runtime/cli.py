"""`looplint run SCRIPT [--max-steps N] [--format F] [--lr-find ...] [-- ARGS ...]`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import nullcontext
from typing import Any

from looplint.adapters.cli import int_at_least
from looplint.findings import Finding
from looplint.runtime.scripts import output_to_stderr
from looplint.words import plural

FORMATS = ("text", "json", "sarif", "github")
# Formats a program reads: the script's own prints must not end up in them.
MACHINE_FORMATS = ("json", "sarif")
USAGE_ERROR = 2


# The options that only mean something for the range test, with their defaults.
_LR_DEFAULTS = {"min_lr": 1e-7, "max_lr": 10.0, "steps": 100, "trial_steps": 0, "out_dir": "looplint-lr-find"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="looplint run",
        allow_abbrev=False,
        description="Run a training script under instrumentation and report what really happened. "
        "Arguments for the script go after `--`: looplint run train.py --max-steps 100 -- --epochs 3",
        epilog="Exit status: the script's own non-zero exit status if it failed; otherwise 1 with "
        "findings, 0 without; 2 for usage errors. With --format json or sarif, stdout holds only the "
        "report: what the script prints goes to stderr.",
    )
    parser.add_argument(
        "script", metavar="SCRIPT", help="the training script, run as __main__ like `python SCRIPT`"
    )
    parser.add_argument(
        "--max-steps", type=int_at_least(1), metavar="N", help="stop cleanly after N optimizer steps"
    )
    parser.add_argument("--format", choices=FORMATS, default="text", help="report format (default: text)")
    parser.add_argument("--no-static", action="store_true", help="skip the static pass over the script")
    lr = parser.add_argument_group("learning-rate range test")
    lr.add_argument(
        "--lr-find", action="store_true", help="run an LR range test on the script instead of a normal run"
    )
    lr.add_argument(
        "--min-lr",
        type=_positive_float,
        metavar="LR",
        help=f"the first learning rate tried (default: {_LR_DEFAULTS['min_lr']:g})",
    )
    lr.add_argument(
        "--max-lr",
        type=_positive_float,
        metavar="LR",
        help=f"the last learning rate tried (default: {_LR_DEFAULTS['max_lr']:g})",
    )
    lr.add_argument(
        "--steps",
        type=int_at_least(1),
        metavar="N",
        help=f"optimizer steps of the test (default: {_LR_DEFAULTS['steps']})",
    )
    lr.add_argument(
        "--trial-steps",
        type=int_at_least(0),
        metavar="N",
        help="steps of each confirmation trial after the range test "
        f"(default: {_LR_DEFAULTS['trial_steps']}, none; 40 is the tested length)",
    )
    lr.add_argument(
        "--out-dir",
        metavar="DIR",
        help="where the range test writes its plot and TensorBoard scalars "
        f"(default: {_LR_DEFAULTS['out_dir']})",
    )
    # The script's own arguments come after `--`; argparse never sees them.
    parser.usage = parser.format_usage().removeprefix("usage: ").rstrip() + " [-- ARGS ...]"
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _usage_error(parser: argparse.ArgumentParser, message: str) -> int:
    parser.print_usage(sys.stderr)
    print(f"looplint run: error: {message}", file=sys.stderr)
    return USAGE_ERROR


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]] | int:
    """(looplint's options, the script's arguments), or the exit status of a usage error."""
    script_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, script_args = argv[:cut], argv[cut + 1 :]
    parser = _parser()
    try:
        args, unknown = parser.parse_known_args(argv)
    except SystemExit as exit_:
        return 0 if exit_.code == 0 else USAGE_ERROR
    if unknown:
        given = " ".join(unknown)
        return _usage_error(
            parser,
            f"unrecognized arguments: {given}; arguments for the script go after `--`: "
            f"looplint run {args.script} -- {given}",
        )
    given_lr = [name for name in _LR_DEFAULTS if getattr(args, name) is not None]
    if given_lr and not args.lr_find:
        options = ", ".join("--" + name.replace("_", "-") for name in given_lr)
        verb = "applies" if len(given_lr) == 1 else "apply"
        return _usage_error(parser, f"{options} only {verb} with --lr-find")
    if args.lr_find and args.max_steps is not None:
        return _usage_error(parser, "--max-steps does not apply with --lr-find (its length is --steps)")
    for name, default in _LR_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    return args, script_args


def main(argv: list[str]) -> int:
    """Entry point of `looplint run`; returns the process exit code."""
    parsed = _parse(list(argv))
    if isinstance(parsed, int):
        return parsed
    args, script_args = parsed
    if not os.path.exists(args.script):
        print(f"looplint run: error: no such file: {args.script}", file=sys.stderr)
        return USAGE_ERROR
    if os.path.isdir(args.script) and not os.path.isfile(os.path.join(args.script, "__main__.py")):
        print(f"looplint run: error: {args.script} is a directory without __main__.py", file=sys.stderr)
        return USAGE_ERROR
    if args.lr_find:
        return _lr_find(args, script_args)

    from looplint.runtime.distributed import gather, merge, publish, rank_info

    static = [] if args.no_static else _static_findings(args.script)
    with output_to_stderr() if args.format in MACHINE_FORMATS else nullcontext():
        exit_code, report = run_script(args.script, script_args, max_steps=args.max_steps)
    findings, summary = report.findings, report.summary
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
    """Run SCRIPT as __main__ under watch(); returns (the script's exit code, the report), whose
    summary says under "script" how the script ended."""
    from looplint.runtime.scripts import failure_site, run_as_main
    from looplint.runtime.session import StopRun, Watch
    from looplint.runtime.sites import alias_path

    alias_path(script, script)
    with Watch(max_steps=max_steps) as report:
        outcome = run_as_main(script, script_args, stop=(StopRun,))
    ending: dict[str, Any] = {"ending": outcome.ending, "exit_code": outcome.exit_code}
    if outcome.error is not None:
        first_line = next(iter(str(outcome.error).splitlines()), "")[:200]
        ending["error"] = f"{type(outcome.error).__name__}: {first_line}".rstrip(": ")
        ending["at"] = failure_site(outcome.error)
    report.summary["script"] = ending
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
    """A few human lines about the run: how the script ended, steps, backward passes, writers,
    learning rates."""
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
    progress = (
        f"{plural(summary.get('optimizer_steps', 0), 'optimizer step')}, "
        f"{plural(summary.get('backward_passes', 0), 'backward pass', 'backward passes')}"
    )
    lines = [f"looplint run: {_ending(summary, progress)}"]
    for label, info in summary.get("optimizers", {}).items():
        lines.append(f"  {label}{_where(info)}: {plural(info['steps'], 'step')}, {_passes(info)}")
    for writer in summary.get("writers", []):
        state = "closed" if writer["closed"] else "OPEN"
        lines.append(
            f"  SummaryWriter {writer['log_dir']}: {plural(writer['events'], 'write')}, "
            f"{plural(writer['event_files'], 'event file')}, {state} at the end"
        )
    if summary.get("syncs_per_step"):
        lines.append(f"  host-device syncs in the last steps: {summary['syncs_per_step'][-10:]}")
    if summary.get("learning rates"):
        lines.extend(_learning_rates(summary["learning rates"]))
    if summary.get("internal_errors"):
        lines.append(f"  internal errors (results may be incomplete): {summary['internal_errors'][0]}")
    return "\n".join(lines)


def _ending(summary: dict[str, Any], progress: str) -> str:
    """The head line: how far the run got, and how the script ended when that was not normal."""
    script = summary.get("script") or {}
    ending, code = script.get("ending"), script.get("exit_code", 0)
    where = f" at {script['at']}" if script.get("at") else ""
    if ending == "crashed":
        return f"the script failed{where} ({script.get('error', 'an error')}) after {progress}"
    if ending == "interrupted":
        return f"the script was interrupted after {progress}"
    if ending == "stopped" or summary.get("stopped_after_steps"):
        return f"stopped by --max-steps after {progress}"
    if code:
        return f"the script exited with status {code} after {progress}"
    return progress


def _where(info: dict[str, Any]) -> str:
    return f" (created at {info['created_at']})" if info.get("created_at") else ""


def _passes(info: dict[str, Any]) -> str:
    counts = {int(k): v for k, v in info.get("backward_passes_per_step", {}).items()}
    if not counts:
        return "no step used any gradient"
    if len(counts) == 1:
        ((passes, _),) = counts.items()
        return f"{plural(passes, 'backward pass', 'backward passes')} per step"
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
