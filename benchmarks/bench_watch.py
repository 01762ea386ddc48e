"""Per-step overhead of looplint.watch(), against the same loop unwatched, as the model grows.

Each row is a stack of linear layers with 20, 200, 1000 or 5000 parameter tensors (a weight and a
bias per layer), trained with SGD (momentum) or AdamW:

- compute-light: 16x16 layers, batch 8; a step is mostly per-tensor framework work, so any
  per-tensor cost of the hooks shows in full;
- compute-heavy: 64x64 layers, batch 64; most of a step is arithmetic.

Plain and watched rounds alternate in one process on one thread (`torch.set_num_threads(1)`),
the first of each pair taking turns, so drift in machine load hits both. Each watched round opens
a fresh `watch()`, runs its first steps untimed (they carry a one-time extra gradient check; a
real run has thousands of steps), then times as many steps as the plain round: a multiple of the
gradient check's period, so the periodic check is counted at its real rate, and enough for a round
to last --round-seconds, so that small models are not timed on a few milliseconds. Times are CPU seconds
of this process (time.process_time: much less disturbed by other busy processes than wall time).
A row's ratio is the median over pairs of watched / plain; when the middle half of its pairs
spreads wider than --spread, more pairs are run (up to --max-rounds). Goal: <= 1.02 on every row.

    python benchmarks/bench_watch.py [--sizes 20,200,1000,5000] [--compute light,heavy]
                                     [--optimizers SGD,AdamW] [--rounds 5] [--max-rounds 15]
                                     [--round-seconds 0.25]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import looplint
from looplint.runtime.health import GRAD_CHECK_EVERY, GRAD_CHECK_FIRST

COMPUTE = {"light": (16, 8), "heavy": (64, 64)}  # (layer width, batch size)
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
    periods = max(1, round(args.round_seconds / (step_seconds * GRAD_CHECK_EVERY)))
    steps = GRAD_CHECK_EVERY * periods
    ratios, plain_times, watched_times = [], [], []
    while len(ratios) < args.max_rounds:
        order = ("plain", "watched") if len(ratios) % 2 == 0 else ("watched", "plain")
        times = {}
        for kind in order:
            if kind == "plain":
                times[kind] = train(model, optimizer, batch, steps)
            else:
                with looplint.watch() as report:
                    train(model, optimizer, batch, GRAD_CHECK_FIRST)
                    times[kind] = train(model, optimizer, batch, steps)
                # The loss wanders on random data; learning-rate findings are beside the point.
                assert not [f for f in report.findings if f.code < "LL506"], report.findings
        ratios.append(times["watched"] / times["plain"])
        plain_times.append(times["plain"])
        watched_times.append(times["watched"])
        if len(ratios) >= args.rounds:
            low, high = quartiles(ratios)
            if high - low <= args.spread:
                break
    low, high = quartiles(ratios)
    return {
        "tensors": tensors,
        "compute": compute,
        "optimizer": optimizer_name,
        "plain_ms": statistics.median(plain_times) * 1e3,
        "watched_ms": statistics.median(watched_times) * 1e3,
        "ratio": statistics.median(ratios),
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
    parser.add_argument("--rounds", type=int, default=5, help="pairs per row at least")
    parser.add_argument("--max-rounds", type=int, default=15, help="pairs per row at most")
    parser.add_argument("--spread", type=float, default=0.02, help="widest middle half of a row's ratios")
    parser.add_argument("--round-seconds", type=float, default=0.25, help="shortest timed round")
    args = parser.parse_args()

    torch.set_num_threads(1)
    print(
        f"1 thread, CPU time per step, median of >= {args.rounds} alternating pairs of rounds "
        f"(more while their middle half spreads over {args.spread})"
    )
    header = f"{'tensors':>7}  {'compute':<7}  {'optimizer':<9}  {'plain':>10}  {'watched':>10}  ratio  "
    print(header + "middle half  pairs x steps")
    worst = 0.0
    for tensors in [int(s) for s in args.sizes.split(",")]:
        for compute in args.compute.split(","):
            for optimizer_name in args.optimizers.split(","):
                row = measure_row(tensors, compute, optimizer_name, args)
                worst = max(worst, row["ratio"])
                print(
                    f"{row['tensors']:>7}  {row['compute']:<7}  {row['optimizer']:<9}  "
                    f"{row['plain_ms']:>7.2f} ms  {row['watched_ms']:>7.2f} ms  {row['ratio']:.3f}  "
                    f"{row['low']:.3f}-{row['high']:.3f}  {row['pairs']:>5} x {row['steps']}",
                    flush=True,
                )
    verdict = "ok" if worst <= GOAL else "over"
    print(f"worst median ratio {worst:.3f}   goal <= {GOAL}   {verdict}")


if __name__ == "__main__":
    main()
