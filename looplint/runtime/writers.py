"""SummaryWriter checks: writes after close (LL301/LL303), writers left open (LL501), bad
global_step (LL502), loss tags that grow like running sums (LL202).

The writer class is patched for the session only. Logged tensors are cloned, never read, until the
end of the run.
"""

from __future__ import annotations

import glob
import inspect
import numbers
import os
import struct
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from looplint.runtime.patches import Undo
from looplint.runtime.problems import Problem
from looplint.runtime.series import is_loss_tag, looks_like_running_sum
from looplint.runtime.sites import Site, user_site
from looplint.words import plural, times

# Methods whose points need a step to be placed on TensorBoard's x axis.
_STEP_METHODS = frozenset(
    {
        "add_scalar",
        "add_scalars",
        "add_histogram",
        "add_histogram_raw",
        "add_image",
        "add_images",
        "add_image_with_boxes",
        "add_figure",
        "add_video",
        "add_audio",
        "add_pr_curve",
        "add_pr_curve_raw",
        "add_tensor",
        "add_mesh",
    }
)
_MAX_POINTS = 100_000  # per tag, kept for the LL202 check


@dataclass
class WriterState:
    """What one SummaryWriter went through during the session."""

    writer_ref: Any
    log_dir: str
    created_at: Site | None
    created_in_session: bool
    events: int = 0
    depth: int = 0
    close_sites: Counter = field(default_factory=Counter)
    last_close: Site | None = None
    reopened: int = 0
    reopened_after: Counter = field(default_factory=Counter)  # close site -> writes that reopened
    write_after_close: list[tuple[Site | None, Site | None]] = field(default_factory=list)
    missing_step: Counter = field(default_factory=Counter)
    last_step: dict[str, int] = field(default_factory=dict)
    backwards: dict[str, list[Any]] = field(default_factory=dict)  # tag -> [site, count, prev, step]
    loss_points: dict[str, list[Any]] = field(default_factory=dict)
    loss_sites: dict[str, Site | None] = field(default_factory=dict)
    unflushed: int | None = None
    event_files: int = 0


def _step_position(method: Callable[..., Any]) -> int | None:
    try:
        names = list(inspect.signature(method).parameters)[1:]
    except (TypeError, ValueError):
        return None
    return names.index("global_step") if "global_step" in names else None


