"""Does the LR range test's suggestion hold up? Train with it and with a grid of LRs.

For each small CPU task and seed: run `looplint.lr_find`, then train from the same initial
weights for the same budget with (a) our suggestion, (b) the classic steepest-slope rule applied
to the same recorded curve, and (c) each of 10 log-spaced grid LRs. A suggestion's rank is
1 + the number of grid LRs whose final validation loss is lower. Goal: rank <= 2 everywhere.

Run:  python benchmarks/bench_lr_find.py [--seeds 3] [--tasks mlp,cnn,text] [--steps 100]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from looplint.lrfind import lr_find
from looplint.lrfind.curve import smooth

GRID = [10 ** (-4 + 4 * i / 9) for i in range(10)]  # 1e-4 ... 1, x2.78 apart


@dataclass
class Task:
    """One benchmark problem: data, a model factory, an optimizer factory and a budget."""

    name: str
    train: TensorDataset
    val: TensorDataset
    make_model: Callable[[], nn.Module]
    make_optimizer: Callable[[list[nn.Parameter], float], torch.optim.Optimizer]
    epochs: int
    batch_size: int = 64


def mlp_task(seed: int) -> Task:
    """4-class labels from a random teacher MLP on 20-dim Gaussian inputs; SGD with momentum."""
    g = torch.Generator().manual_seed(seed)
    teacher = [torch.randn(20, 32, generator=g), torch.randn(32, 4, generator=g)]
    x = torch.randn(3072, 20, generator=g)
    y = (torch.tanh(x @ teacher[0]) @ teacher[1]).argmax(1)
    return Task(
        "mlp (SGD+momentum)",
        TensorDataset(x[:2048], y[:2048]),
        TensorDataset(x[2048:], y[2048:]),
        lambda: nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4)),
        lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
        epochs=3,
    )


def cnn_task(seed: int) -> Task:
    """torchvision FakeData images plus a per-class pattern, so the labels are learnable; Adam."""
    from torchvision.datasets import FakeData
    from torchvision.transforms.functional import pil_to_tensor

    data = FakeData(size=1536, image_size=(3, 16, 16), num_classes=10, random_offset=seed * 7919)
    images = torch.stack([pil_to_tensor(image) for image, _ in data]).float() / 255
    labels = torch.tensor([int(label) for _, label in data])
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(10, 3, 16, 16, generator=g) * 0.25
    images = (images - 0.5) + patterns[labels]
    return Task(
        "cnn on FakeData (Adam)",
        TensorDataset(images[:1024], labels[:1024]),
        TensorDataset(images[1024:], labels[1024:]),
        lambda: nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 10),
        ),
        lambda params, lr: torch.optim.Adam(params, lr=lr),
        epochs=3,
    )


class BagClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(400, 32, mode="mean")
        self.head = nn.Linear(32, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens))


def text_task(seed: int) -> Task:
    """Token sequences where each class draws a quarter of its tokens from its own vocabulary."""
    g = torch.Generator().manual_seed(seed)
    n, length = 3072, 24
    labels = torch.randint(0, 4, (n,), generator=g)
    common = torch.randint(0, 320, (n, length), generator=g)
    specific = 320 + labels[:, None] * 20 + torch.randint(0, 20, (n, length), generator=g)
    use_specific = torch.rand(n, length, generator=g) < 0.25
    tokens = torch.where(use_specific, specific, common)
    return Task(
        "text EmbeddingBag (AdamW)",
        TensorDataset(tokens[:2048], labels[:2048]),
        TensorDataset(tokens[2048:], labels[2048:]),
        BagClassifier,
        lambda params, lr: torch.optim.AdamW(params, lr=lr),
        epochs=2,
    )


TASKS = {"mlp": mlp_task, "cnn": cnn_task, "text": text_task}


def train(task: Task, init: dict, lr: float, seed: int) -> float:
    """Train from `init` with a constant LR for the task's budget; final validation loss."""
    torch.manual_seed(seed)
    model = task.make_model()
    model.load_state_dict(init)
    optimizer = task.make_optimizer(list(model.parameters()), lr)
    loader = DataLoader(
        task.train,
        batch_size=task.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    criterion = nn.CrossEntropyLoss()
    for _ in range(task.epochs):
        for inputs, targets in loader:
            loss = criterion(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        inputs, targets = task.val.tensors
        val = float(criterion(model(inputs), targets))
    return val if math.isfinite(val) else math.inf


def steepest_by_index(lrs: list[float], raw_losses: list[float], beta: float) -> float:
    """The classic rule: on the running-average curve, skip the first 10 and last 5 points and
    take the LR where the loss drops most from one step to the next (slope by step index)."""
    losses = smooth(raw_losses, beta)[10:-5]
    window = lrs[10:-5]
    drops = [losses[i + 1] - losses[max(i - 1, 0)] for i in range(len(losses) - 1)]
    best = min(range(len(drops)), key=drops.__getitem__)
    return window[best]


def rank(value: float, grid_values: list[float]) -> int:
    return 1 + sum(v < value for v in grid_values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--steps", type=int, default=100, help="range test steps (default 100)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    header = (
        f"{'task':<28}{'seed':>5}{'ours lr':>10}{'rank':>6}{'steepest lr':>13}{'rank':>6}"
        f"{'best grid lr':>14}{'val loss ours/best':>20}"
    )
    print(header)
    print("-" * len(header))
    ours_ranks, classic_ranks = [], []
    for name in args.tasks.split(","):
        for seed in range(args.seeds):
            task = TASKS[name](seed)
            torch.manual_seed(seed)
            model = task.make_model()
            init = {k: v.clone() for k, v in model.state_dict().items()}
            loader = DataLoader(
                task.train,
                batch_size=task.batch_size,
                shuffle=True,
                generator=torch.Generator().manual_seed(seed),
            )
            optimizer = task.make_optimizer(list(model.parameters()), 1e-3)
            result = lr_find(model, optimizer, nn.CrossEntropyLoss(), loader, steps=args.steps)
            ours = result.suggested_lr[0]
            classic = steepest_by_index(result.lrs, result.raw_losses, 0.9)
            grid_values = [train(task, init, lr, seed) for lr in GRID]
            ours_value = train(task, init, ours, seed) if ours else math.inf
            classic_value = train(task, init, classic, seed)
            best = min(range(len(GRID)), key=grid_values.__getitem__)
            ours_ranks.append(rank(ours_value, grid_values))
            classic_ranks.append(rank(classic_value, grid_values))
            print(
                f"{task.name:<28}{seed:>5}{ours or float('nan'):>10.2g}{ours_ranks[-1]:>6}"
                f"{classic:>13.2g}{classic_ranks[-1]:>6}{GRID[best]:>14.2g}"
                f"{ours_value:>11.3f}/{grid_values[best]:.3f}"
            )
    print("-" * len(header))
    print(
        f"top-2 of the 10-LR grid: ours {sum(r <= 2 for r in ours_ranks)}/{len(ours_ranks)}, "
        f"steepest-by-index {sum(r <= 2 for r in classic_ranks)}/{len(classic_ranks)}; "
        f"mean rank ours {sum(ours_ranks) / len(ours_ranks):.1f}, "
        f"steepest {sum(classic_ranks) / len(classic_ranks):.1f}; "
        f"{time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
