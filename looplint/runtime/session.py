"""One instrumented run: installs hooks and patches, collects observations, builds findings."""

from __future__ import annotations

import bisect
import functools
import time
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from looplint.findings import Finding, RuntimeFindingsError
from looplint.runtime.clipping import ClipTracker
from looplint.runtime.grads import GradTracker, OptimizerState
from looplint.runtime.health import GRAD_CHECK_FIRST, Health, SyncCounter, check_period, unscaled_loss
from looplint.runtime.lifecycle import optimizer_problems, unowned_problem
from looplint.runtime.modes import ModeTracker
from looplint.runtime.patches import Undo
from looplint.runtime.problems import Problem
from looplint.runtime.sites import Site, display_path, user_site
from looplint.runtime.writers import WriterTracker
from looplint.words import plural

__all__ = ["RuntimeFindingsError", "RuntimeReport", "StopRun", "Watch", "watch"]

F = TypeVar("F", bound=Callable[..., Any])
# CUDA sync counting starts once the script has initialized CUDA, looked for at its first steps.
_SYNC_START_STEPS = 100


class StopRun(BaseException):
    """Raised from the step hook to end a `looplint run --max-steps N` run (not an Exception, so
    the script's own `except Exception` blocks let it through)."""


class RuntimeReport:
    """What a watched run produced: `findings` (looplint Findings, origin "runtime") and a
    `summary` dict (steps, backward passes, writers, ...).

    It is filled when the watched block exits; reading it before then raises an error instead of
    showing an empty report that would look like a clean run.
    """

    def __init__(self) -> None:
        self._findings: list[Finding] = []
        self._summary: dict[str, Any] = {}
        self.finished = False

    def _check_finished(self) -> None:
        if not self.finished:
            raise RuntimeError(
                "looplint: the runtime report is filled when the watched block exits (after the "
                "`with looplint.watch()` block, the decorated function, or the test body); it "
                "cannot be read inside it"
            )

    @property
    def findings(self) -> list[Finding]:
        self._check_finished()
        return self._findings

    @property
    def summary(self) -> dict[str, Any]:
        self._check_finished()
        return self._summary

    def __repr__(self) -> str:
        if not self.finished:
            return "RuntimeReport(<filled when the watched block exits>)"
        return f"RuntimeReport(findings={len(self._findings)}, summary={self._summary!r})"


def _load_observers() -> list[Any]:
    try:
        from looplint.lrfind.monitor import LRMonitor
    except ImportError:
        return []
    try:
        return [LRMonitor()]
    except Exception as error:  # noqa: BLE001 - an observer must not stop the run
        warnings.warn(f"looplint: learning-rate monitor unavailable: {error}", RuntimeWarning, stacklevel=2)
        return []