def count_records(path: str) -> int:
    """Number of complete TFRecord records in an event file (as far as it is on disk)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return 0
    count, offset = 0, 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        end = offset + 12 + length + 4
        if end > len(data):
            break
        count, offset = count + 1, end
    return count


class WriterTracker:
    """Patches torch's SummaryWriter for the session and checks what it was used for."""

    def __init__(self, guard: Callable[[BaseException], None]) -> None:
        self._guard = guard
        self.writers: dict[int, WriterState] = {}
        self.on_new_writer: Callable[[Any], None] | None = None
        self.muted = 0  # >0 while an observer writes (its writes are not the user's)
        self._sent: Counter[int] = Counter()  # events handed to each FileWriter

    def install(self, undo: Undo) -> None:
        from torch.utils.tensorboard import writer as tb_writer

        summary_writer = tb_writer.SummaryWriter
        tracker = self

        original_init = summary_writer.__init__

        def __init__(writer: Any, *args: Any, **kwargs: Any) -> None:
            original_init(writer, *args, **kwargs)
            try:
                tracker._state(writer, created=True)
            except Exception as error:  # noqa: BLE001
                tracker._guard(error)

        undo.patch(summary_writer, "__init__", __init__)

        original_close = summary_writer.close

        def close(writer: Any) -> None:
            try:
                state = tracker._state(writer)
                if writer.all_writers is not None:
                    site = user_site()
                    state.close_sites[site] += 1
                    state.last_close = site
            except Exception as error:  # noqa: BLE001
                tracker._guard(error)
            original_close(writer)

        undo.patch(summary_writer, "close", close)

        for name, method in inspect.getmembers(summary_writer, inspect.isfunction):
            if name.startswith("add_"):
                undo.patch(summary_writer, name, self._wrap_add(name, method))

        original_add_event = tb_writer.FileWriter.add_event

        def add_event(file_writer: Any, *args: Any, **kwargs: Any) -> Any:
            tracker._sent[id(file_writer)] += 1
            return original_add_event(file_writer, *args, **kwargs)

        undo.patch(tb_writer.FileWriter, "add_event", add_event)

    def _state(self, writer: Any, created: bool = False) -> WriterState:
        state = self.writers.get(id(writer))
        if state is None or state.writer_ref() is not writer:
            state = WriterState(
                writer_ref=weakref.ref(writer),
                log_dir=str(writer.get_logdir()),
                created_at=user_site(),
                created_in_session=created,
            )
            self.writers[id(writer)] = state
            if self.on_new_writer is not None:
                self.on_new_writer(writer)
        return state

    def _wrap_add(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        step_at = _step_position(method)
        tracker = self

        def add(writer: Any, *args: Any, **kwargs: Any) -> Any:
            state = None
            if tracker.muted:
                return method(writer, *args, **kwargs)
            try:
                state = tracker._state(writer)
                if state.depth == 0:
                    tracker._before_write(state, writer, name, step_at, args, kwargs)
            except Exception as error:  # noqa: BLE001
                tracker._guard(error)
            if state is None:
                return method(writer, *args, **kwargs)
            state.depth += 1
            try:
                return method(writer, *args, **kwargs)
            finally:
                state.depth -= 1

        add.__wrapped__ = method  # type: ignore[attr-defined]
        return add

    def _before_write(
        self,
        state: WriterState,
        writer: Any,
        name: str,
        step_at: int | None,
        args: tuple,
        kwargs: dict[str, Any],
    ) -> None:
        state.events += 1
        site = user_site()
        if writer.all_writers is None:  # closed: this write opens a new event file
            state.reopened += 1
            state.reopened_after[state.last_close] += 1
            if len(state.write_after_close) < 100:
                state.write_after_close.append((state.last_close, site))
        if name not in _STEP_METHODS:
            return
        step = kwargs.get("global_step")
        if step is None and step_at is not None and len(args) > step_at:
            step = args[step_at]
        if step is None:
            state.missing_step[site] += 1
        tag = kwargs.get("tag", kwargs.get("main_tag", args[0] if args else None))
        if not isinstance(tag, str):
            return
        if name == "add_scalar":
            value = kwargs.get("scalar_value", args[1] if len(args) > 1 else None)
            self._observe(state, tag, step, value, site)
        elif name == "add_scalars":
            values = kwargs.get("tag_scalar_dict", args[1] if len(args) > 1 else None)
            if isinstance(values, dict):
                for sub, value in values.items():
                    self._observe(state, f"{tag}/{sub}", step, value, site)

    def _observe(self, state: WriterState, tag: str, step: Any, value: Any, site: Site | None) -> None:
        # Tensor steps are skipped: reading them could synchronize with the device.
        if isinstance(step, numbers.Real) and not isinstance(step, torch.Tensor):
            step = int(step)  # event files store the step as an integer
            previous = state.last_step.get(tag)
            if previous is not None and step <= previous:
                record = state.backwards.get(tag)
                if record is None:
                    state.backwards[tag] = [site, 1, previous, step]
                else:
                    record[1] += 1
            state.last_step[tag] = step
        if is_loss_tag(tag):
            points = state.loss_points.setdefault(tag, [])
            if len(points) < _MAX_POINTS:
                # Cloned so later in-place updates of the user's tensor do not change history.
                points.append(value.detach().clone() if isinstance(value, torch.Tensor) else value)
                state.loss_sites.setdefault(tag, site)

    # -- end of session ---------------------------------------------------------------------
    def finish(self, session_start: float, *, stopped_early: bool = False) -> list[Problem]:
        """Inspect the writers once the run is over (reads logged tensors and event files).

        After a run cut short by `--max-steps` the script never reached its own `close()`: its
        writers are closed here (so nothing is lost) instead of being reported as left open.
        """
        problems: list[Problem] = []
        for state in self.writers.values():
            writer = state.writer_ref()
            state.event_files = self._event_files(state, session_start)
            is_open = writer is not None and writer.all_writers is not None
            if is_open and stopped_early:
                writer.close()
            elif is_open and state.created_in_session:
                state.unflushed = self._unflushed(writer)
                if state.unflushed:
                    verb = "was" if state.unflushed == 1 else "were"
                    on_disk = f"{state.unflushed} of {plural(state.events, 'event')} {verb} not on disk"
                else:  # the flush timer happened to run: this time nothing was lost
                    on_disk = f"this time all {plural(state.events, 'event')} were on disk"
                problems.append(
                    Problem(
                        "LL501",
                        state.created_at,
                        f"SummaryWriter('{state.log_dir}') is never closed: events still queued when "
                        f"the process exits are lost ({on_disk} when the run ended); call "
                        "writer.close() after training or use `with SummaryWriter(...) as writer:`",
                        details={"log_dir": state.log_dir, "unflushed_events": state.unflushed},
                    )
                )
            problems.extend(self._close_problems(state))
            problems.extend(self._step_problems(state))
            problems.extend(self._sum_problems(state))
        return problems

    def _unflushed(self, writer: Any) -> int:
        missing = 0
        for file_writer in list((writer.all_writers or {}).values()):
            path = getattr(getattr(file_writer, "event_writer", None), "_file_name", None)
            if path is None:
                continue
            # +1: the file-version event written when the file is created.
            missing += max(0, self._sent[id(file_writer)] + 1 - count_records(path))
        return missing

    def _event_files(self, state: WriterState, session_start: float) -> int:
        pattern = os.path.join(glob.escape(state.log_dir), f"events.out.tfevents.*.{os.getpid()}.*")
        files = [p for p in glob.glob(pattern) if os.path.getmtime(p) >= session_start - 1]
        return len(files) or 1 + state.reopened

    def _close_problems(self, state: WriterState) -> list[Problem]:
        """LL301 for a close() that ran again and again during training, with the writes that
        reopened the writer after it; LL303 for writes after a close that LL301 does not explain
        (one problem, one finding)."""
        if not state.write_after_close:
            return []
        files = f"{plural(state.event_files, 'event file')} in {state.log_dir}"
        problems = []
        in_loop = {
            site
            for site, reopened in state.reopened_after.items()
            if site is not None and reopened and state.close_sites[site] >= 2
        }
        for site in in_loop:
            reopened = state.reopened_after[site]
            write = next((w for c, w in state.write_after_close if c == site and w), None)
            written_at = f" (at {write.display()})" if write else ""
            problems.append(
                Problem(
                    "LL301",
                    site,
                    f"writer.close() ran {times(state.close_sites[site])} during training and the "
                    f"writer was written to again {times(reopened)} after it{written_at}: each "
                    f"reopening started a new event file ({files})",
                    related=[write] if write else [],
                    details={
                        "closes": state.close_sites[site],
                        "reopened": reopened,
                        "event_files": state.event_files,
                    },
                )
            )
        unexplained = [(c, w) for c, w in state.write_after_close if c not in in_loop]
        if unexplained:
            close_site, write_site = unexplained[0]
            reopened = sum(n for site, n in state.reopened_after.items() if site not in in_loop)
            closed_at = f" (closed at {close_site.display()})" if close_site else ""
            problems.append(
                Problem(
                    "LL303",
                    write_site,
                    f"SummaryWriter('{state.log_dir}') was written to after close(){closed_at}: "
                    + (
                        "a write after the close silently opened a new event file"
                        if reopened == 1
                        else f"{reopened} writes after a close each silently opened a new event file"
                    )
                    + f" ({files})",
                    related=[s for s in (close_site,) if s],
                    details={"reopened": reopened, "event_files": state.event_files},
                )
            )
        return problems

    def _step_problems(self, state: WriterState) -> list[Problem]:
        problems = []
        for site, count in state.missing_step.items():
            problems.append(
                Problem(
                    "LL502",
                    site,
                    f"logged without global_step ({plural(count, 'call')}): TensorBoard puts every point at "
                    "step 0; pass the global step counter",
                    details={"calls": count},
                )
            )
        for tag, (site, count, previous, step) in state.backwards.items():
            problems.append(
                Problem(
                    "LL502",
                    site,
                    f"global_step of tag '{tag}' does not increase: step {step} logged after step "
                    f"{previous} ({times(count)}); use a counter that keeps growing across epochs",
                    details={"tag": tag, "times": count},
                )
            )
        return problems

    def _sum_problems(self, state: WriterState) -> list[Problem]:
        problems = []
        for tag, points in state.loss_points.items():
            values = _to_floats(points)
            if values is not None and looks_like_running_sum(values):
                problems.append(
                    Problem(
                        "LL202",
                        state.loss_sites.get(tag),
                        f"tag '{tag}' grows like a running sum ({len(values)} points from "
                        f"{values[0]:.4g} to {max(values):.4g}): the logged value is an accumulated "
                        "loss that was not divided by its count",
                        details={"tag": tag, "points": len(values)},
                    )
                )
        return problems

    def summary(self) -> list[dict[str, Any]]:
        return [
            {
                "log_dir": s.log_dir,
                "created_at": s.created_at.display() if s.created_at else None,
                "events": s.events,
                "closed": (s.writer_ref() is None or s.writer_ref().all_writers is None),
                "event_files": s.event_files,
                "unflushed_events": s.unflushed,
            }
            for s in self.writers.values()
        ]


def _to_floats(points: list[Any]) -> list[float] | None:
    values = []
    for point in points:
        try:
            values.append(float(point.float().mean()) if isinstance(point, torch.Tensor) else float(point))
        except (TypeError, ValueError, RuntimeError):
            return None
    return values
