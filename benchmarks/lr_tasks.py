"""The small CPU tasks of the LR benchmark, and its fixed split into a tuned and a held-out half.

Every task is built from its seed alone: data, initial weights (for the fine-tuning tasks, the
pretrained backbone too), the optimizer and a fixed budget of a few epochs. The split below was
written down before any suggestion rule was run on the held-out tasks, and it is never changed:
rules are tuned on TUNED only; HELD_OUT is only ever reported. Each kind of task (classification
MLP, CNN, sequences, regression, fine-tuning, token bags) appears on both sides, and so do SGD with
momentum, Adam/AdamW, BatchNorm and no normalization.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import TensorDataset


@dataclass
class Task:
    """One benchmark problem: data, a model factory, an optimizer factory, a loss and a budget."""

    name: str
    train: TensorDataset
    val: TensorDataset
    make_model: Callable[[], nn.Module]
    make_optimizer: Callable[[list[nn.Parameter], float], torch.optim.Optimizer]
    criterion: nn.Module
    epochs: int
    batch_size: int = 64


def _split(x: torch.Tensor, y: torch.Tensor, n_train: int) -> tuple[TensorDataset, TensorDataset]:
    return TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[n_train:], y[n_train:])


def _seeded(seed: int, build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """A model factory whose random initial weights depend on the task's seed only."""

    def make() -> nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(1000 + seed)
            return build()

    return make


def _sgd(params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def _adam(params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr)


def _adamw(params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)


# --- tuned half -----------------------------------------------------------------------------


def mlp_task(seed: int) -> Task:
    """4-class labels from a random teacher MLP on 20-dim Gaussian inputs; SGD with momentum."""
    g = torch.Generator().manual_seed(seed)
    teacher = [torch.randn(20, 32, generator=g), torch.randn(32, 4, generator=g)]
    x = torch.randn(3072, 20, generator=g)
    y = (torch.tanh(x @ teacher[0]) @ teacher[1]).argmax(1)
    return Task(
        "mlp teacher (SGD+mom)",
        *_split(x, y, 2048),
        _seeded(seed, lambda: nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))),
        _sgd,
        nn.CrossEntropyLoss(),
        epochs=3,
    )


