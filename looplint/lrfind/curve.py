"""The range test's arithmetic: the LR schedule, loss smoothing, divergence and the suggestion.

Pure Python on lists of floats, shared by the API (`lr_find`) and script mode, so both entry
points stop and suggest in exactly the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The curve's estimate is the LR of its lowest point divided by this (see `read_curve`).
FLOOR_SHARE = 10.0
# A smoothed loss that falls less than this share of its starting level gives no estimate.
MIN_RELATIVE_DROP = 0.1
# Fewer recorded points than this cannot show a valley worth trusting.
MIN_POINTS = 8


def exponential_lrs(min_lr: float, max_lr: float, steps: int) -> list[float]:
    """`steps` learning rates from min_lr to max_lr, evenly spaced in log scale."""
    if steps == 1:
        return [min_lr]
    ratio = max_lr / min_lr
    return [min_lr * ratio ** (i / (steps - 1)) for i in range(steps)]


def check_range(min_lr: float, max_lr: float, steps: int, diverge_factor: float = 4.0) -> None:
    """Raise ValueError with a readable message when the range test settings make no sense."""
    if not (isinstance(min_lr, (int, float)) and math.isfinite(min_lr) and min_lr > 0):
        raise ValueError(f"min_lr must be a positive number, got {min_lr!r}")
    if not (isinstance(max_lr, (int, float)) and math.isfinite(max_lr) and max_lr > min_lr):
        raise ValueError(f"max_lr must be a number larger than min_lr ({min_lr:g}), got {max_lr!r}")
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an integer of at least 2, got {steps!r}")
    if not (isinstance(diverge_factor, (int, float)) and diverge_factor > 1):
        raise ValueError(f"diverge_factor must be a number above 1, got {diverge_factor!r}")


def smooth(values: list[float], beta: float) -> list[float]:
    """Bias-corrected exponential moving average (the correction removes the pull toward 0)."""
    out: list[float] = []
    average = 0.0
    for i, value in enumerate(values, start=1):
        average = beta * average + (1 - beta) * value
        out.append(average / (1 - beta**i))
    return out


def zero_phase_smooth(values: list[float], beta: float) -> list[float]:
    """The same moving average run forward, then backward over the result.

    A one-way average lags the curve by about beta / (1 - beta) steps, i.e. it moves every
    feature of the loss curve toward larger learning rates; running it back cancels that lag.
    """
    forward = smooth(values, beta)
    return smooth(forward[::-1], beta)[::-1]


class DivergenceTracker:
    """Online stop rule: the smoothed loss exceeds `factor` times the best one, or is non-finite."""

    def __init__(self, beta: float, factor: float) -> None:
        self.beta = beta
        self.factor = factor
        self.raw: list[float] = []
        self.smoothed: list[float] = []
        self.best = math.inf
        self._average = 0.0

    def add(self, loss: float) -> str | None:
        """Record one loss; returns a stop message when the test should end here."""
        self.raw.append(loss)
        if not math.isfinite(loss):
            self.smoothed.append(loss)
            return f"the loss became {loss} (non-finite)"
        self._average = self.beta * self._average + (1 - self.beta) * loss
        value = self._average / (1 - self.beta ** len(self.raw))
        self.smoothed.append(value)
        if value > self.factor * self.best and self.best > 0:
            return (
                f"the smoothed loss {value:.4g} exceeded {self.factor:g} x its best "
                f"{self.best:.4g} (diverging)"
            )
        self.best = min(self.best, value)
        return None


@dataclass(frozen=True)
class CurveReading:
    """What the range test curve says: where the loss was lowest, a first estimate, and why."""

    lr: float | None  # the curve's estimate (reference LR), None when the curve gives none
    floor_index: int | None  # where the smoothed loss was lowest
    reason: str
    curve: list[float]  # the smoothed losses (see `smoothed_curve`)
    # "high": a clear drop and a floor the loss rose from; "low": an estimate whose floor the
    # loss never rose from; "none": no estimate.
    confidence: str = "none"
    finding: str = ""  # what the curve shows, without the conclusion


def read_curve(lrs: list[float], raw_losses: list[float], beta: float) -> CurveReading:
    """Read a range test curve (LRs rising exponentially): its floor and a first estimate.

    1. Smooth the raw losses with the bias-corrected moving average run forward and backward
       (`smoothed_curve`): single-batch losses are noisy, and a one-way average would shift the
       curve toward larger LRs by its lag (about beta / (1 - beta) steps).
    2. The floor is the lowest point of the smoothed loss; past it the LR is already too high.
    3. The estimate is a tenth of the floor's LR. The floor is where a ramp, not a constant LR,
       stops making progress; a constant LR for a whole run has to sit well below it. The share
       is the classic "minimum / 10". The distance from the floor to the best constant LR
       varies from about 1x to 200x between tasks (benchmarks/bench_lr_find.py), so the answer
       comes with a good range; the opt-in trials (`looplint.lrfind.trials`) measure instead.
    4. A loss that falls less than MIN_RELATIVE_DROP of its starting level, or by less than the
       noise of single batches, gives no estimate: a curve like that (random labels, a model
       that cannot learn) has a lowest point anyway, somewhere in the noise. A floor the loss
       never rose from (still falling at max_lr: where training breaks is unknown, so the
       estimate is only a lower bound) gives an estimate with low confidence.
    """
    curve, n = smoothed_curve(raw_losses, beta)
    recorded = next((i for i, v in enumerate(raw_losses) if not math.isfinite(v)), len(raw_losses))
    if recorded < MIN_POINTS:
        return CurveReading(
            None,
            None,
            f"only {recorded} steps were recorded; at least {MIN_POINTS} are needed (lower "
            "min_lr, raise steps, or check that the loss is finite)",
            curve,
        )
    ys = curve[:n]
    floor = min(range(n), key=ys.__getitem__)
    noise = _noise(raw_losses[:n], ys)
    if floor < 2:
        # Lowest at the start: either the loss rises right away (the range starts too high) or
        # it stays flat for a while and then rises (nothing was learned before it diverged).
        limit = ys[0] + max(noise, MIN_RELATIVE_DROP * abs(ys[0]))
        rise = next((i for i, y in enumerate(curve[:recorded]) if y > limit), recorded)
        if rise >= MIN_POINTS:
            return CurveReading(
                None,
                floor,
                f"the smoothed loss stays flat around {sorted(curve[:rise])[rise // 2]:.4g} up to lr "
                f"{lrs[rise - 1]:.2g} and only rises "
                "after: it never falls, so there is no LR to suggest (labels unrelated to the inputs? "
                "a frozen model? a loss that cannot fall further?)",
                curve,
            )
        return CurveReading(
            None,
            floor,
            "the loss was lowest at the very first steps and only rose "
            f"after; the range starts too high (try a min_lr below {lrs[0]:.2g})",
            curve,
        )
    top = max(ys[: floor + 1])
    drop = top - ys[floor]
    relative = drop / abs(top) if top else 0.0
    fell = (
        f"the smoothed loss falls from {top:.4g} to its lowest, {ys[floor]:.4g} at lr {lrs[floor]:.2g} "
        f"({relative:.0%} lower)"
    )
    if relative < MIN_RELATIVE_DROP or drop < noise:
        why = " (less than the noise of single batches)" if drop < noise else ""
        return CurveReading(
            None,
            floor,
            f"{fell}: it barely moves over the whole range{why}, so its lowest point says nothing "
            "(labels unrelated to the inputs? a frozen model? a loss that cannot fall further?)",
            curve,
        )
    lr = lrs[floor] / FLOOR_SHARE
    reason = f"{fell}; the suggestion is 1/{FLOOR_SHARE:g} of that lr"
    after = list(curve[floor + 1 :]) + list(raw_losses[floor + 1 :])
    margin = max(noise, MIN_RELATIVE_DROP * abs(ys[floor]))
    rose = any(not math.isfinite(v) or v > ys[floor] + margin for v in after)
    if not rose:
        reason += (
            f"; low confidence: it was still falling at the largest lr tried ({lrs[len(curve) - 1]:.2g}), so "
            "the point where training breaks was never reached (raise max_lr)"
        )
    return CurveReading(lr, floor, reason, curve, "high" if rose else "low", fell)


def _noise(raw: list[float], smoothed: list[float]) -> float:
    """The typical deviation of single losses from the smoothed curve (1.48 x the median one,
    the standard deviation for Gaussian noise, robust to a few wild batches)."""
    deviations = sorted(abs(r - s) for r, s in zip(raw, smoothed))
    return 1.4826 * deviations[len(deviations) // 2] if deviations else 0.0


def smoothed_curve(raw_losses: list[float], beta: float) -> tuple[list[float], int]:
    """The smoothed loss curve the suggestion reads, and the length of its trustworthy part.

    Up to the lowest point of the running average (just past the real floor) the curve is the
    forward-backward average; cutting there keeps the exploding tail out of the backward pass,
    where it would pull the floor toward smaller LRs. The tail keeps the running average.
    """
    finite = next((i for i, v in enumerate(raw_losses) if not math.isfinite(v)), len(raw_losses))
    running = smooth(raw_losses[:finite], beta)
    cut = min(range(finite), key=running.__getitem__) + 1 if finite else 0
    tail = running[cut:] + list(raw_losses[finite:])
    return zero_phase_smooth(raw_losses[:cut], beta) + tail, cut
