"""The LR range test as a Python API: suggestion, trials, verdicts, stopping, state restoration,
curve arithmetic."""

from __future__ import annotations

import copy
import json
import math
import random
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import looplint
from looplint.lrfind import LRFindResult, lr_find
from looplint.lrfind.curve import exponential_lrs, read_curve, smooth, zero_phase_smooth
from looplint.lrfind.trials import STEP, TrialSearch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def regression(seed: int = 0, n: int = 1024, dims: int = 4, batch_size: int = 128):
    """Noisy linear regression; returns (loader, X, y) so tests can compute the Hessian."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dims, generator=g)
    y = x @ torch.randn(dims, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, generator=g)
    return loader, x, y


def test_suggestion_lands_below_the_divergence_bound_of_linear_regression():
    # For MSE on a linear model the Hessian is 2 X^T X / n: plain SGD diverges above 2 / lambda_max.
    loader, x, y = regression()
    model = nn.Linear(4, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    result = lr_find(model, optimizer, nn.MSELoss(), loader, trial_steps=40)
    bound = 2 / torch.linalg.eigvalsh(2 * x.T @ x / len(x)).max().item()

    assert result.stop_reason == "diverged"
    (suggested,) = result.suggested_lr
    assert bound / 30 < suggested < bound, (suggested, bound)
    assert bound / 30 < result.curve_lr < bound, (result.curve_lr, bound)  # the curve's own answer
    assert result.confidence == "high"
    # The curve's lowest point sits at the stability edge the Hessian predicts.
    lowest = min(range(len(result.losses)), key=lambda i: result.losses[i])
    assert bound / 3 < result.lrs[lowest] < bound * 3
    # Every trial above the bound diverged or ended worse than the suggestion's trial.
    chosen = next(t for t in result.trials if t.lr == suggested)
    assert all(t.diverged or t.loss > chosen.loss for t in result.trials if t.lr > bound)
    # And the suggestion trains: 300 plain SGD steps reach the noise floor.
    fresh = nn.Linear(4, 1, bias=False)
    sgd = torch.optim.SGD(fresh.parameters(), lr=suggested)
    for _ in range(300):
        loss = nn.functional.mse_loss(fresh(x), y)
        sgd.zero_grad()
        loss.backward()
        sgd.step()
    assert loss.item() < 0.02  # noise variance is 0.01


# --- the verdict on the user's own LR, on a task whose good band is known -------------------


def isotropic_regression(seed: int = 0):
    """Linear regression on whitened inputs: the Hessian of the MSE is 2 I, so plain SGD
    multiplies the excess loss by (1 - 2 lr)^2 per step. It diverges above lr 1; 40 steps reach
    the noise floor (0.01, from about 7) from lr 0.04 up; lr 1e-3 barely moves. The good band
    for a 40-step trial is about 0.04 to 1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2048, 8, generator=g)
    x = (x - x.mean(0)) @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(x.T))).T
    y = x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(2048, 1, generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=256, shuffle=True, generator=g)


@pytest.mark.parametrize("trial_steps", [0, 40])
@pytest.mark.parametrize(
    ("own_lr", "verdict", "words"),
    [
        (1e-3, "too small", "below the suggested"),
        (0.15, "good", "within the good range"),
        (3.0, "too large", "where the loss diverged"),
    ],
)
def test_verdict_on_the_users_lr_against_a_known_good_band(own_lr, verdict, words, trial_steps):
    model = nn.Linear(8, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=own_lr)
    result = lr_find(model, optimizer, nn.MSELoss(), isotropic_regression(), trial_steps=trial_steps)

    (group,) = result.groups
    assert group.verdict == verdict, group.verdict_text
    assert words in group.verdict_text and f"{own_lr:.3g}" in group.verdict_text
    assert result.confidence == "high"
    # The good range lies inside the known band (give or take one step of the search) and
    # holds its middle.
    low, high = group.good_range
    assert 0.04 / 3 < low < 0.15 < high < 3.0
    assert 0.04 / 1.5 < group.suggested_lr < 1.0
    data = json.loads(json.dumps(result.to_dict()))
    assert data["groups"][0]["verdict"] == verdict
    assert data["confidence"] == "high"
    if verdict == "too small" and trial_steps:
        # The evidence is a trial at the user's own LR, from the same initial weights.
        assert any(math.isclose(t.lr, own_lr) for t in result.trials)
        assert "in 40-step trials from your initial weights, lr 0.001 reached a held-out loss of" in (
            group.verdict_text
        )


