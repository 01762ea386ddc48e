"""`looplint [PATH ...]`, `looplint rule [CODE]` and `looplint run SCRIPT`.

Exit status: 0 no findings, 1 findings, 2 usage, configuration or I/O errors.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Callable, Sequence

import looplint
from looplint.engine.config import Config, ConfigError, load_config, parse_selectors
from looplint.engine.report import FORMATS, render
from looplint.findings import Finding
from looplint.words import plural

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
STDIN = "-"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status instead of exiting."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):
        # Odd bytes in file names must not turn a report into a traceback.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        if argv[:1] == ["rule"]:
            return _rule_command(argv[1:])
        if argv[:1] == ["run"]:
            return _run_command(argv[1:])
        if argv[:1] == ["server"]:
            return looplint.adapters.server_main(argv[1:])
        return _lint_command(argv)
    except BrokenPipeError:
        # `looplint ... | head`: the reader left; stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FINDINGS
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # noqa: BLE001 - a bug of ours: one line, never a traceback
        _error(f"internal error ({type(error).__name__}: {error}); please report it")
        return EXIT_ERROR


def _error(message: str) -> None:
    print(f"looplint: error: {message}", file=sys.stderr)


def _warning(message: str) -> None:
    print(f"looplint: warning: {message}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="looplint",
        allow_abbrev=False,
        description="Find the silent bugs of hand-written PyTorch training loops.",
        epilog=(
            "other commands: 'looplint rule [CODE]' explains rules, "
            "'looplint run SCRIPT' watches a training script at run time. "
            "Exit status: 0 clean, 1 findings, 2 errors."
        ),
    )
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", help="files or directories (default: .); - reads stdin"
    )
    selection = parser.add_argument_group("rule selection (codes or prefixes, comma-separated)")
    selection.add_argument(
        "--select", action="append", metavar="CODES", help="only these rules (replaces config)"
    )
    selection.add_argument("--extend-select", action="append", metavar="CODES", help="these rules as well")
    selection.add_argument("--ignore", action="append", metavar="CODES", help="not these rules")
    output = parser.add_argument_group("output")
    output.add_argument("--format", choices=FORMATS, default="text", help="report format")
    output.add_argument("--statistics", action="store_true", help="count findings per rule")
    output.add_argument("-q", "--quiet", action="store_true", help="print findings only, no summary")
    output.add_argument("--exit-zero", action="store_true", help="exit 0 even when there are findings")
    fixing = parser.add_argument_group("fixes")
    fixing.add_argument("--fix", action="store_true", help="apply safe fixes in place")
    fixing.add_argument(
        "--unsafe-fixes", action="store_true", help="also apply fixes that may change behavior"
    )
    fixing.add_argument("--diff", action="store_true", help="print the fixes as a diff, write nothing")
    run = parser.add_argument_group("run")
    run.add_argument("--config", metavar="PATH", help="pyproject.toml to read [tool.looplint] from")
    run.add_argument("--no-cache", action="store_true", help="do not read or write .looplint_cache")
    run.add_argument(
        "-j", "--jobs", type=int_at_least(1), metavar="N", help="worker processes (default: CPUs)"
    )
    run.add_argument("--stdin-filename", metavar="NAME", help="name for '-' in reports and per-file-ignores")
    parser.add_argument("--version", action="version", version=f"looplint {looplint.__version__}")
    return parser


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `minimum`, else a one-line error."""
    what = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    try:
        return parser.parse_args(argv)
    except SystemExit as exit_:  # argparse already printed usage or help
        return exit_.code if isinstance(exit_.code, int) else EXIT_ERROR


def _selectors(values: list[str] | None, option: str) -> tuple[str, ...] | None:
    if values is None:
        return None
    items = [item for value in values for item in value.split(",") if item.strip()]
    return parse_selectors(items, option)


def _load(args: argparse.Namespace) -> Config:
    paths = [path for path in args.paths if path != STDIN]
    if args.stdin_filename and not paths:
        start = os.path.dirname(os.path.abspath(args.stdin_filename))
    else:
        start = paths[0] if paths else "."
    config = load_config(start, path=args.config)
    return config.with_cli(
        select=_selectors(args.select, "--select"),
        extend_select=_selectors(args.extend_select, "--extend-select") or (),
        ignore=_selectors(args.ignore, "--ignore") or (),
    )


def _lint_command(argv: list[str]) -> int:
    from looplint import engine

    parsed = _parse(_parser(), argv)
    if isinstance(parsed, int):
        return parsed
    args = parsed
    # Like other linters, a stdin name without paths means: read stdin.
    args.paths = args.paths or ([STDIN] if args.stdin_filename else ["."])
    if args.statistics and args.format not in ("text", "json"):
        _error("--statistics works with --format text or json")
        return EXIT_ERROR
    try:
        config = _load(args)
    except ConfigError as error:
        _error(str(error))
        return EXIT_ERROR

    stdin_data = sys.stdin.buffer.read() if STDIN in args.paths else None
    stdin_name = args.stdin_filename or "<stdin>"
    files = [path for path in args.paths if path != STDIN]

    # --fix writes files (or prints fixed stdin); --diff only shows; both go before reporting.
    fix_in_place = (args.fix or args.unsafe_fixes) and not args.diff
    if args.diff or fix_in_place:
        status, fixed_stdin = _fix(files, stdin_data, stdin_name, args, config)
        if status is not None:
            return status
        stdin_data = fixed_stdin

    result = engine.lint_paths(files, config, jobs=args.jobs, use_cache=not args.no_cache)
    if stdin_data is not None:
        try:
            result.findings = sorted(
                engine.lint_bytes(stdin_data, stdin_name, config) + result.findings,
                key=engine.sort_key,
            )
        except engine.FileError as error:
            result.errors.append(str(error))
        result.files += 1

    for message in result.errors:
        _error(message)
    # Fixed stdin went to stdout: the report must not mix into it.
    out = sys.stderr if (fix_in_place and STDIN in args.paths) else sys.stdout
    out.write(render(result.findings, args.format, statistics=args.statistics))
    if result.files == 0:
        # As ruff does: an empty result must not read like a clean bill of health.
        out.flush()
        _warning("nothing was linted: no Python files or notebooks in the given paths")
    elif args.format == "text" and not args.quiet:
        out.write(_summary(result.findings, result.files))
    out.flush()

    if result.errors:
        return EXIT_ERROR
    if result.findings and not args.exit_zero:
        return EXIT_FINDINGS
    return EXIT_CLEAN