def _pattern_images(seed: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """3x16x16 uniform noise images plus one of 10 fixed class patterns (the same patterns for
    every seed with the same last three digits, so a source task can share them)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (size,), generator=g)
    images = torch.rand(size, 3, 16, 16, generator=g) - 0.5
    patterns = torch.randn(10, 3, 16, 16, generator=torch.Generator().manual_seed(seed % 1000)) * 0.4
    return images + patterns[labels], labels


def cnn_task(seed: int) -> Task:
    """A small CNN with BatchNorm on noise images with class patterns; Adam."""
    images, labels = _pattern_images(seed, 1536)
    return Task(
        "cnn+BN patterns (Adam)",
        *_split(images, labels, 1024),
        _seeded(
            seed,
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
        ),
        _adam,
        nn.CrossEntropyLoss(),
        epochs=3,
        batch_size=32,
    )


class BagClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(400, 32, mode="mean")
        self.head = nn.Linear(32, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens))


def text_task(seed: int) -> Task:
    """Token bags where each class draws a quarter of its tokens from its own vocabulary; AdamW."""
    g = torch.Generator().manual_seed(seed)
    n, length = 3072, 24
    labels = torch.randint(0, 4, (n,), generator=g)
    common = torch.randint(0, 320, (n, length), generator=g)
    specific = 320 + labels[:, None] * 20 + torch.randint(0, 20, (n, length), generator=g)
    tokens = torch.where(torch.rand(n, length, generator=g) < 0.25, specific, common)
    return Task(
        "text EmbeddingBag (AdamW)",
        *_split(tokens, labels, 2048),
        _seeded(seed, BagClassifier),
        _adamw,
        nn.CrossEntropyLoss(),
        epochs=2,
    )


class SequenceClassifier(nn.Module):
    """Embedding, a recurrent layer, and a linear head on the last hidden state."""

    def __init__(self, vocab: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        self.rnn = nn.LSTM(16, 32, batch_first=True)
        self.head = nn.Linear(32, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        output, _ = self.rnn(self.embed(tokens))
        return self.head(output[:, -1])


def lstm_task(seed: int) -> Task:
    """Is token 1 more frequent than token 2 in a sequence of 20 tokens? An LSTM; Adam."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 8, (3072, 20), generator=g)
    labels = ((tokens == 1).sum(1) > (tokens == 2).sum(1)).long()
    return Task(
        "lstm counting (Adam)",
        *_split(tokens, labels, 2048),
        _seeded(seed, lambda: SequenceClassifier(8, 2)),
        _adam,
        nn.CrossEntropyLoss(),
        epochs=3,
    )


def regression_task(seed: int) -> Task:
    """A smooth nonlinear function of 8 inputs plus noise, standardized; an MLP with MSE; Adam."""
    g = torch.Generator().manual_seed(seed)
    w1, w2 = torch.randn(8, generator=g), torch.randn(8, generator=g)
    x = torch.randn(3072, 8, generator=g)
    y = torch.sin(x @ w1 / 2) + 0.3 * (x @ w2) ** 2 / 8 + 0.1 * torch.randn(3072, generator=g)
    y = ((y - y.mean()) / y.std())[:, None]
    return Task(
        "regression mlp (Adam)",
        *_split(x, y, 2048),
        _seeded(
            seed,
            lambda: nn.Sequential(
                nn.Linear(8, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1)
            ),
        ),
        _adam,
        nn.MSELoss(),
        epochs=3,
    )


class Backbone(nn.Module):
    """An MLP body and a replaceable head, for the fine-tuning task."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
        self.head = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _pretrain(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> None:
    """A short fixed pretraining run (Adam, batch 64), part of building the task."""
    g = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        index = torch.randint(0, len(x), (64,), generator=g)
        loss = nn.functional.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _fine_tuned(
    pretrained: Callable[[], nn.Module],
    new: Callable[[], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    torch_seed: int,
    steps: int,
) -> Callable[[], nn.Module]:
    """Builds `new()` models whose `body` starts from that of a `pretrained()` model trained for
    `steps` on (x, y); the global RNG is left as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(torch_seed)
        source = pretrained()
        _pretrain(source, x, y, steps=steps, lr=3e-3)
    body = {k: v.clone() for k, v in source.body.state_dict().items()}

    def build() -> nn.Module:
        model = new()
        model.body.load_state_dict(body)
        return model

    return build


def finetune_mlp_task(seed: int) -> Task:
    """Fine-tuning: a body pretrained on 8 teacher classes gets a new 4-class head for labels made
    from the same hidden features; everything trains, SGD with momentum."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(20, 48, generator=g)
    source_head, target_head = torch.randn(48, 8, generator=g), torch.randn(48, 4, generator=g)
    x_source = torch.randn(4096, 20, generator=g)
    x = torch.randn(2048, 20, generator=g)
    y_source = (torch.relu(x_source @ features) @ source_head).argmax(1)
    y = (torch.relu(x @ features) @ target_head).argmax(1)
    build = _fine_tuned(lambda: Backbone(8), lambda: Backbone(4), x_source, y_source, 2000 + seed, 300)
    return Task(
        "finetune mlp (SGD+mom)",
        *_split(x, y, 1024),
        _seeded(seed, build),
        _sgd,
        nn.CrossEntropyLoss(),
        epochs=3,
        batch_size=32,
    )


# --- held-out half --------------------------------------------------------------------------


def mlp_bn_task(seed: int) -> Task:
    """6 classes, each a mixture of 3 Gaussian blobs in 16 dimensions; an MLP with BatchNorm; AdamW."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(18, 16, generator=g) * 1.2
    blob = torch.randint(0, 18, (3072,), generator=g)
    x = centres[blob] + torch.randn(3072, 16, generator=g)
    y = blob % 6
    return Task(
        "mlp+BN blobs (AdamW)",
        *_split(x, y, 2048),
        _seeded(
            seed,
            lambda: nn.Sequential(
                nn.Linear(16, 128),
                nn.BatchNorm1d(128),
                nn.ReLU(),
                nn.Linear(128, 128),
                nn.BatchNorm1d(128),
                nn.ReLU(),
                nn.Linear(128, 6),
            ),
        ),
        _adamw,
        nn.CrossEntropyLoss(),
        epochs=3,
    )


def _stripes(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """1x16x16 images of stripes in one of 4 orientations with random frequency, phase and noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    angle = labels.float() * torch.pi / 4 + 0.15 * torch.randn(n, generator=g)
    frequency = 0.6 + 0.6 * torch.rand(n, generator=g)
    phase = 2 * torch.pi * torch.rand(n, generator=g)
    row, col = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    along = torch.cos(angle)[:, None, None] * col + torch.sin(angle)[:, None, None] * row
    images = torch.sin(frequency[:, None, None] * along + phase[:, None, None])
    images = images + 0.8 * torch.randn(n, 16, 16, generator=g)
    return images[:, None], labels


def cnn_plain_task(seed: int) -> Task:
    """Orientation of noisy stripes; a small CNN without normalization; SGD with momentum."""
    images, labels = _stripes(seed, 2048)
    return Task(
        "cnn stripes (SGD+mom)",
        *_split(images, labels, 1536),
        _seeded(
            seed,
            lambda: nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(8, 16, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Flatten(),
                nn.Linear(16 * 16, 4),
            ),
        ),
        _sgd,
        nn.CrossEntropyLoss(),
        epochs=3,
    )


class TinyTransformer(nn.Module):
    """Token and position embeddings, one encoder layer, mean pooling, a linear head."""

    def __init__(self, vocab: int, length: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 32)
        self.position = nn.Parameter(torch.randn(length, 32) * 0.1)
        self.encoder = nn.TransformerEncoderLayer(32, 2, 64, dropout=0.0, batch_first=True)
        self.head = nn.Linear(32, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens) + self.position).mean(1))


def transformer_task(seed: int) -> Task:
    """Which of tokens 1, 2, 3 is the most frequent in 16 tokens? A one-layer transformer; AdamW."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 10, (3072, 16), generator=g)
    counts = torch.stack([(tokens == t).sum(1) for t in (1, 2, 3)], 1).float()
    labels = (counts + 0.1 * torch.rand(3072, 3, generator=g)).argmax(1)  # ties broken at random
    return Task(
        "transformer majority (AdamW)",
        *_split(tokens, labels, 2048),
        _seeded(seed, lambda: TinyTransformer(10, 16, 3)),
        _adamw,
        nn.CrossEntropyLoss(),
        epochs=3,
    )


def regression_bn_task(seed: int) -> Task:
    """Three targets from products and sines of 10 inputs plus noise; an MLP with BatchNorm and
    MSE; SGD with momentum."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3072, 10, generator=g)
    w = torch.randn(10, 3, generator=g) / 3
    y = torch.stack([x[:, 0] * x[:, 1], torch.sin(2 * x[:, 2]), x[:, 3].abs()], 1) + x @ w
    y = y + 0.1 * torch.randn(3072, 3, generator=g)
    y = (y - y.mean(0)) / y.std(0)
    return Task(
        "regression mlp+BN (SGD+mom)",
        *_split(x, y, 2048),
        _seeded(
            seed,
            lambda: nn.Sequential(
                nn.Linear(10, 64),
                nn.BatchNorm1d(64),
                nn.ReLU(),
                nn.Linear(64, 64),
                nn.BatchNorm1d(64),
                nn.ReLU(),
                nn.Linear(64, 3),
            ),
        ),
        _sgd,
        nn.MSELoss(),
        epochs=3,
    )


class SmallCNN(nn.Module):
    """Conv body and a replaceable head, for the CNN fine-tuning task."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def finetune_cnn_task(seed: int) -> Task:
    """Fine-tuning: a CNN pretrained on the 10 pattern classes gets a new head for a new
    task on the same kind of images: 5 groups of 2 classes (a random grouping per seed); Adam."""
    source_x, source_y = _pattern_images(seed + 1000, 1024)
    images, labels = _pattern_images(seed, 1536)
    groups = torch.randperm(10, generator=torch.Generator().manual_seed(seed)) % 5
    build = _fine_tuned(lambda: SmallCNN(10), lambda: SmallCNN(5), source_x, source_y, 3000 + seed, 200)
    return Task(
        "finetune cnn (Adam)",
        *_split(images, groups[labels], 1024),
        _seeded(seed, build),
        _adam,
        nn.CrossEntropyLoss(),
        epochs=3,
        batch_size=32,
    )


class SeriesRegressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(1, 32, batch_first=True)
        self.head = nn.Linear(32, 1)

    def forward(self, series: torch.Tensor) -> torch.Tensor:
        output, _ = self.rnn(series)
        return self.head(output[:, -1])


def gru_task(seed: int) -> Task:
    """The next value of a noisy sum of two sines from the previous 24; a GRU with MSE; Adam."""
    g = torch.Generator().manual_seed(seed)
    n, length = 3072, 25
    t = torch.arange(length, dtype=torch.float32)
    frequency = 0.2 + 0.4 * torch.rand(n, 2, generator=g)
    phase = 2 * torch.pi * torch.rand(n, 2, generator=g)
    series = torch.sin(frequency[:, :1] * t + phase[:, :1]) + 0.5 * torch.sin(
        frequency[:, 1:] * t + phase[:, 1:]
    )
    series = series + 0.05 * torch.randn(n, length, generator=g)
    return Task(
        "gru next value (Adam)",
        *_split(series[:, :-1, None], series[:, -1:], 2048),
        _seeded(seed, SeriesRegressor),
        _adam,
        nn.MSELoss(),
        epochs=3,
    )


# The split, fixed before any rule was run on the held-out half.
TUNED = {
    "mlp": mlp_task,
    "cnn": cnn_task,
    "text": text_task,
    "lstm": lstm_task,
    "regression": regression_task,
    "finetune-mlp": finetune_mlp_task,
}
HELD_OUT = {
    "mlp-bn": mlp_bn_task,
    "cnn-plain": cnn_plain_task,
    "transformer": transformer_task,
    "regression-bn": regression_bn_task,
    "finetune-cnn": finetune_cnn_task,
    "gru": gru_task,
}
