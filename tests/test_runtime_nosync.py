"""The step path of watch() reads no tensor value: no host-device synchronization, ever.

On CPU the test sees every read of a value to the host and who made it: method calls such as
`.item()`, `.tolist()`, `.numpy()`, `.cpu()` through the interpreter's profile hook (the calling
frame is known exactly), and the implicit ones (`bool(t)`, `float(t)`, `if t:`, f-strings) through a
torch dispatch mode, as the aten ops that copy a scalar out. Any such read made by looplint's own
code while the loop runs fails the test. On CUDA, torch's sync debug mode turns any
synchronization into an error.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.tensorboard import SummaryWriter

import looplint
from looplint.runtime import watch

torch.set_num_threads(1)

TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
LOOPLINT_DIR = os.path.dirname(looplint.__file__) + os.sep
# torch code that a watched script calls and looplint wraps: a read inside it is the script's.
WRAPPED_APIS = tuple(TORCH_DIR + sub for sub in ("utils/tensorboard/", "optim/", "autograd/", "nn/"))
METHOD_READS = {"item", "tolist", "numpy", "cpu", "__array__", "nonzero", "equal"}
aten = torch.ops.aten
SCALAR_READS = {aten._local_scalar_dense.default, aten.is_nonzero.default, aten.equal.default}


class HostReads(TorchDispatchMode):
    """Records the host reads that looplint's code makes while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.by_looplint: list[str] = []

    def __enter__(self):
        self._previous_profile = sys.getprofile()
        sys.setprofile(self._profile)
        return super().__enter__()

    def __exit__(self, *exc):
        sys.setprofile(self._previous_profile)
        return super().__exit__(*exc)

    def _profile(self, frame, event, arg) -> None:
        if event == "c_call" and getattr(arg, "__name__", "") in METHOD_READS:
            self._note(arg.__name__, frame)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in SCALAR_READS:
            # The innermost caller outside torch, unless the read happened inside an API of torch
            # that looplint wraps (a writer reading the tensor it was given is the script's read).
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename.startswith(TORCH_DIR):
                if frame.f_code.co_filename.startswith(WRAPPED_APIS):
                    frame = None
                    break
                frame = frame.f_back
            if frame is not None:
                self._note(str(func), frame)
        return func(*args, **(kwargs or {}))

    def _note(self, what: str, frame) -> None:
        if frame.f_code.co_filename.startswith(LOOPLINT_DIR):
            self.by_looplint.append(f"{what} at {frame.f_code.co_filename}:{frame.f_lineno}")


def train(steps: int, writer: SummaryWriter | None, device: str = "cpu") -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Dropout(0.1), nn.Linear(16, 1)).to(device)
    generator = nn.Linear(4, 8).to(device)
    sgd = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    adamw = torch.optim.AdamW(generator.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(sgd, 2)
    for step in range(steps):
        model.train()
        sgd.zero_grad()
        for _ in range(2):  # accumulation
            x = torch.randn(4, 8, device=device)
            loss = nn.functional.mse_loss(model(x), x.sum(1, keepdim=True)) / 2
            loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        sgd.step()
        scheduler.step()
        model.zero_grad(set_to_none=False)
        adamw.zero_grad()
        model(generator(torch.randn(4, 4, device=device))).mean().backward()
        adamw.step()
        model.eval()
        with torch.no_grad():
            model(torch.randn(4, 8, device=device))
        if writer is not None:
            writer.add_scalar("train/loss", loss.detach(), step)  # a tensor: logged values are copied


def test_the_step_path_reads_no_tensor_value(tmp_path):
    with watch(accumulation_steps=2) as report, SummaryWriter(str(tmp_path)) as writer, HostReads() as reads:
        train(12, writer)
    assert reads.by_looplint == []
    assert report.summary["optimizer_steps"] == 24
    assert "internal_errors" not in report.summary


def test_the_detector_sees_a_read_made_by_looplint():
    from looplint.runtime.health import _LazySeries

    series = _LazySeries()
    series.add(torch.tensor(float("inf")), 1)
    with HostReads() as reads:
        assert list(series.non_finite()) == [(1, float("inf"))]  # reads values: after a run only
    assert reads.by_looplint and "tolist" in reads.by_looplint[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: no GPU on this machine")
def test_no_synchronization_on_cuda():
    errors = []
    with watch() as report:
        train(1, None, device="cuda")  # the first steps start looplint's own sync counter
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")
        try:
            train(12, None, device="cuda")
        except RuntimeError as error:  # a sync in the script itself would land here
            errors.append(str(error))
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    assert errors == []
    assert "internal_errors" not in report.summary  # a sync inside a hook would be recorded here
    assert [f for f in report.findings if f.code == "LL504"] == []
