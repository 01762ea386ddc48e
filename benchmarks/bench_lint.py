"""How much a looplint run costs compared with parsing the same files with libcst.

    python benchmarks/bench_lint.py                 # corpus built from fixtures/
    python benchmarks/bench_lint.py --corpus DIR    # the .py files of DIR (copied first)

Prints, all measured in this one process: looplint cold (no cache, one process) / libcst
parse-only of every file, the same on the files that hold training loops, warm / cold, and the
peak memory of a cold run over N and 10N files. Times are CPU seconds of this process
(resource.getrusage), which other load on the machine disturbs far less than wall time.
"""

from __future__ import annotations

import argparse
import gc
import random
import re
import resource
import shutil
import sys
import tempfile
import textwrap
import time
import tracemalloc
from pathlib import Path

import libcst

from looplint.engine import LintResult, decode_source, lint_paths
from looplint.engine.config import Config

ROOT = Path(__file__).resolve().parent.parent
GOALS = {"cold / parse": 1.0, "training cold / parse": 1.5, "warm / cold": 0.05}

# The code a training script carries besides its loop: models, data, arguments, evaluation.
MODEL_CODE = textwrap.dedent(
    '''\
    """Train a small image classifier."""
    import argparse
    import os
    import random

    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Dataset


    class Block{n}(nn.Module):
        def __init__(self, channels_in, channels_out, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1)
            self.bn1 = nn.BatchNorm2d(channels_out)
            self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
            self.bn2 = nn.BatchNorm2d(channels_out)
            self.shortcut = nn.Sequential()
            if stride != 1 or channels_in != channels_out:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(channels_in, channels_out, 1, stride=stride),
                    nn.BatchNorm2d(channels_out),
                )

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return F.relu(out + self.shortcut(x))


    class Net{n}(nn.Module):
        def __init__(self, num_classes=10, width=64):
            super().__init__()
            self.stem = nn.Conv2d(3, width, 3, padding=1)
            self.layers = nn.Sequential(
                Block{n}(width, width),
                Block{n}(width, width * 2, stride=2),
                Block{n}(width * 2, width * 4, stride=2),
            )
            self.head = nn.Linear(width * 4, num_classes)

        def forward(self, x):
            x = self.layers(F.relu(self.stem(x)))
            x = F.adaptive_avg_pool2d(x, 1).flatten(1)
            return self.head(x)


    class Folder{n}(Dataset):
        def __init__(self, root, transform=None):
            self.items = sorted(
                (os.path.join(root, name), index)
                for index, name in enumerate(sorted(os.listdir(root)))
            )
            self.transform = transform

        def __len__(self):
            return len(self.items)

        def __getitem__(self, index):
            path, label = self.items[index]
            image = np.load(path).astype(np.float32) / 255.0
            if self.transform is not None:
                image = self.transform(image)
            return torch.from_numpy(image).permute(2, 0, 1), label


    def seed_everything_{n}(seed):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)


    def accuracy_{n}(output, target, topk=(1,)):
        with torch.no_grad():
            maxk = max(topk)
            _, pred = output.topk(maxk, 1, True, True)
            correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))
            return [correct[:k].reshape(-1).float().sum(0) * 100.0 / target.size(0) for k in topk]


    def parse_args_{n}(argv=None):
        parser = argparse.ArgumentParser(description=__doc__)
        parser.add_argument("--data", default="data/")
        parser.add_argument("--epochs", type=int, default=90)
        parser.add_argument("--batch-size", type=int, default=256)
        parser.add_argument("--workers", type=int, default=4)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--resume", default="")
        return parser.parse_args(argv)
    '''
)
# Local names a renaming may touch without changing what the rules see.
RENAMABLE = re.compile(r"\b(inputs|targets|labels|images|outputs|batch|data|x|y|i|epoch)\b")


def training_corpus(seed: int) -> list[str]:
    """The fixtures' training loops (static, seed and runtime cases)."""
    del seed
    sources = []
    for folder in ("static", "seed", "runtime"):
        for path in sorted((ROOT / "fixtures" / folder).glob("*.py")):
            sources.append(path.read_text(encoding="utf-8"))
    return sources


