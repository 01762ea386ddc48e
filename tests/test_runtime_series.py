"""The running-sum shape test behind runtime LL202: fires on sums, silent on real loss curves."""

from __future__ import annotations

import math
import random

import pytest

from looplint.runtime.series import is_loss_tag, looks_like_running_sum


def loss_curve(n: int, seed: int = 0, noise: float = 0.1) -> list[float]:
    rng = random.Random(seed)
    return [2.3 * math.exp(-i / 15) + 0.2 + rng.uniform(-noise, noise) for i in range(n)]


def running_sums(losses: list[float], reset_every: int | None = None) -> list[float]:
    sums, total = [], 0.0
    for i, loss in enumerate(losses):
        if reset_every and i % reset_every == 0:
            total = 0.0
        total += loss
        sums.append(total)
    return sums


@pytest.mark.parametrize("seed", range(5))
def test_running_sum_never_reset(seed):
    assert looks_like_running_sum(running_sums(loss_curve(30, seed)))


@pytest.mark.parametrize("seed", range(5))
def test_running_sum_reset_each_epoch(seed):
    assert looks_like_running_sum(running_sums(loss_curve(40, seed), reset_every=8))


def test_window_sums_logged_every_100_batches():
    window_losses = [100 * v for v in loss_curve(12)]
    assert looks_like_running_sum(running_sums(window_losses))


@pytest.mark.parametrize("seed", range(5))
def test_decreasing_loss_curve_is_silent(seed):
    assert not looks_like_running_sum(loss_curve(60, seed))


@pytest.mark.parametrize("seed", range(5))
def test_noisy_flat_curve_is_silent(seed):
    rng = random.Random(seed)
    assert not looks_like_running_sum([1.0 + rng.gauss(0, 0.3) for _ in range(200)])


def test_diverging_and_overfitting_curves_are_silent():
    assert not looks_like_running_sum([0.5 * 1.8**i for i in range(12)])  # blowing up
    assert not looks_like_running_sum([0.50 + 0.01 * i for i in range(12)])  # val loss creeping up
    assert not looks_like_running_sum([1.0, 2.0, 3.0])  # too short to tell
    assert not looks_like_running_sum([1.0, float("nan"), 3.0, 4.0, 5.0, 6.0])


def test_loss_tags():
    assert is_loss_tag("train/loss") and is_loss_tag("Loss/val") and is_loss_tag("g_cost")
    assert not is_loss_tag("train/accuracy") and not is_loss_tag("amp/loss_scale")