def test_random_labels_give_no_reliable_suggestion():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 20, generator=g)
    y = torch.randint(0, 4, (2048,), generator=g)  # unrelated to x
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, generator=g)
    result = lr_find(model, optimizer, nn.CrossEntropyLoss(), loader, trial_steps=40)

    assert result.suggested_lr == [None]
    assert result.confidence == "none" and result.groups[0].verdict is None
    assert "labels unrelated to the inputs?" in result.reason
    assert "barely moves over the whole range" in result.reason or "never falls" in result.reason
    assert result.trials == []  # a curve with no answer gets no trials either
    assert result.to_dict()["confidence"] == "none"


# --- state restoration ----------------------------------------------------------------------


def _snapshot(model, optimizer):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [(p.grad.clone() if p.grad is not None else None) for p in model.parameters()],
        [m.training for m in model.modules()],
        copy.deepcopy(optimizer.state_dict()),  # the live state dict shares its tensors
    )


def _assert_same(before, after):
    (state_a, grads_a, modes_a, opt_a), (state_b, grads_b, modes_b, opt_b) = before, after
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    for ga, gb in zip(grads_a, grads_b):
        assert (ga is None and gb is None) or torch.equal(ga, gb)
    assert modes_a == modes_b
    assert opt_a["param_groups"] == opt_b["param_groups"]
    assert opt_a["state"].keys() == opt_b["state"].keys()
    for index, state in opt_a["state"].items():
        for key, value in state.items():
            other = opt_b["state"][index][key]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other


@pytest.mark.parametrize("make_optimizer", ["sgd", "adam"])
def test_model_and_optimizer_state_are_restored_after_the_trials(make_optimizer):
    torch.manual_seed(0)
    x = torch.randn(256, 6)
    y = (x[:, 0] > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    groups = [{"params": model[0].parameters(), "lr": 1e-2}, {"params": model[3].parameters()}]
    if make_optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=1e-3, momentum=0.9)
    else:
        optimizer = torch.optim.Adam(groups, lr=1e-3)
    # Some real history: momentum buffers / Adam moments, BatchNorm statistics, pending grads,
    # eval mode.
    for inputs, targets in list(loader)[:3]:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
    nn.functional.cross_entropy(model(x[:32]), y[:32]).backward()
    model.eval()
    before = _snapshot(model, optimizer)

    result = lr_find(model, optimizer, nn.CrossEntropyLoss(), loader, steps=40, trial_steps=40)

    assert len(result.lrs) > 10 and len(result.trials) >= 3  # the test and the trials really trained
    _assert_same(before, _snapshot(model, optimizer))
    # The optimizer still works with the restored state and LRs.
    assert [g["lr"] for g in optimizer.param_groups] == [1e-2, 1e-3]
    optimizer.step()


class _SameLRTwice(TrialSearch):
    """Asks for the same LR twice, then stops: both trials must start from the same state."""

    def next_lr(self):
        return 0.05 if len(self.trials) < 2 else None


def test_every_trial_starts_from_the_same_initial_state(monkeypatch):
    # Adam's moments are state that load_state_dict keeps by reference: a restore that reused
    # the snapshot's tensors would start the second trial from the first one's moments.
    from looplint.lrfind import api

    monkeypatch.setattr(api, "TrialSearch", _SameLRTwice)
    torch.manual_seed(0)
    x = torch.randn(512, 6)
    y = (x[:, :2].sum(1) > 0).long()
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    result = lr_find(model, optimizer, nn.CrossEntropyLoss(), loader, steps=30, trial_steps=40)
    first, second = result.trials
    assert first.lr == second.lr == 0.05 and first.steps == 40
    assert first.losses == second.losses
    assert first.loss < result.baseline_loss  # and they did train


