"""Per-step overhead of looplint.watch() on a small CNN, against the same loop unwatched.

Both loops run alternately in one process on one thread (`torch.set_num_threads(1)`), so drift
in machine load hits both. Each watched round opens a fresh `watch()`, runs its first steps
untimed (they carry a one-time extra gradient check; a real run has thousands of steps), then
times the same number of steps as the plain round. Printed: the median over rounds of
(watched / plain) per-step time, in CPU time (time.process_time, much less disturbed by other
busy processes than wall-clock time) and in wall time, and the ratio of the fastest steps.
Goal: <= 1.02.

    python benchmarks/bench_watch.py [--rounds 30] [--steps 10] [--batch-size 32] [--model tiny]

`--model tiny` swaps the CNN for five 4x4 linear layers (the same 10 parameter tensors, almost
no arithmetic) and prints the hook's absolute cost per step, from the fastest rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import looplint
from looplint.runtime.health import GRAD_CHECK_FIRST


def make_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def make_tiny() -> nn.Module:
    return nn.Sequential(*[nn.Linear(4, 4) for _ in range(4)], nn.Linear(4, 10))


def train(
    model: nn.Module, optimizer: torch.optim.Optimizer, batches: list, steps: int
) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per training step, over `steps` steps."""
    criterion = nn.CrossEntropyLoss()
    start, start_wall = time.process_time(), time.perf_counter()
    for i in range(steps):
        images, labels = batches[i % len(batches)]
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
    return (time.process_time() - start) / steps, (time.perf_counter() - start_wall) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", choices=["cnn", "tiny"], default="cnn")
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = make_cnn() if args.model == "cnn" else make_tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    shape = (3, 32, 32) if args.model == "cnn" else (4,)
    batches = [
        (torch.randn(args.batch_size, *shape), torch.randint(0, 10, (args.batch_size,))) for _ in range(8)
    ]
    train(model, optimizer, batches, 10)  # warm-up

    cpu_ratios, wall_ratios, fastest = [], [], {"plain": [], "watched": []}
    for round_ in range(args.rounds):
        # Alternate which loop goes first so neither always runs on a warmer cache.
        order = ("plain", "watched") if round_ % 2 == 0 else ("watched", "plain")
        times = {}
        for kind in order:
            if kind == "plain":
                times[kind] = train(model, optimizer, batches, args.steps)
            else:
                with looplint.watch() as report:
                    train(model, optimizer, batches, GRAD_CHECK_FIRST)
                    times[kind] = train(model, optimizer, batches, args.steps)
                # The loss of random labels wanders; learning-rate findings are beside the point.
                assert not [f for f in report.findings if f.code < "LL506"], report.findings
            fastest[kind].append(times[kind][0])
        cpu_ratios.append(times["watched"][0] / times["plain"][0])
        wall_ratios.append(times["watched"][1] / times["plain"][1])
    plain = statistics.median(fastest["plain"])
    name = "small CNN" if args.model == "cnn" else "tiny MLP (10 parameter tensors)"
    print(f"{name}, batch {args.batch_size}, 1 thread, {args.rounds} rounds x {args.steps} steps")
    print(f"plain step: {plain * 1e3:.2f} ms CPU (median)")
    print(
        f"watched/plain per-step CPU time:  median {statistics.median(cpu_ratios):.4f} "
        f"(min {min(cpu_ratios):.4f}, max {max(cpu_ratios):.4f})"
    )
    print(f"watched/plain per-step wall time: median {statistics.median(wall_ratios):.4f}")
    print(f"watched/plain fastest round:      {min(fastest['watched']) / min(fastest['plain']):.4f}")
    if args.model == "tiny":
        # With almost no arithmetic the difference is the hook itself; on the CNN it drowns in noise.
        cost = (min(fastest["watched"]) - min(fastest["plain"])) * 1e6
        print(f"hook cost per step (fastest rounds): {cost:.0f} us CPU")


if __name__ == "__main__":
    main()
