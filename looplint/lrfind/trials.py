"""The confirmation stage: short trial runs at candidate LRs, judged on batches they never trained on.

The range test ramps the LR; a real run keeps it (or schedules it) for thousands of steps. How
far below the ramp's floor the best constant LR sits varies from about 1x to 200x between tasks, so the
curve alone cannot say. The trials measure it: every trial starts from the same initial weights
and optimizer state, trains `trial_steps` steps at one constant LR, and is judged by its mean
loss on held-out batches. `TrialSearch` decides which LRs to try and what the results mean; it
is pure Python, shared by `lr_find` and script mode, which only run the trials it asks for.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# Neighbouring candidates are this factor apart.
STEP = 3.0
# The suggestion is the smallest LR whose held-out progress is within this share of the best
# progress: short trials favour large LRs, which make quick progress and then stall or turn
# unstable over a longer run, so among LRs that do about as well, the smallest wins.
TOLERANCE = 0.1
# LRs whose progress is within this share of the best make up the good range.
GOOD_SHARE = 0.2
# The best trial must improve the held-out loss by at least this share of where it started,
# and by this many standard errors of the held-out losses, for the answer to be reliable.
MIN_RELATIVE_GAIN = 0.1
MIN_STANDARD_ERRORS = 3.0
# Candidates within this factor of the user's LR stand in for a trial at the user's LR.
SAME_LR = 1.5


@dataclass(frozen=True)
class Trial:
    """One trial: its reference LR, its mean held-out loss (inf when it diverged), and cost."""

    lr: float
    loss: float
    losses: tuple[float, ...]  # per held-out batch
    steps: int
    diverged: bool = False


@dataclass(frozen=True)
class TrialOutcome:
    """What the trials say: the suggestion, the good range, the confidence and why."""

    lr: float | None
    good_range: tuple[float, float] | None
    confidence: str  # "high", "low" or "none"
    reason: str


class TrialSearch:
    """Which LRs to try, one at a time, and the conclusion once no more are needed.

    Starting at the curve's estimate, candidates go up by STEP while the held-out loss keeps
    improving (up to `highest`), then down from the lowest one tried until the progress falls
    clearly short of the best (less than 1 - TOLERANCE of it; diverged or useless trials at the
    bottom mean the LRs are still too large, so the search goes on down). A trial at the user's
    own LR is added when no candidate was close to it, so the verdict on that LR rests on a
    measurement. At most `max_trials`.
    """

    def __init__(
        self,
        estimate: float,
        *,
        user_lr: float | None = None,
        max_trials: int = 8,
        lowest: float = 1e-12,
        highest: float = math.inf,
    ) -> None:
        self.estimate = estimate
        self.user_lr = user_lr if user_lr and user_lr > 0 else None
        self.max_trials = max_trials
        self.lowest, self.highest = lowest, highest
        self.baseline: tuple[float, ...] = ()
        self.trials: list[Trial] = []
        self._direction = "up"

    @property
    def baseline_loss(self) -> float:
        return statistics.fmean(self.baseline) if self.baseline else math.nan

    def set_baseline(self, losses: list[float]) -> None:
        """The held-out losses of the initial weights, before any trial."""
        self.baseline = tuple(losses)

    def record(self, lr: float, losses: list[float] | None, steps: int) -> None:
        """One finished trial; `losses` is None when its training diverged."""
        if losses is None or not all(math.isfinite(v) for v in losses):
            self.trials.append(Trial(lr, math.inf, tuple(losses or ()), steps, diverged=True))
        else:
            self.trials.append(Trial(lr, statistics.fmean(losses), tuple(losses), steps))

    def next_lr(self) -> float | None:
        """The next LR to try, or None when the search is done."""
        if len(self.trials) >= self.max_trials:
            return None
        if not self.trials:
            return self.estimate
        last = self.trials[-1]
        if self._direction == "up":
            earlier = [t.loss for t in self.trials[:-1]]
            best_so_far = not last.diverged and (not earlier or last.loss < min(earlier))
            if best_so_far and last.lr * STEP <= self.highest:
                return last.lr * STEP
            self._direction = "down"
        if self._direction == "down":
            lowest = min(self.trials, key=lambda t: t.lr)
            best = self._best_progress()
            short = not lowest.diverged and best > 0 and self._progress(lowest) < (1 - TOLERANCE) * best
            if not short and lowest.lr / STEP >= self.lowest:
                return lowest.lr / STEP
            self._direction = "user"
        if self._direction == "user":
            self._direction = "done"
            if self.user_lr is not None and not any(_close(t.lr, self.user_lr) for t in self.trials):
                return self.user_lr
        return None

    def trial_near(self, lr: float) -> Trial | None:
        """The trial that stands for `lr` (within SAME_LR of it), if any."""
        near = [t for t in self.trials if _close(t.lr, lr)]
        return min(near, key=lambda t: abs(math.log(t.lr / lr))) if near else None

    def outcome(self) -> TrialOutcome:
        """The suggestion from the trials so far."""
        if not self.trials or not self.baseline:
            return TrialOutcome(None, None, "none", "no trial ran")
        best_progress = self._best_progress()
        start = self.baseline_loss
        finite = [t for t in self.trials if not t.diverged]
        if not finite:
            return TrialOutcome(
                None, None, "none", "every trial diverged; the range test's LRs are all too large"
            )
        best = min(finite, key=lambda t: t.loss)
        gain = f"held-out loss {start:.4g} -> {best.loss:.4g} at lr {best.lr:.2g}"
        if start - best.loss <= MIN_RELATIVE_GAIN * abs(start):
            return TrialOutcome(
                None,
                None,
                "none",
                f"no trial improved the held-out loss by {MIN_RELATIVE_GAIN:.0%} or more (best: {gain}); "
                "the model barely learns in this many steps at any LR tried",
            )
        error = _standard_error(self.baseline, best.losses)
        if start - best.loss < MIN_STANDARD_ERRORS * error:
            return TrialOutcome(
                None,
                None,
                "none",
                f"the best trial's gain ({gain}) is within {MIN_STANDARD_ERRORS:g} standard errors of "
                "the held-out losses (too noisy to tell the LRs apart)",
            )
        chosen = min(
            (t for t in finite if self._progress(t) >= (1 - TOLERANCE) * best_progress), key=lambda t: t.lr
        )
        good = [t.lr for t in finite if self._progress(t) >= (1 - GOOD_SHARE) * best_progress]
        low, high = min(good) / math.sqrt(STEP), max(good) * math.sqrt(STEP)
        bracketed = any(t.lr > best.lr for t in self.trials) and any(
            t.lr < chosen.lr and self._progress(t) < (1 - TOLERANCE) * best_progress for t in self.trials
        )
        confidence = "high" if bracketed else "low"
        reason = (
            f"trials of {best.steps} steps from the initial weights: {gain}; "
            f"lr {chosen.lr:.2g} is the smallest "
            f"tried that gets within {TOLERANCE:.0%} of that gain"
        )
        if not bracketed:
            reason += (
                " (the trials did not bracket the best LR: "
                + (
                    "no larger LR was tried"
                    if not any(t.lr > best.lr for t in self.trials)
                    else "no smaller LR fell short"
                )
                + ")"
            )
        return TrialOutcome(chosen.lr, (low, high), confidence, reason)

    def _progress(self, trial: Trial) -> float:
        """How far a trial brought the held-out loss down. Measured as a log ratio when every loss
        is positive: 0.08 against 0.007 is a big gap even though both are close to 0 when seen
        from a start at 1.4."""
        if trial.diverged:
            return -math.inf
        if self.baseline_loss > 0 and all(t.loss > 0 for t in self.trials if not t.diverged):
            return math.log(self.baseline_loss / trial.loss)
        return self.baseline_loss - trial.loss

    def _best_progress(self) -> float:
        return max((self._progress(t) for t in self.trials), default=-math.inf)


def _close(a: float, b: float) -> bool:
    return max(a, b) / min(a, b) <= SAME_LR


def _standard_error(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Standard error of mean(a) - mean(b), treating the batches of each as independent."""

    def variance_of_mean(values: tuple[float, ...]) -> float:
        return statistics.variance(values) / len(values) if len(values) > 1 else 0.0

    return math.sqrt(variance_of_mean(a) + variance_of_mean(b))
