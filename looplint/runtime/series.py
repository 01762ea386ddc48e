"""Does a logged loss series grow like a running sum (LL202)?

A running sum of per-step losses rises at every log, by roughly one window's loss each time, and
drops when it is reset (e.g. each epoch). A real loss curve falls or wanders; a diverging loss rises
ever faster. So: split the series at every drop, keep the rising segments of at least 4 points whose
increments are of the order of the segment's first value and do not speed up, and call the series a
running sum when such segments cover most of it.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence

MIN_SEGMENT = 4
MIN_POINTS = 5
MIN_COVERAGE = 0.6


def _grows_like_sum(segment: Sequence[float]) -> bool:
    first = segment[0]
    if first <= 0:
        return False
    increments = [b - a for a, b in itertools.pairwise(segment)]
    typical = statistics.median(increments)
    # Each increment is about one window's loss, and so was the first logged value.
    if not 0.2 * first <= typical <= 12 * first:
        return False
    half = len(increments) // 2
    early = statistics.median(increments[: max(half, 1)])
    late = statistics.median(increments[half:])
    return late <= 2 * early  # linear or slower: not a loss that is blowing up


def looks_like_running_sum(values: Sequence[float]) -> bool:
    """True when the series rises like an un-averaged running sum within its segments."""
    if len(values) < MIN_POINTS or not all(math.isfinite(v) for v in values):
        return False
    segments: list[list[float]] = [[values[0]]]
    for value in values[1:]:
        if value > segments[-1][-1]:
            segments[-1].append(value)
        else:
            segments.append([value])
    covered = sum(len(s) for s in segments if len(s) >= MIN_SEGMENT and _grows_like_sum(s))
    return covered >= MIN_POINTS and covered >= MIN_COVERAGE * len(values)


def is_loss_tag(tag: str) -> bool:
    """Tags that name a loss (but not a loss scale)."""
    lowered = tag.lower()
    return ("loss" in lowered or lowered.endswith("cost")) and "scale" not in lowered