# --- the rest of the API ----------------------------------------------------------------------


def test_groups_keep_their_lr_ratio():
    loader, _, _ = regression()
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 1))
    optimizer = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 1e-2}, {"params": model[1].parameters()}],
        lr=1e-3,
    )
    result = lr_find(model, optimizer, nn.MSELoss(), loader, min_lr=1e-5, max_lr=1.0, steps=30)
    first, second = result.groups
    assert first.lrs[0] == pytest.approx(1e-5) and second.lrs[0] == pytest.approx(1e-6)
    assert all(a == pytest.approx(10 * b) for a, b in zip(first.lrs, second.lrs))
    assert first.suggested_lr == pytest.approx(10 * second.suggested_lr)
    assert (first.initial_lr, second.initial_lr) == (1e-2, 1e-3)
    assert first.verdict == second.verdict  # the same ratio to their suggestions


def test_non_finite_loss_stops_the_test():
    loader, _, _ = regression()
    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    # A huge diverge_factor leaves only the non-finite check to stop it.
    result = lr_find(model, optimizer, nn.MSELoss(), loader, max_lr=1e8, steps=200, diverge_factor=1e300)
    assert result.stop_reason == "non-finite"
    assert not math.isfinite(result.raw_losses[-1])
    assert len(result.lrs) < 200
    data = result.to_dict()
    json.dumps(data, allow_nan=False)  # non-finite values become null
    assert data["raw_losses"][-1] is None


def test_steps_limit_and_exponential_schedule():
    loader, _, _ = regression()
    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lr_find(model, optimizer, nn.MSELoss(), loader, min_lr=1e-6, max_lr=1e-3, steps=25)
    assert result.stop_reason == "steps"
    assert result.lrs == pytest.approx(exponential_lrs(1e-6, 1e-3, 25))
    assert len(result.raw_losses) == len(result.losses) == 25


def test_to_dict_repr_and_plot(tmp_path):
    loader, _, _ = regression()
    model = nn.Linear(4, 1)
    result = lr_find(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), loader, trial_steps=40)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["groups"][0]["suggested_lr"] == result.suggested_lr[0]
    assert data["stop_reason"] == result.stop_reason
    assert len(data["lrs"]) == len(data["losses"]) == len(data["raw_losses"])
    assert data["cost"]["range_test_steps"] == len(result.lrs)
    assert data["cost"]["trial_steps"] == sum(t["steps"] for t in data["trials"]) > 0
    assert {"lr", "held_out_loss", "steps", "diverged"} == set(data["trials"][0])
    # A short repr: no lists of hundreds of floats.
    text = repr(result)
    assert len(text) < 250 and text.startswith("LRFindResult(suggested_lr=[")
    assert "confidence=" in text and "verdicts=" in text
    assert str(result) == text
    path = result.plot(tmp_path / "sub" / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_top_level_alias_and_multi_input_batches():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 1), nn.Linear(2, 1)

        def forward(self, left, right):
            return self.a(left) + self.b(right)

    g = torch.Generator().manual_seed(1)
    left, right = torch.randn(256, 3, generator=g), torch.randn(256, 2, generator=g)
    target = left.sum(1, keepdim=True) - right.sum(1, keepdim=True)
    loader = DataLoader(TensorDataset(left, right, target), batch_size=32)
    model = TwoInputs()
    result = looplint.lr_find(model, torch.optim.Adam(model.parameters()), nn.MSELoss(), loader, steps=60)
    assert isinstance(result, LRFindResult)
    assert result.suggested_lr[0] is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 1}, "steps must be an integer of at least 2"),
        ({"min_lr": 0.0}, "min_lr must be a positive number"),
        ({"min_lr": 1.0, "max_lr": 0.5}, "max_lr must be a number larger than min_lr"),
        ({"diverge_factor": 1.0}, "diverge_factor must be a number above 1"),
        ({"smoothing": 1.0}, "smoothing must be in [0, 1)"),
        ({"trial_steps": -1}, "trial_steps must be a non-negative integer"),
    ],
)
def test_bad_settings_give_clear_errors(kwargs, message):
    loader, _, _ = regression()
    model = nn.Linear(4, 1)
    with pytest.raises(ValueError) as info:
        lr_find(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), loader, **kwargs)
    assert message in str(info.value)