def _summary(findings: list[Finding], files: int) -> str:
    checked = plural(files, "file")
    if not findings:
        return f"No problems found in {checked}.\n"
    safe = sum(1 for finding in findings if finding.fix is not None and finding.fix.safe)
    unsafe = sum(1 for finding in findings if finding.fix is not None and not finding.fix.safe)
    fixable = []
    if safe:
        fixable.append(f"{safe} fixable with --fix")
    if unsafe:
        fixable.append(f"{unsafe} {'more ' if safe else ''}fixable with --unsafe-fixes")
    text = f"Found {plural(len(findings), 'problem')} in {checked}"
    if fixable:
        text += f" ({', '.join(fixable)})"
    return text + ".\n"


def _fix(
    files: list[str],
    stdin_data: bytes | None,
    stdin_name: str,
    args: argparse.Namespace,
    config: Config,
) -> tuple[int | None, bytes | None]:
    """Apply fixes in place, or with --diff print them. Returns the exit status when the run
    ends here (--diff, or no fixer), and the fixed stdin content (already written to stdout)."""
    try:
        from looplint.engine.fixer import fix_bytes, write_atomic
    except ImportError:
        _error("fixes are not available in this installation (looplint.engine.fixer is missing)")
        return EXIT_ERROR, None
    from looplint import engine
    from looplint.engine.files import discover

    discovery = discover(files, config, notebooks=engine.notebooks_supported())
    # When fixing in place, the lint run that follows reports unreadable paths.
    errors = list(discovery.errors)
    targets: list[tuple[str, bytes | None]] = [(path, None) for path in discovery.files]
    if stdin_data is not None:
        targets.append((stdin_name, stdin_data))

    fixed = changed = 0
    fixed_stdin = stdin_data
    for path, data in targets:
        from_stdin = data is not None
        try:
            original = data if data is not None else engine.read_bytes(path)
        except engine.FileError as error:
            errors.append(str(error))
            continue
        outcome = fix_bytes(
            original,
            path,
            unsafe=args.unsafe_fixes,
            is_enabled=lambda code, path=path: config.is_enabled(code, path),
        )
        if from_stdin:
            fixed_stdin = outcome.new_data
            if not args.diff:
                sys.stdout.buffer.write(outcome.new_data)
                sys.stdout.flush()
        if outcome.new_data == original:
            continue
        changed += 1
        fixed += len(outcome.applied)
        if args.diff:
            sys.stdout.write(_diff(path, original, outcome.new_data))
        elif not from_stdin:
            write_atomic(path, outcome.new_data)

    sys.stdout.flush()  # the diff comes before the line that counts it
    if not args.quiet and fixed:
        verb = "Would fix" if args.diff else "Fixed"
        print(f"{verb} {plural(fixed, 'problem')} in {plural(changed, 'file')}.", file=sys.stderr)
    elif not args.quiet and args.diff and targets:
        print("Nothing to fix.", file=sys.stderr)
    if not args.diff:
        return None, fixed_stdin
    for message in sorted(errors):
        _error(message)
    if errors:
        return EXIT_ERROR, None
    return (EXIT_FINDINGS if changed and not args.exit_zero else EXIT_CLEAN), None


def _diff(path: str, before: bytes, after: bytes) -> str:
    old = before.decode("utf-8", "replace").splitlines(keepends=True)
    new = after.decode("utf-8", "replace").splitlines(keepends=True)
    lines = difflib.unified_diff(old, new, fromfile=f"a/{path}", tofile=f"b/{path}")
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _rule_command(argv: list[str]) -> int:
    from looplint.catalog import RULES
    from looplint.catalog import render as render_rule

    parser = argparse.ArgumentParser(
        prog="looplint rule", description="Explain a rule, or list them all.", allow_abbrev=False
    )
    parser.add_argument("code", nargs="?", help="rule code such as LL101")
    parsed = _parse(parser, argv)
    if isinstance(parsed, int):
        return parsed
    if parsed.code is None:
        width = max((len(info.name) for info in RULES.values()), default=0)
        for info in RULES.values():
            print(f"{info.code}  {info.name:<{width}}  {info.summary}")
        return EXIT_CLEAN
    info = RULES.get(parsed.code.upper())
    if info is None:
        _error(f"unknown rule {parsed.code!r}; 'looplint rule' lists them")
        return EXIT_ERROR
    sys.stdout.write(render_rule(info))
    return EXIT_CLEAN


def _run_command(argv: list[str]) -> int:
    try:
        from looplint.runtime.cli import main as run_main
    except ImportError as error:
        _error(f"'looplint run' needs the runtime extra (pip install 'looplint[runtime]'): {error}")
        return EXIT_ERROR
    return run_main(argv)
