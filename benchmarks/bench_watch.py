"""Per-step overhead of looplint.watch() on a small CNN, against the same loop unwatched.

Both loops run alternately in one process on one thread, so drift in machine load hits both;
the printed figure is the median over rounds of (watched time / plain time). Goal: <= 1.02.

    python benchmarks/bench_watch.py [--rounds 15] [--steps 40]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import looplint


def make_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def train(model: nn.Module, optimizer: torch.optim.Optimizer, batches: list, steps: int) -> float:
    criterion = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for i in range(steps):
        images, labels = batches[i % len(batches)]
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = make_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    batches = [
        (torch.randn(args.batch_size, 3, 32, 32), torch.randint(0, 10, (args.batch_size,)))
        for _ in range(8)
    ]
    train(model, optimizer, batches, 10)  # warm-up

    ratios, plain_times = [], []
    for round_ in range(args.rounds):
        # Alternate which loop goes first so neither always runs on a warmer cache.
        order = ("plain", "watched") if round_ % 2 == 0 else ("watched", "plain")
        times = {}
        for kind in order:
            if kind == "plain":
                times[kind] = train(model, optimizer, batches, args.steps)
            else:
                with looplint.watch() as report:
                    times[kind] = train(model, optimizer, batches, args.steps)
                assert not report.findings, report.findings
        ratios.append(times["watched"] / times["plain"])
        plain_times.append(times["plain"] / args.steps)
    print(f"small CNN, batch {args.batch_size}, 1 thread, {args.rounds} rounds x {args.steps} steps")
    print(f"plain step: {statistics.median(plain_times) * 1e3:.2f} ms (median)")
    print(f"watched/plain per-step time: median {statistics.median(ratios):.4f}, "
          f"min {min(ratios):.4f}, max {max(ratios):.4f}")


if __name__ == "__main__":
    main()