def test_bad_loaders_give_clear_errors():
    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="the loader yielded no batches"):
        lr_find(model, optimizer, nn.MSELoss(), [])
    with pytest.raises(TypeError, match=r"tuple \(inputs\.\.\., target\)"):
        lr_find(model, optimizer, nn.MSELoss(), [{"x": torch.zeros(2, 4)}])
    # The failed attempts left the model usable and untouched.
    assert optimizer.param_groups[0]["lr"] == 0.1


# --- the curve arithmetic on synthetic curves ----------------------------------------------


def _synthetic_curve(noise: float, seed: int):
    """A loss that is flat, falls between 1e-4 and 1e-1 (centre 3e-3), then explodes past 0.3."""
    rng = random.Random(seed)
    lrs = exponential_lrs(1e-7, 10.0, 100)
    raw = []
    for lr in lrs:
        x = math.log10(lr)
        level = 0.2 + 2.0 / (1 + math.exp(3 * (x + 2.5)))  # sigmoid drop centred at 10^-2.5
        if lr > 0.3:
            level += (lr / 0.3) ** 4
        raw.append(level * (1 + noise * rng.gauss(0, 1)))
    return lrs, raw


@pytest.mark.parametrize("seed", range(5))
def test_curve_estimate_is_a_tenth_of_the_floor_despite_noise(seed):
    lrs, raw = _synthetic_curve(noise=0.15, seed=seed)
    reading = read_curve(lrs, raw, 0.9)
    # The floor sits where the explosion starts (about 0.3); the estimate a tenth of it.
    assert 0.1 < lrs[reading.floor_index] < 0.6, lrs[reading.floor_index]
    assert reading.lr == pytest.approx(lrs[reading.floor_index] / 10)


def test_no_estimate_when_the_loss_never_falls():
    lrs = exponential_lrs(1e-7, 10.0, 60)
    rng = random.Random(0)
    flat = [1.0 + 0.01 * rng.gauss(0, 1) for _ in lrs]
    reading = read_curve(lrs, flat, 0.9)
    assert reading.lr is None and "barely moves" in reading.reason


def test_no_estimate_when_the_loss_only_rises():
    lrs = exponential_lrs(1e-7, 10.0, 60)
    rising = [1.0 + i * 0.1 for i in range(60)]
    reading = read_curve(lrs, rising, 0.9)
    assert reading.lr is None and "starts too high" in reading.reason


def test_smoothing_is_bias_corrected_and_the_backward_pass_removes_lag():
    assert smooth([5.0, 5.0, 5.0], 0.98) == pytest.approx([5.0, 5.0, 5.0])
    step = [1.0] * 30 + [0.0] * 30
    one_way = smooth(step, 0.8)
    two_way = zero_phase_smooth(step, 0.8)
    # The one-way average is still far above 0.5 a few steps after the drop (lag)...
    assert one_way[33] > 0.4
    # ...the two-way one is symmetric around the drop.
    assert two_way[29] == pytest.approx(1 - two_way[30], abs=0.05)


# --- the trial search on its own -------------------------------------------------------------


def _run_search(search: TrialSearch, loss_at) -> TrialSearch:
    search.set_baseline([1.0, 1.0, 1.0, 1.0])
    while (lr := search.next_lr()) is not None:
        value = loss_at(lr)
        search.record(lr, None if value is None else [value * f for f in (0.99, 1.0, 1.0, 1.01)], 40)
    return search


