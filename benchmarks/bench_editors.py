"""How fast the editor and notebook adapters answer.

    python benchmarks/bench_editors.py              # both
    python benchmarks/bench_editors.py --edits 40   # more edits for the server

1. `looplint server`: a 500-line training script is opened over stdio by pygls's client; each
   edit is one keystroke-sized change, and the time from sending it to receiving the diagnostics
   of that version is measured (goal: 150 ms). The baseline is `lint_text` of the same text in
   this process: the ratio says what the protocol, the pause and the scheduling add.
2. `%load_ext looplint`: in an in-process IPython shell that already ran a training notebook,
   the time of running a cell without a training loop, with the extension loaded and without
   (goal: under 50 ms added), and of a cell with a training loop for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_lint import MODEL_CODE

SERVER_GOAL_MS, CELL_GOAL_MS = 150.0, 50.0

LOOP = """

def train(model, loader, optimizer, criterion, epochs):
    for epoch in range(epochs):
        running_loss = 0.0
        for inputs, targets in loader:
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
        print(epoch, running_loss / len(loader))
"""


def script_of(lines: int) -> str:
    """A training script of about `lines` lines: model code, then a loop missing zero_grad()."""
    parts, index = [], 0
    while sum(part.count("\n") for part in parts) < lines - LOOP.count("\n"):
        parts.append(MODEL_CODE.replace("{n}", str(index)))
        index += 1
    text = "".join(parts)
    keep = lines - LOOP.count("\n")
    body = "\n".join(text.splitlines()[:keep])
    # Cut at the last top-level statement boundary so the file still parses.
    cut = body.rfind("\n\n\n")
    return body[:cut] + "\n" + LOOP


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# -- 1. the language server -------------------------------------------------------------------------


async def server_latencies(text: str, path: Path, edits: int) -> list[float]:
    from lsprotocol import types
    from pygls.lsp.client import LanguageClient

    client = LanguageClient("bench", "1")
    arrived: dict[int, float] = {}
    waiting: dict[int, asyncio.Future] = {}

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def published(params: types.PublishDiagnosticsParams) -> None:
        if params.version is not None:
            arrived[params.version] = time.perf_counter()
            future = waiting.get(params.version)
            if future is not None and not future.done():
                future.set_result(len(params.diagnostics))

    await client.start_io(sys.executable, "-m", "looplint", "server")
    await client.initialize_async(
        types.InitializeParams(capabilities=types.ClientCapabilities(), root_uri=path.parent.as_uri())
    )
    client.initialized(types.InitializedParams())
    uri = path.as_uri()
    loop = asyncio.get_running_loop()
    waiting[1] = loop.create_future()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, text))
    )
    await asyncio.wait_for(waiting[1], 60)

    line = text.count("\n") - 1  # the last line of the loop: type a comment there, one key each
    latencies = []
    for version in range(2, edits + 2):
        waiting[version] = loop.create_future()
        change = types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(line, 0), types.Position(line, 0)), text="#"
        )
        sent = time.perf_counter()
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(uri=uri, version=version), [change]
            )
        )
        findings = await asyncio.wait_for(waiting[version], 60)
        assert findings >= 1, "the loop's missing zero_grad() must still be reported"
        latencies.append((arrived[version] - sent) * 1000)
        await asyncio.sleep(0.25)  # a person's pause between edits: each edit is measured alone
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return latencies


def bench_server(edits: int) -> None:
    from looplint.engine import lint_text
    from looplint.engine.config import Config

    text = script_of(500)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "train.py"
        path.write_text(text)
        config = Config(root=Path(directory))
        lint_text(text, path, config)  # warm imports
        engine, engine_cpu = [], []
        for _ in range(edits):
            start, start_cpu = time.perf_counter(), time.process_time()
            lint_text(text, path, config)
            engine.append((time.perf_counter() - start) * 1000)
            engine_cpu.append((time.process_time() - start_cpu) * 1000)
        latencies = asyncio.run(server_latencies(text, path, edits))
    median, p90 = statistics.median(latencies), percentile(latencies, 0.9)
    base = statistics.median(engine)
    print(f"server: {text.count(chr(10))}-line file, {edits} edits, change -> diagnostics")
    print(
        f"  engine alone (lint_text)   median {base:6.1f} ms   ({statistics.median(engine_cpu):.1f} ms CPU)"
    )
    print(
        f"  server over stdio          median {median:6.1f} ms   p90 {p90:6.1f} ms   max {max(latencies):6.1f} ms"
    )
    print(f"  server / engine            {median / base:6.2f}")
    verdict = "ok" if p90 <= SERVER_GOAL_MS else "MISSED"
    print(f"  p90 goal <= {SERVER_GOAL_MS:.0f} ms            {verdict}")


# -- 2. the IPython extension -------------------------------------------------------------------------


SETUP_CELL = """\
model = nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
loader = [(torch.randn(16, 8), torch.randn(16, 1)) for _ in range(4)]
"""
TRAINING_CELL = """\
for x, y in loader:
    optimizer.zero_grad()
    loss = (model(x) - y).pow(2).mean()
    loss.backward()
    optimizer.step()
