"""Does the LR suggestion hold up? Train with it, with three published rules, and with a grid of LRs.

For each task of `lr_tasks.py` and each seed: run `looplint.lr_find` with its confirmation
trials, then train from the same initial weights for the task's fixed budget with (a) the
curve's estimate (`lr_find`'s default answer), (b) the suggestion after the trials
(`trial_steps=40`), (c) looplint's previous rule (60% of the deepest valley), (d) the rules of
torch-lr-finder, PyTorch Lightning and fastai, re-implemented from their documented
definitions, all applied to the same recorded range test, and (e) each of 10 log-spaced grid
LRs. Rank = 1 + the number of grid LRs with a lower final validation loss (held-out data).
Goal: rank <= 2 on every run. The rules are tuned on the tuned half only; the held-out half is
only ever reported.

With `--schedule onecycle` (or `cosine`) every run trains with that schedule peaking at its LR,
and ours is the peak our schedule advice gives (3x the constant-LR answer for one-cycle).

Run:  python benchmarks/bench_lr_find.py [--half both|tuned|held-out] [--seeds 3] [--tasks a,b]
      [--steps 100] [--schedule constant|onecycle|cosine] [--grid-cache FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch
from lr_tasks import HELD_OUT, TUNED, Task
from torch.utils.data import DataLoader

from looplint.lrfind import lr_find
from looplint.lrfind.curve import smooth, smoothed_curve
from looplint.lrfind.schedules import peak_factor

GRID = [10 ** (-4 + 4 * i / 9) for i in range(10)]  # 1e-4 ... 1, x2.78 apart
TRIAL_STEPS = 40
SCHEDULERS = {"onecycle": "OneCycleLR", "cosine": "CosineAnnealingLR"}
METHODS = ("curve", "+ trials", "previous", "torch-lr-finder", "lightning", "fastai")


def loader(task: Task, seed: int) -> DataLoader:
    return DataLoader(
        task.train, batch_size=task.batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )


def train(task: Task, lr: float, seed: int, schedule: str = "constant") -> float:
    """Train a fresh copy of the task's model for its budget at a constant LR, or with a
    one-cycle or cosine schedule peaking at `lr`; validation loss."""
    model = task.make_model()
    optimizer = task.make_optimizer(list(model.parameters()), lr)
    total = task.epochs * len(loader(task, seed))
    scheduler = None
    if schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total)
    elif schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    for _ in range(task.epochs):
        for inputs, targets in loader(task, seed):
            loss = task.criterion(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
    model.eval()
    with torch.no_grad():
        inputs, targets = task.val.tensors
        value = float(task.criterion(model(inputs), targets))
    return value if math.isfinite(value) else math.inf


# --- the anchor rules, from their documented definitions ----------------------------------------


def _gradient(values: list[float]) -> list[float]:
    """numpy.gradient with unit spacing: central differences inside, one-sided at the ends."""
    n = len(values)
    if n < 2:
        return [0.0] * n
    out = [values[1] - values[0]]
    out += [(values[i + 1] - values[i - 1]) / 2 for i in range(1, n - 1)]
    return out + [values[-1] - values[-2]]


def torch_lr_finder_rule(lrs: list[float], raw: list[float]) -> float:
    """torch-lr-finder: losses smoothed as loss = 0.05 * loss + 0.95 * previous (smooth_f=0.05),
    `plot(skip_start=10, skip_end=5, suggest_lr=True)`: the LR at the minimum of
    np.gradient(losses)."""
    smoothed = [raw[0]]
    for value in raw[1:]:
        smoothed.append(0.05 * value + 0.95 * smoothed[-1])
    losses, window = smoothed[10:-5], lrs[10:-5]
    slopes = _gradient(losses)
    return window[min(range(len(slopes)), key=slopes.__getitem__)]


def lightning_rule(lrs: list[float], raw: list[float]) -> float:
    """Lightning's `_LRFinder.suggestion(skip_begin=10, skip_end=1)` on its bias-corrected moving
    average (beta 0.98): the LR at the steepest negative gradient of the finite losses."""
    smoothed = smooth(raw, 0.98)
    pairs = [(lr, v) for lr, v in zip(lrs[10:-1], smoothed[10:-1]) if math.isfinite(v)]
    slopes = _gradient([v for _, v in pairs])
    return pairs[min(range(len(slopes)), key=slopes.__getitem__)][0]


def fastai_valley_rule(lrs: list[float], raw: list[float], num_it: int = 100) -> float:
    """fastai's default `valley` suggestion on its smoothed losses (beta 0.98, debiased), cut to
    `[num_it // 10 : -5]`: the longest valley (longest decreasing subsequence), and the point
    2/3 of the way into it."""
    smoothed = smooth(raw, 0.98)
    lrs, losses = lrs[num_it // 10 : -5], smoothed[num_it // 10 : -5]
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return lrs[max_start + int(sections) + int(sections / 2)]


def previous_rule(lrs: list[float], raw: list[float]) -> float | None:
    """looplint's own previous rule, for comparison: on the forward-backward smoothed curve, up
    to its lowest point, the deepest run of falling loss (slope against log10 LR), and the LR
    where 60% of that run's drop is covered (the default 100-step ramp needs no correction)."""
    curve, n = smoothed_curve(raw, 0.9)
    xs, ys = [math.log10(lr) for lr in lrs[:n]], curve[:n]
    floor = min(range(n), key=ys.__getitem__)
    if floor < 2:
        return None
    slopes = [
        (ys[min(i + 1, floor)] - ys[max(i - 1, 0)]) / (xs[min(i + 1, floor)] - xs[max(i - 1, 0)])
        for i in range(floor + 1)
    ]
    runs, start = [], None
    for i, slope in enumerate(slopes + [0.0]):
        if slope < 0 and start is None:
            start = i
        elif slope >= 0 and start is not None:
            runs.append((start, i - 1))
            start = None
    if not runs:
        return None
    first, last = max(runs, key=lambda run: (ys[run[0]] - ys[run[1]], run[1] - run[0]))
    drop = ys[first] - ys[last]
    if drop <= 0.01 * max(abs(ys[first]), 1e-12):
        return None
    return lrs[next(i for i in range(first, last + 1) if ys[i] <= ys[first] - 0.6 * drop)]


