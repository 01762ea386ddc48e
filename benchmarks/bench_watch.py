"""Per-step overhead of looplint.watch(), against the same loop unwatched, as the model grows.

Each row is a stack of linear layers with 20, 200, 1000 or 5000 parameter tensors (a weight and a
bias per layer), trained with SGD (momentum) or AdamW:

- compute-light: 16x16 layers, batch 8; a step is mostly per-tensor framework work, so any
  per-tensor cost of the hooks shows in full;
- compute-heavy: 64x64 layers, batch 64; more of a step is arithmetic.

Plain and watched rounds alternate in one process on one thread (`torch.set_num_threads(1)`), the
first of each pair taking turns, so drift in machine load hits both; rounds are short (enough
steps to last --round-seconds, at least one) and pairs many, because the machine this runs on is
shared and its load changes from second to second. A row's watched rounds all belong to one
session, the instrumentation `watch()` installs: installed before each watched round and removed
before each plain one (rounds of short steps start with one untimed step), so that its state
(step count, periodic checks) is that of a long run, not of a fresh start. Before the first pair it runs past
the steps where a fresh session checks the weights more often: after each of the first 10 steps
and every 10th up to step 100, then every 100th. That check is timed on its own and its share
per step (its cost / 100 steps) is added to the row's ratio. Times are CPU seconds of this
process (time.process_time: much less disturbed by other busy processes than wall time). A row's
ratio is the median over pairs of watched / plain, plus the check's share; the middle half of
the pairs is printed too. Goal: <= 1.02 on every row.

    python benchmarks/bench_watch.py [--sizes 20,200,1000,5000] [--compute light,heavy]
                                     [--optimizers SGD,AdamW] [--row-seconds 30] [--round-seconds 0.01]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from looplint.runtime.session import RuntimeReport, Session

COMPUTE = {"light": (16, 8), "heavy": (64, 64)}  # (layer width, batch size)
LONG_RUN = 110  # steps after which the weight check runs every 100th step
CHECK_PERIOD = 100
GOAL = 1.02


def make_model(tensors: int, width: int) -> nn.Module:
    return nn.Sequential(*[nn.Linear(width, width) for _ in range(tensors // 2)])


def make_optimizer(name: str, model: nn.Module) -> torch.optim.Optimizer:
    if name == "SGD":
        return torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    return torch.optim.AdamW(model.parameters(), lr=1e-3)


def train(model: nn.Module, optimizer: torch.optim.Optimizer, batch: tuple, steps: int) -> float:
    """CPU seconds per training step, over `steps` steps."""
    inputs, targets = batch
    start = time.process_time()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
    return (time.process_time() - start) / steps


def _timed(function, *args) -> float:
    start = time.process_time()
    function(*args)
    return time.process_time() - start


def quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 4:
        return min(values), max(values)
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q1, q3


def measure_row(tensors: int, compute: str, optimizer_name: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    width, batch_size = COMPUTE[compute]
    model = make_model(tensors, width)
    optimizer = make_optimizer(optimizer_name, model)
    batch = (torch.randn(batch_size, width), torch.randn(batch_size, width))
    step_seconds = min(train(model, optimizer, batch, 3) for _ in range(2))  # warm-up
    steps = max(1, round(args.round_seconds / step_seconds))
    warm = step_seconds < 0.05  # a short step feels the first calls after patching; a long one not
    pairs = min(args.max_pairs, max(args.min_pairs, round(args.row_seconds / (2 * steps * step_seconds))))

    session = Session()  # what watch() installs
    session.start()
    try:
        train(model, optimizer, batch, LONG_RUN)
    finally:
        session.stop()
    ratios, plain_times, watched_times = [], [], []
    for pair in range(pairs):
        times = {}
        for kind in ("plain", "watched") if pair % 2 == 0 else ("watched", "plain"):
            if kind == "watched":
                session.start()
            try:
                if warm:
                    train(model, optimizer, batch, 1)  # the first step after patching or unpatching
                times[kind] = train(model, optimizer, batch, steps)
            finally:
                if kind == "watched":
                    session.stop()
        ratios.append(times["watched"] / times["plain"])
        plain_times.append(times["plain"])
        watched_times.append(times["watched"])
    report = RuntimeReport()
    session.finish(report)
    # The loss wanders on random data; learning-rate findings are beside the point.
    assert not [f for f in report.findings if f.code < "LL506"], report.findings
    check = getattr(session.health, "check_weights", None)  # absent before the check was periodic
    check_seconds = min(_timed(check, optimizer, 0, None, "") for _ in range(3)) if check else 0.0
    check_share = check_seconds / (CHECK_PERIOD * statistics.median(plain_times))
    low, high = quartiles(ratios)
    return {
        "tensors": tensors,
        "compute": compute,
        "optimizer": optimizer_name,
        "plain_ms": statistics.median(plain_times) * 1e3,
        "watched_ms": statistics.median(watched_times) * 1e3,
        "ratio": statistics.median(ratios) + check_share,
        "check": check_share,
        "low": low,
        "high": high,
        "pairs": len(ratios),
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20,200,1000,5000", help="parameter tensors per model")
    parser.add_argument("--compute", default="light,heavy")
    parser.add_argument("--optimizers", default="SGD,AdamW")
    parser.add_argument("--row-seconds", type=float, default=30, help="time spent on a row's pairs")
    parser.add_argument("--min-pairs", type=int, default=7)
    parser.add_argument("--max-pairs", type=int, default=401)
    parser.add_argument("--round-seconds", type=float, default=0.01, help="shortest timed round")
    args = parser.parse_args()

    torch.set_num_threads(1)
    print("1 thread, CPU time per step; ratio: median of alternating pairs of rounds + weight check share")
    header = f"{'tensors':>7}  {'compute':<7}  {'optimizer':<9}  {'plain':>10}  {'watched':>10}  ratio  "
    print(header + "middle half  check   pairs x steps")
    worst = 0.0
    for tensors in [int(s) for s in args.sizes.split(",")]:
        for compute in args.compute.split(","):
            for optimizer_name in args.optimizers.split(","):
                row = measure_row(tensors, compute, optimizer_name, args)
                worst = max(worst, row["ratio"])
                print(
                    f"{row['tensors']:>7}  {row['compute']:<7}  {row['optimizer']:<9}  "
                    f"{row['plain_ms']:>7.2f} ms  {row['watched_ms']:>7.2f} ms  {row['ratio']:.3f}  "
                    f"{row['low']:.3f}-{row['high']:.3f}  {row['check']:.4f}  {row['pairs']:>5} x {row['steps']}",
                    flush=True,
                )
    verdict = "ok" if worst <= GOAL else "over"
    print(f"worst median ratio {worst:.3f}   goal <= {GOAL}   {verdict}")


if __name__ == "__main__":
    main()