class Session:
    """Instruments torch for the duration of one watched run."""

    def __init__(
        self,
        *,
        accumulation_steps: int | None = None,
        grad_checks: bool = True,
        writer_checks: bool = True,
        health_checks: bool = True,
        max_steps: int | None = None,
        observers: list[Any] | None = None,
    ) -> None:
        self.accumulation_steps = accumulation_steps
        self.grad_checks = grad_checks
        self.writer_checks = writer_checks
        self.health_checks = health_checks
        self.max_steps = max_steps
        self.observers = _load_observers() if observers is None else observers
        self._handlers: dict[str, list[Any]] = {}
        # Observers take each backward's loss value (computed once), or the loss itself.
        self._value_handlers = self._handlers_of("on_loss_value")
        self._backward_handlers = [
            handler
            for observer in self.observers
            if not hasattr(observer, "on_loss_value") and (handler := getattr(observer, "on_backward", None))
        ]
        self._step_handlers = self._handlers_of("on_optimizer_step")
        self.errors: list[str] = []
        self.grads = GradTracker(self._internal_error, accumulation_steps)
        self.writers = WriterTracker(self._internal_error)
        self.modes = ModeTracker(self.grads, self._internal_error)
        self.clips = ClipTracker(self.grads, self._internal_error)
        self.health = Health()
        self.syncs = SyncCounter(self.health)
        self.writers.on_new_writer = lambda writer: self._notify("on_writer", writer)
        self._undo = Undo()
        self._backward_depth = 0
        self._started = 0.0
        self.stopped_early = False  # ended by max_steps: the script never reached its own cleanup

    # -- safety -----------------------------------------------------------------------------
    def _internal_error(self, error: BaseException) -> None:
        if len(self.errors) < 20:
            self.errors.append(f"{type(error).__name__}: {error}")

    def _handlers_of(self, method: str) -> list[Any]:
        handlers = self._handlers.get(method)
        if handlers is None:
            handlers = self._handlers[method] = [
                handler for observer in self.observers if (handler := getattr(observer, method, None))
            ]
        return handlers

    def _notify(self, method: str, *args: Any) -> Any:
        """Call an observer method; its errors are recorded, never raised into the script."""
        handlers = self._handlers_of(method)
        if not handlers:
            return []
        results = []
        self.writers.muted += 1  # what an observer writes to a SummaryWriter is not the script's
        try:
            for handler in handlers:
                try:
                    results.append(handler(*args))
                except Exception as error:  # noqa: BLE001
                    self._internal_error(error)
        finally:
            self.writers.muted -= 1
        return results

    # -- install / remove ---------------------------------------------------------------------
    def start(self) -> None:
        self._started = time.time()
        try:
            self._install()
        except BaseException:
            self._undo.run()
            raise

    def _install(self) -> None:
        from torch.optim import optimizer as optim_module

        undo = self._undo
        session = self

        original_backward = torch.autograd.backward

        def backward(tensors: Any, *args: Any, **kwargs: Any) -> Any:
            if session._backward_depth:  # reentrant (checkpointing): part of the outer pass
                return original_backward(tensors, *args, **kwargs)
            before = None
            try:
                before = session._on_backward(tensors, user_site(2))
            except Exception as error:  # noqa: BLE001
                session._internal_error(error)
            session._backward_depth += 1
            try:
                return original_backward(tensors, *args, **kwargs)
            finally:
                session._backward_depth -= 1
                if before is not None:
                    try:
                        session.grads.after_backward(before)
                    except Exception as error:  # noqa: BLE001
                        session._internal_error(error)

        functools.update_wrapper(backward, original_backward)
        undo.patch(torch.autograd, "backward", backward)

        if self.grad_checks or self.health_checks or self.max_steps is not None or self.observers:
            undo.handle(optim_module.register_optimizer_step_post_hook(self._on_step_post))
            self._patch_optimizer_init(undo)
        if self.grad_checks:
            self._patch_clearing(undo)
            self.modes.install(undo)
            self.clips.install(undo)
        if self.observers:
            self._patch_scheduler_init(undo)
        if self.writer_checks:
            try:
                self.writers.install(undo)
            except ImportError:
                pass  # tensorboard is not installed: nothing can write
        if self.health_checks:
            undo.call(self.syncs.stop)
            self.syncs.start()

    def _patch_optimizer_init(self, undo: Undo) -> None:
        original_init = torch.optim.Optimizer.__init__
        session = self

        def __init__(optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> None:
            original_init(optimizer, *args, **kwargs)
            try:
                session.grads.track_optimizer(optimizer, user_site(), from_start=True)
            except Exception as error:  # noqa: BLE001
                session._internal_error(error)

        functools.update_wrapper(__init__, original_init)
        undo.patch(torch.optim.Optimizer, "__init__", __init__)

    def _patch_clearing(self, undo: Undo) -> None:
        session = self
        grads = self.grads

        original_zero_grad = torch.optim.Optimizer.zero_grad

        def optimizer_zero_grad(optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
            try:
                grads.on_clear_optimizer(optimizer)
            except Exception as error:  # noqa: BLE001
                session._internal_error(error)
            grads.clearing += 1  # its zero_() calls on each gradient are this one event
            try:
                return original_zero_grad(optimizer, *args, **kwargs)
            finally:
                grads.clearing -= 1

        functools.update_wrapper(optimizer_zero_grad, original_zero_grad)
        undo.patch(torch.optim.Optimizer, "zero_grad", optimizer_zero_grad)

        original_module_zero_grad = torch.nn.Module.zero_grad

        def module_zero_grad(module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
            try:
                grads.on_clear_module(module)
            except Exception as error:  # noqa: BLE001
                session._internal_error(error)
            grads.clearing += 1
            try:
                return original_module_zero_grad(module, *args, **kwargs)
            finally:
                grads.clearing -= 1

        functools.update_wrapper(module_zero_grad, original_module_zero_grad)
        undo.patch(torch.nn.Module, "zero_grad", module_zero_grad)

        original_zero_ = torch.Tensor.zero_

        def zero_(tensor: torch.Tensor) -> torch.Tensor:
            result = original_zero_(tensor)
            try:
                grads.on_tensor_zeroed(tensor)
            except Exception as error:  # noqa: BLE001
                session._internal_error(error)
            return result

        functools.update_wrapper(zero_, original_zero_)
        undo.patch(torch.Tensor, "zero_", zero_)

    def _patch_scheduler_init(self, undo: Undo) -> None:
        from torch.optim import lr_scheduler

        original_init = lr_scheduler.LRScheduler.__init__
        session = self

        def __init__(scheduler: Any, *args: Any, **kwargs: Any) -> None:
            original_init(scheduler, *args, **kwargs)
            session._notify("on_scheduler_created", scheduler)

        functools.update_wrapper(__init__, original_init)
        undo.patch(lr_scheduler.LRScheduler, "__init__", __init__)

    def stop(self) -> list[str]:
        """Remove every hook and patch; returns the errors met while undoing."""
        return [f"{type(e).__name__}: {e}" for e in self._undo.run()]

    # -- hooks ------------------------------------------------------------------------------
    def _on_backward(self, tensors: Any, site: Site | None) -> Any:
        """Before a backward pass; returns what the gradient checks compare after it."""
        grads = self.grads
        if grads.backward_count == 0 and self.grad_checks:
            grads.note_graph_leaves(tensors if isinstance(tensors, (tuple, list)) else (tensors,))
        grads.on_backward(site)
        loss = tensors if isinstance(tensors, torch.Tensor) else None
        if loss is None and isinstance(tensors, (tuple, list)) and len(tensors) == 1:
            loss = tensors[0]
        if self.modes.pending:
            self.modes.on_backward()
        if self.clips.scaled is not None:
            self.clips.on_backward(loss, grads.backward_count)
        if loss is not None:
            if loss.is_floating_point() and (self.health_checks or self._value_handlers):
                value = unscaled_loss(loss)
                if self.health_checks:
                    self.health.on_loss(value, grads.backward_count, site)
                for handler in self._value_handlers:
                    try:
                        handler(value)
                    except Exception as error:  # noqa: BLE001
                        self._internal_error(error)
            for handler in self._backward_handlers:
                try:
                    handler(loss)
                except Exception as error:  # noqa: BLE001
                    self._internal_error(error)
        return grads.before_backward() if self.grad_checks else None

    def _on_step_post(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        grads = self.grads
        try:
            state: OptimizerState = grads.on_step_post(optimizer, args, kwargs)
            if self.health_checks:
                self.health.on_step(optimizer, grads.total_steps, state.label)
                if grads.total_steps <= _SYNC_START_STEPS and not self.syncs.started:
                    self.syncs.start()
        except Exception as error:  # noqa: BLE001
            self._internal_error(error)
        if self._step_handlers:
            writers = self.writers
            writers.muted += 1  # what an observer writes to a SummaryWriter is not the script's
            try:
                for handler in self._step_handlers:
                    try:
                        handler(optimizer)
                    except Exception as error:  # noqa: BLE001
                        self._internal_error(error)
            finally:
                writers.muted -= 1
        if self.max_steps is not None and grads.total_steps >= self.max_steps:
            self.stopped_early = True
            raise StopRun

    # -- results ----------------------------------------------------------------------------
    def finish(self, report: RuntimeReport) -> None:
        """Turn observations into findings (reads the lazily kept values; call after stop())."""
        problems: list[Problem] = []
        try:
            if self.grad_checks:
                self.grads.finish()
            for grad_problem in self.grads.problems.values():
                details = dict(grad_problem.details)
                details.update(
                    optimizer=grad_problem.optimizer,
                    first_step=grad_problem.first_step,
                    steps_affected=grad_problem.occurrences,
                )
                message = grad_problem.message
                if grad_problem.occurrences > 1:
                    message += (
                        f" (first at step {grad_problem.first_step}; "
                        f"{grad_problem.occurrences} steps affected)"
                    )
                problems.append(
                    Problem(grad_problem.code, grad_problem.site, message, grad_problem.related, details)
                )
            if self.grad_checks:
                if self.grads.pending:
                    self.grads.note_unowned()
                problems.extend(optimizer_problems(self.grads))
                unowned = unowned_problem(self.grads)
                if unowned is not None:
                    problems.append(unowned)
                problems.extend(self.modes.problems())
                problems.extend(self.clips.found())
            if self.health_checks:
                self.health.final_check(self.grads.total_steps)
                problems.extend(self._health_problems())
            if self.writer_checks:
                problems.extend(self.writers.finish(self._started, stopped_early=self.stopped_early))
        except Exception as error:  # noqa: BLE001
            self._internal_error(error)
        self._explain_divergence()
        findings = []
        for results in self._notify("finish"):
            for finding in results or ():
                if isinstance(finding, Finding):
                    findings.append(finding.with_(origin="runtime"))
        findings.extend(_finding(problem) for problem in problems)
        report._findings = sorted(findings)
        report._summary = self._summary()
        report.finished = True
        if self.errors:
            warnings.warn(
                "looplint: the runtime hook met an internal error and its results may be "
                f"incomplete: {self.errors[0]}",
                RuntimeWarning,
                stacklevel=3,
            )

    def _explain_divergence(self) -> None:
        """Tell the observers which optimizers' steps a gradient bug inflates, so that a diverging
        loss (LL506) names that bug instead of blaming the learning rate."""
        for problem in self.grads.problems.values():
            if problem.code != "LL101" or "parameters" not in problem.details:
                continue  # only gradients that pile up across steps make the updates grow
            optimizer = self.grads.optimizer_named(problem.optimizer)
            if optimizer is None:
                continue
            where = f" at {problem.site.display()}" if problem.site else ""
            cause = (
                f"the optimizer's gradients are never cleared (LL101{where}), so every step applies "
                "the sum of all earlier gradients and the updates grow as if the learning rate rose; "
                "fix LL101 first, the learning rate may be fine"
            )
            self._notify("on_root_cause", optimizer, "LL101", cause)

    def _health_problems(self) -> list[Problem]:
        problems = []
        # A non-finite loss whose step GradScaler skipped did no harm: only used ones count.
        consumed = self.grads.consumed_checker()
        bad_loss = next((item for item in self.health.losses.non_finite() if consumed(item[0])), None)
        bad_grad = next(self.health.grad_sums.non_finite(), None)
        loss_step = self._steps_before(bad_loss[0]) + 1 if bad_loss is not None else None
        if bad_grad is not None and (loss_step is None or self.health.step_of(bad_grad[0])[0] < loss_step):
            (step, site, label), value = self.health.step_of(bad_grad[0]), bad_grad[1]
            later = f"; the loss followed at step {loss_step}" if loss_step else ""
            when = f"at optimizer step {step}"
            if step > GRAD_CHECK_FIRST:
                when = f"by optimizer step {step} (checked every {check_period(step)} steps)"
            message = (
                f"gradients or weights are not finite (inf or nan) {when} after `{label}.step()`: "
                f"the weights it updated stay non-finite from then on{later}"
            )
            problems.append(Problem("LL503", site, message, details={"step": step, "value": str(value)}))
        elif bad_loss is not None:
            backward_id, value = bad_loss
            message = (
                f"loss is {value} at backward pass {backward_id} (after "
                f"{self._steps_before(backward_id)} optimizer steps) and an optimizer step used "
                "its gradients"
            )
            details = {"backward_pass": backward_id, "step": loss_step, "value": str(value)}
            problems.append(
                Problem("LL503", self.health.site_of_backward(backward_id), message, details=details)
            )
        syncs = self.health.syncs_per_step
        top = [(s, n) for s, n in self.health.sync_sites.most_common(3) if s is not None]
        if syncs and top:
            median = sorted(syncs)[len(syncs) // 2]
            where = ", ".join(f"{s.display()} ({n})" for s, n in top)
            if median > 0:
                message = (
                    f"{median} host-device synchronizations per optimizer step (median over "
                    f"{len(syncs)} steps); top call sites: {where}"
                )
                details = {"syncs_per_step": median, "total": sum(syncs), "sites": where}
                problems.append(Problem("LL504", top[0][0], message, [s for s, _ in top[1:]], details))
        return problems

    def _steps_before(self, backward_id: int) -> int:
        return bisect.bisect_left(self.grads.step_marks, backward_id)

    def _summary(self) -> dict[str, Any]:
        optimizers: dict[str, Any] = {}
        built_at: dict[Any, dict[str, Any]] = {}  # the entry of the latest optimizer built at a line
        for state in self.grads.all_optimizers:
            entry = built_at.get(state.created_at) if state.rebuilt else None
            if entry is not None:  # rebuilt for the same parameters (every step, say): one entry
                entry["steps"] += state.steps
                entry["instances"] += 1
                passes = Counter(entry["backward_passes_per_step"]) + state.passes_per_step
                entry["backward_passes_per_step"] = dict(sorted(passes.items()))
                continue
            entry = optimizers[state.label] = {
                "created_at": state.created_at.display() if state.created_at else None,
                "steps": state.steps,
                "backward_passes_per_step": dict(sorted(state.passes_per_step.items())),
                "instances": 1,
            }
            built_at[state.created_at] = entry
        summary: dict[str, Any] = {
            "backward_passes": self.grads.backward_count,
            "optimizer_steps": self.grads.total_steps,
            "optimizers": optimizers,
            "writers": self.writers.summary() if self.writer_checks else [],
        }
        if self.stopped_early:
            summary["stopped_after_steps"] = self.max_steps
        if self.health.syncs_per_step:
            summary["syncs_per_step"] = self.health.syncs_per_step[-50:]
        for result in self._notify("summary"):
            if result:
                summary["learning rates"] = result
        if self.errors:
            summary["internal_errors"] = list(self.errors)
        return summary


def _finding(problem: Problem) -> Finding:
    site = problem.site
    path, line = (display_path(site.filename), site.line) if site else ("<unknown>", 1)
    details = dict(problem.details)
    sites = [s.display() for s in problem.related if s is not None]
    if sites:
        details["related"] = sites
    return Finding(path, line, 1, problem.code, problem.message, origin="runtime", details=details)


class Watch:
    """Context manager and decorator that instruments the loop it wraps; see `watch()`."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._strict = bool(options.pop("strict", False))
        self._sessions: list[tuple[Session, RuntimeReport]] = []
        self.report = RuntimeReport()

    def __enter__(self) -> RuntimeReport:
        session = Session(**self._options)
        report = RuntimeReport()
        self._sessions.append((session, report))
        self.report = report
        session.start()
        return report

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        session, report = self._sessions.pop()
        undo_errors = session.stop()
        session.errors.extend(undo_errors)
        session.finish(report)
        if self._strict and exc_type is None and report.findings:
            lines = "\n".join(f"  {f.path}:{f.line}: {f.code} {f.message}" for f in report.findings)
            raise RuntimeFindingsError(f"looplint found {plural(len(report.findings), 'problem')}:\n{lines}")
        return False

    def __call__(self, func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        wrapper.looplint_watch = self  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]


def watch(
    *,
    accumulation_steps: int | None = None,
    grad_checks: bool = True,
    writer_checks: bool = True,
    health_checks: bool = True,
    strict: bool = False,
) -> Watch:
    """Instrument a training loop and report what really happened.

    `with watch() as report: train()` or `@watch()` on a function. After the block,
    `report.findings` holds looplint Findings (origin "runtime") pointing at your code, and
    `report.summary` counts steps, backward passes and writers. `accumulation_steps=k` checks that
    every optimizer step uses exactly k backward passes; `strict=True` raises
    `RuntimeFindingsError` on exit when there are findings. With the decorator, the last run's
    report is `func.looplint_watch.report`.
    """
    if accumulation_steps is not None and (not isinstance(accumulation_steps, int) or accumulation_steps < 1):
        raise ValueError(f"accumulation_steps must be a positive integer, got {accumulation_steps!r}")
    return Watch(
        accumulation_steps=accumulation_steps,
        grad_checks=grad_checks,
        writer_checks=writer_checks,
        health_checks=health_checks,
        strict=strict,
    )