# --- the run ------------------------------------------------------------------------------------


def rank(value: float, grid_values: list[float]) -> int:
    return 1 + sum(v < value for v in grid_values)


def run_one(task: Task, seed: int, steps: int, schedule: str, grid_cache: dict, key: str) -> dict:
    model = task.make_model()
    optimizer = task.make_optimizer(list(model.parameters()), 1e-3)
    result = lr_find(
        model, optimizer, task.criterion, loader(task, seed), steps=steps, trial_steps=TRIAL_STEPS
    )
    lrs, raw = result.lrs, result.raw_losses
    # Our advice for the peak of a schedule (looplint.lrfind.schedules); the published rules
    # give one LR, used as the peak.
    factor = peak_factor(SCHEDULERS[schedule]) if schedule != "constant" else 1.0
    curve, trials = result.curve_lr, result.suggested_lr[0]
    previous = previous_rule(lrs, raw)
    picks = {
        "curve": None if curve is None else curve * factor,
        "+ trials": None if trials is None else trials * factor,
        "previous": None if previous is None else previous * factor,
        "torch-lr-finder": torch_lr_finder_rule(lrs, raw),
        "lightning": lightning_rule(lrs, raw),
        "fastai": fastai_valley_rule(lrs, raw),
    }
    if key not in grid_cache:
        grid_cache[key] = [train(task, lr, seed, schedule) for lr in GRID]
    grid_values = grid_cache[key]
    trained: dict[float, float] = {}
    ranks = {}
    for method, lr in picks.items():
        if lr is None:
            ranks[method] = len(GRID) + 1
            continue
        if lr not in trained:
            trained[lr] = train(task, lr, seed, schedule)
        ranks[method] = rank(trained[lr], grid_values)
    best = min(range(len(GRID)), key=grid_values.__getitem__)
    return {
        "picks": picks,
        "ranks": ranks,
        "best_lr": GRID[best],
        "best_value": grid_values[best],
        "curve_value": trained.get(picks["curve"], math.inf),
        "range_steps": len(lrs),
        "trial_steps": result.trial_steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", choices=("both", "tuned", "held-out"), default="both")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", help="comma-separated task names (default: every task of the half)")
    parser.add_argument("--steps", type=int, default=100, help="range test steps (default 100)")
    parser.add_argument(
        "--schedule",
        choices=("constant", *SCHEDULERS),
        default="constant",
        help="train the grid and the picks with this schedule, peaking at the LR (default constant)",
    )
    parser.add_argument(
        "--grid-cache",
        type=Path,
        help="a JSON file keeping the grid's validation losses between runs (they depend only on "
        "the task, the seed and the training code)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    started, cpu_started = time.perf_counter(), time.process_time()
    cache = json.loads(args.grid_cache.read_text()) if args.grid_cache and args.grid_cache.exists() else {}
    halves = {"tuned": TUNED, "held-out": HELD_OUT}
    chosen = [h for h in halves if args.half in ("both", h)]
    header = (
        f"{'task':<30}{'seed':>4}{'best grid':>10}"
        + "".join(f"{m:>{max(len(m), 9) + 2}}" for m in METHODS)
        + f"{'steps':>9}{'val curve/best':>16}"
    )
    summary: dict[str, dict[str, list]] = {}
    for half in chosen:
        print(f"\n{half} half")
        print(header)
        print("-" * len(header))
        rows = summary.setdefault(half, {m: [] for m in (*METHODS, "range", "trials")})
        for name, make in halves[half].items():
            if args.tasks and name not in args.tasks.split(","):
                continue
            for seed in range(args.seeds):
                task = make(seed)
                key = f"{name}/{seed}" if args.schedule == "constant" else f"{args.schedule}:{name}/{seed}"
                row = run_one(task, seed, args.steps, args.schedule, cache, key)
                cells = ""
                for method in METHODS:
                    lr, r = row["picks"][method], row["ranks"][method]
                    rows[method].append(r)
                    text = "-" if lr is None else f"{lr:.2g} {r}"
                    cells += f"{text:>{max(len(method), 9) + 2}}"
                rows["range"].append(row["range_steps"])
                rows["trials"].append(row["trial_steps"])
                steps = f"{row['range_steps']}+{row['trial_steps']}"
                print(
                    f"{task.name:<30}{seed:>4}{row['best_lr']:>10.2g}{cells}{steps:>9}"
                    f"{row['curve_value']:>9.3f}/{row['best_value']:.3f}",
                    flush=True,
                )
                if args.grid_cache:
                    args.grid_cache.write_text(json.dumps(cache))
    print()
    for half, rows in summary.items():
        count = len(rows["curve"])
        if not count:
            continue
        print(f"{half} half ({count} runs): top-2 of the grid / median rank / mean rank")
        for method in METHODS:
            ranks = rows[method]
            print(
                f"  {method:<16}{sum(r <= 2 for r in ranks):>3}/{count}"
                f"{statistics.median(ranks):>8.1f}{statistics.fmean(ranks):>8.2f}"
            )
        print(
            f"  cost: {statistics.fmean(rows['range']):.0f} range-test steps (every rule), "
            f"+{statistics.fmean(rows['trials']):.0f} trial steps (+ trials) on average"
        )
    print(f"{time.perf_counter() - started:.0f} s wall, {time.process_time() - cpu_started:.0f} s CPU")


if __name__ == "__main__":
    main()
