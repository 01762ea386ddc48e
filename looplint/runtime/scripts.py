"""Running a user's script as `python SCRIPT ARGS` would, for `looplint run` and its `--lr-find`."""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from typing import Any


@dataclass
class ScriptOutcome:
    """How the script ended: 'finished' (maybe via sys.exit), 'stopped' by looplint, 'interrupted'
    (Ctrl-C) or 'crashed' (its traceback was printed as Python prints it)."""

    exit_code: int
    ending: str
    error: BaseException | None = None


def run_as_main(
    script: str, script_args: list[str], *, stop: tuple[type[BaseException], ...] = ()
) -> ScriptOutcome:
    """Run SCRIPT as `__main__` with its argv and its directory on sys.path, both restored after.
    `stop` are the exceptions looplint raises inside the script to end it early."""
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [script, *script_args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        # Absolute, as `python SCRIPT` sets `__file__`: a script that changes directory can still
        # find the files next to it.
        runpy.run_path(os.path.abspath(script), run_name="__main__")
        return ScriptOutcome(0, "finished")
    except stop:
        return ScriptOutcome(0, "stopped")
    except SystemExit as exit_:
        return ScriptOutcome(_exit_code(exit_.code), "finished")
    except KeyboardInterrupt:
        print("KeyboardInterrupt", file=sys.stderr)
        return ScriptOutcome(130, "interrupted")
    except BaseException as error:  # noqa: BLE001 - the script's own crash, shown like python
        print_script_traceback(error)
        return ScriptOutcome(1, "crashed", error)
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def _exit_code(code: Any) -> int:
    """What `python SCRIPT` exits with for `sys.exit(code)`."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def print_script_traceback(error: BaseException) -> None:
    """The traceback as `python SCRIPT` would show it: without looplint's and runpy's frames."""
    from looplint.runtime.sites import _is_internal

    tb = error.__traceback__
    while tb is not None and _is_internal(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    # No frame of the script (e.g. a SyntaxError while compiling it): the message alone says it.
    traceback.print_exception(type(error), error, tb, file=sys.stderr)


def failure_site(error: BaseException) -> str | None:
    """Where the script's own code raised `error` (the innermost frame of the user's code)."""
    from looplint.runtime.sites import Site, _is_internal

    site = None
    tb = error.__traceback__
    while tb is not None:
        if not _is_internal(tb.tb_frame.f_code.co_filename):
            site = Site(tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return site.display() if site else None


@contextmanager
def output_to_stderr() -> Iterator[None]:
    """Send what the script prints to stderr, so that stdout holds only a machine-readable report.

    Both `print()` and file descriptor 1 are redirected, so subprocesses, DataLoader workers and
    C extensions that write to stdout cannot corrupt the report either.
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:
        saved = None
    try:
        if saved is not None:
            os.dup2(2, 1)
        with redirect_stdout(sys.stderr):
            yield
    finally:
        for stream in (sys.stdout, sys.__stdout__, sys.stderr):
            if stream is not None:
                stream.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