def test_search_brackets_the_best_lr_and_picks_the_smallest_that_does_as_well():
    # A U-shaped held-out loss with its best at lr 0.1; it diverges above 2.
    def loss_at(lr):
        return None if lr > 2 else 0.1 + 0.3 * abs(math.log10(lr / 0.1)) ** 2

    search = _run_search(TrialSearch(1e-3, user_lr=0.5), loss_at)
    tried = sorted(t.lr for t in search.trials)
    outcome = search.outcome()
    assert outcome.confidence == "high"
    assert tried[0] < outcome.lr < tried[-1]  # bracketed
    assert 0.03 < outcome.lr <= 0.1  # the best, or the smallest close to it
    assert any(math.isclose(t.lr, 0.5) for t in search.trials)  # the user's own LR was tried
    assert len(search.trials) <= 8


def test_search_gives_no_answer_when_nothing_improves():
    search = _run_search(TrialSearch(1e-2), lambda lr: 0.99 if lr < 1 else None)
    outcome = search.outcome()
    assert outcome.lr is None and outcome.confidence == "none"
    assert "no trial improved the held-out loss by 10%" in outcome.reason
    assert len(search.trials) <= 8


# --- devices, loaders, ramp speed, missing matplotlib ---------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_lr_find_on_cuda_moves_batches_and_restores_state():
    loader, _, _ = regression()  # CPU batches: moved to the model's device
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 1)).cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = _snapshot(model, optimizer)
    result = lr_find(model, optimizer, nn.MSELoss(), loader, steps=50)
    assert len(result.lrs) > 10 and result.suggested_lr[0] is not None and result.trials
    _assert_same(before, _snapshot(model, optimizer))


def test_one_shot_iterator_ends_the_test_early():
    loader, _, _ = regression()
    batches = iter(list(loader) * 3)  # 24 batches, cannot restart
    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lr_find(model, optimizer, nn.MSELoss(), batches, steps=100)
    assert result.stop_reason == "data-ended"
    assert len(result.lrs) == 23  # 24 batches: 23 updates followed by a measured loss
    assert "ran out after 24 batches" in result.stop_detail
    assert result.trials == []  # no batches were left for them: the curve alone answers
    assert result.confidence in ("low", "none")


def test_the_ramp_speed_moves_the_answer_by_less_than_one_search_step():
    x, y = regression()[1:]
    estimates, suggestions = [], []
    for steps in (50, 100, 200):
        loader = DataLoader(
            TensorDataset(x, y), batch_size=128, shuffle=True, generator=torch.Generator().manual_seed(0)
        )
        model = nn.Linear(4, 1, bias=False)
        result = lr_find(
            model, torch.optim.SGD(model.parameters(), lr=0.01), nn.MSELoss(), loader, steps=steps
        )
        estimates.append(result.curve_lr)
        suggestions.append(result.suggested_lr[0])
    assert max(estimates) / min(estimates) < 2, estimates
    assert max(suggestions) / min(suggestions) < STEP, suggestions


def test_by_default_the_curve_alone_answers():
    loader, _, _ = regression()
    model = nn.Linear(4, 1, bias=False)
    result = lr_find(model, torch.optim.SGD(model.parameters(), lr=0.01), nn.MSELoss(), loader)
    assert result.trials == [] and result.trial_steps == 0 and result.eval_batches == 0
    assert result.suggested_lr == [result.curve_lr] and result.confidence == "high"
    assert result.reason.endswith("the suggestion is 1/10 of that lr")
    low, high = result.good_range
    assert low == pytest.approx(result.curve_lr / 3) and high == pytest.approx(result.curve_lr * 3)


def test_a_curve_still_falling_at_max_lr_gives_low_confidence():
    loader, _, _ = regression()
    model = nn.Linear(4, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    result = lr_find(model, optimizer, nn.MSELoss(), loader, min_lr=1e-6, max_lr=0.05, steps=60)
    assert result.stop_reason == "steps"
    assert result.confidence == "low" and result.suggested_lr[0] is not None
    assert "low confidence: it was still falling at the largest lr tried (0.05)" in result.reason
    assert "(low confidence: see why)" in result.groups[0].verdict_text


def test_plot_without_matplotlib_says_what_to_install(monkeypatch, tmp_path):
    loader, _, _ = regression()
    model = nn.Linear(4, 1)
    result = lr_find(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), loader, steps=20)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(RuntimeError, match=r"needs matplotlib: pip install 'looplint\[lr\]'"):
        result.plot(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