def library_modules() -> list[str]:
    """Real, unrelated Python modules (the standard library's) to stand for the rest of a repo."""
    stdlib = Path(textwrap.__file__).parent
    modules = []
    for path in sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/*.py")):
        if path.relative_to(stdlib).parts[0].startswith(("test", "idlelib", "lib2to3", "site-")):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if 2_000 <= len(text) <= 40_000:
            modules.append(text)
    return modules


def build_corpus(directory: Path, files: int, seed: int = 0) -> list[Path]:
    """`files` modules: a third training scripts (model code + a fixture loop, identifiers
    renamed), the rest unrelated library modules, as in the repositories we measured."""
    rng = random.Random(seed)
    loops = training_corpus(seed)
    others = library_modules()
    written = []
    for index in range(files):
        package = directory / f"pkg{index % 20:02d}"
        package.mkdir(parents=True, exist_ok=True)
        if index % 3 == 0:
            suffix = f"_{index}"
            loop = RENAMABLE.sub(lambda m, s=suffix: m.group(1) + s, rng.choice(loops))
            text = MODEL_CODE.replace("{n}", str(index)) + "\n\n" + loop
            path = package / f"train_{index}.py"
        else:
            text = rng.choice(others)
            path = package / f"module_{index}.py"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def copy_corpus(source: Path, directory: Path) -> list[Path]:
    written = []
    for path in sorted(source.rglob("*.py")):
        if any(part.startswith(".") or part in ("build", "dist") for part in path.parts):
            continue
        target = directory / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        written.append(target)
    return written


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(function, repeat: int) -> float:
    """The least CPU time of `repeat` calls (the least disturbed one), each with the collection
    of the garbage it left, which a process pays for when it ends."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = cpu_seconds()
        result = function()
        gc.collect()
        best = min(best, cpu_seconds() - start)
        # A run that failed on some files would make the ratio meaningless.
        for error in getattr(result, "errors", [])[:3]:
            print(f"warning: {error}", file=sys.stderr)
    return best


def parse_all(paths: list[Path]) -> None:
    """What the goal compares with: read, decode and libcst-parse every file."""
    for path in paths:
        source = decode_source(path.read_bytes(), str(path))
        if isinstance(source, str):
            try:
                libcst.parse_module(source)
            except (libcst.ParserSyntaxError, RecursionError):
                continue  # a file libcst refuses costs what the refusal cost


def lint_cold(paths: list[Path], config: Config) -> LintResult:
    return lint_paths([str(path) for path in paths], config, jobs=1, use_cache=False)


def holds_training_loop(path: Path) -> bool:
    return path.name.startswith("train_") or "backward" in path.read_text(errors="replace")


def peak_memory(paths: list[Path], config: Config) -> int:
    """Peak Python heap (bytes) of a cold run over `paths`."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    lint_cold(paths, config)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="lint the .py files of this directory")
    parser.add_argument("--files", type=int, default=150, help="corpus size when generated")
    parser.add_argument("--memory-files", type=int, default=30, help="N for the N/10N memory run")
    parser.add_argument("--repeat", type=int, default=2, help="take the best of this many runs")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="looplint-bench-") as temporary:
        work = Path(temporary)
        corpus_dir = work / "corpus"
        if args.corpus:
            paths = copy_corpus(args.corpus, corpus_dir)
        else:
            paths = build_corpus(corpus_dir, args.files)
        if not paths:
            print(f"no .py files in {args.corpus}", file=sys.stderr)
            return 2
        training = [path for path in paths if holds_training_loop(path)]
        config = Config(root=corpus_dir)
        lines = sum(path.read_text(errors="replace").count("\n") for path in paths)

        # Imports and first-call set-up are paid before any clock starts.
        parse_all(paths[:3])
        lint_cold(paths[:3], config)

        parse = measure(lambda: parse_all(paths), args.repeat)
        cold = measure(lambda: lint_cold(paths, config), args.repeat)
        parse_training = measure(lambda: parse_all(training), args.repeat)
        cold_training = measure(lambda: lint_cold(training, config), args.repeat)
        lint_paths([str(path) for path in paths], config, jobs=1)  # fills the cache
        started = time.perf_counter()
        warm = measure(lambda: lint_paths([str(p) for p in paths], config, jobs=1), args.repeat)
        warm_wall = (time.perf_counter() - started) / args.repeat

        memory_dir = work / "memory"
        small = build_corpus(memory_dir / "small", args.memory_files, seed=1)
        large = build_corpus(memory_dir / "large", args.memory_files * 10, seed=1)
        peak_small = peak_memory(small, Config(root=memory_dir))
        peak_large = peak_memory(large, Config(root=memory_dir))

    ratios = {
        "cold / parse": cold / parse,
        "training cold / parse": cold_training / parse_training,
        "warm / cold": warm / cold,
    }
    print(f"corpus: {len(paths)} files, {lines} lines, {len(training)} with training loops")
    print(f"libcst parse only     {parse:8.2f} s CPU")
    print(f"looplint cold         {cold:8.2f} s CPU  (one process, no cache)")
    print(f"training files: parse {parse_training:8.2f} s, looplint cold {cold_training:.2f} s")
    print(f"looplint warm         {warm:8.3f} s CPU  ({warm_wall:.3f} s wall)")
    for name, value in ratios.items():
        verdict = "ok" if value <= GOALS[name] else "OVER GOAL"
        print(f"{name:<22}{value:8.3f}   goal <= {GOALS[name]:<5} {verdict}")
    print(
        f"peak memory, cold run: {args.memory_files} files {peak_small / 1e6:.1f} MB, "
        f"{args.memory_files * 10} files {peak_large / 1e6:.1f} MB "
        f"(ratio {peak_large / peak_small:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