"""
NOTEBOOK = [
    "import torch\nfrom torch import nn\n",
    MODEL_CODE.replace("{n}", "0").replace("import numpy as np\n", ""),
    SETUP_CELL,
    TRAINING_CELL,
]
# Words of training code, but no backward pass, step, writer call or loss sum: not analyzed.
WORDY_CELL = "lr = 3e-4\nsteps = 100\nloss_history = []\nprint(f'{lr=} {steps=}')\n"
PLAIN_CELL = "values = [i * i for i in range(100)]\ntotal = sum(values)\nmean = total / len(values)\n"


def time_cells(shell, cell: str, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        shell.run_cell(cell, store_history=True)
        times.append((time.perf_counter() - start) * 1000)
    return times


def bench_cells(repeat: int) -> None:
    import io
    from contextlib import redirect_stdout

    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    with redirect_stdout(io.StringIO()):
        for cell in NOTEBOOK:
            shell.run_cell(cell, store_history=True)
        time_cells(shell, PLAIN_CELL, 3)
        without = time_cells(shell, PLAIN_CELL, repeat)
        wordy_without = time_cells(shell, WORDY_CELL, repeat)
        training_without = time_cells(shell, TRAINING_CELL, repeat)
        shell.run_cell("%load_ext looplint")
        time_cells(shell, PLAIN_CELL, 3)
        with_ext = time_cells(shell, PLAIN_CELL, repeat)
        wordy_with = time_cells(shell, WORDY_CELL, repeat)
        training_with = time_cells(shell, TRAINING_CELL, repeat)
    context = sum(cell.count("\n") for cell in NOTEBOOK)
    added = statistics.median(with_ext) - statistics.median(without)
    training_added = statistics.median(training_with) - statistics.median(training_without)
    print(f"jupyter: a notebook of {len(NOTEBOOK)} cells ({context} lines) ran before; {repeat} runs each")
    print(
        f"  cell without a loop        {statistics.median(without):6.2f} ms -> {statistics.median(with_ext):6.2f} ms"
    )
    print(
        f"  added per cell             {added:6.2f} ms   goal < {CELL_GOAL_MS:.0f} ms   "
        f"{'ok' if added < CELL_GOAL_MS else 'MISSED'}"
    )
    wordy_added = statistics.median(wordy_with) - statistics.median(wordy_without)
    print(
        f"  cell with training words   +{wordy_added:.2f} ms   goal < {CELL_GOAL_MS:.0f} ms   "
        f"{'ok' if wordy_added < CELL_GOAL_MS else 'MISSED'}"
    )
    print(
        f"  training cell (analyzed)   {statistics.median(training_without):6.2f} ms -> "
        f"{statistics.median(training_with):6.2f} ms   (+{training_added:.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--edits", type=int, default=20, help="edits sent to the server")
    parser.add_argument("--cells", type=int, default=20, help="runs of each notebook cell")
    parser.add_argument("--only", choices=("server", "jupyter"))
    args = parser.parse_args()
    if args.only in (None, "server"):
        bench_server(args.edits)
    if args.only in (None, "jupyter"):
        bench_cells(args.cells)


if __name__ == "__main__":
    main()
