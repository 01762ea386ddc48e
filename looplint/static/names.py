"""What a name or a call means in a training loop: optimizer, scheduler, writer, loss, logger.

Everything here is a pure function of syntax (dotted names and call shapes), so the model builder
stays one pass and rules never guess on their own.
"""

from __future__ import annotations

import re

import libcst as cst

OPTIMIZER_CLASSES = frozenset(
    {
        "SGD",
        "Adam",
        "AdamW",
        "Adamax",
        "Adagrad",
        "Adadelta",
        "RMSprop",
        "Rprop",
        "LBFGS",
        "NAdam",
        "RAdam",
        "SparseAdam",
        "ASGD",
        "Adafactor",
        "Lion",
        "LAMB",
        "Lamb",
        "FusedAdam",
        "FusedLAMB",
        "DeepSpeedCPUAdam",
        "AdamW8bit",
        "Adam8bit",
        "Muon",
        "ZeroRedundancyOptimizer",
    }
)
SCHEDULER_CLASSES = frozenset(
    {
        "LambdaLR",
        "MultiplicativeLR",
        "StepLR",
        "MultiStepLR",
        "ConstantLR",
        "LinearLR",
        "ExponentialLR",
        "PolynomialLR",
        "CosineAnnealingLR",
        "ChainedScheduler",
        "SequentialLR",
        "ReduceLROnPlateau",
        "CyclicLR",
        "OneCycleLR",
        "CosineAnnealingWarmRestarts",
    }
)
WRITER_CLASSES = frozenset({"SummaryWriter", "FileWriter"})
# Methods that put one value into a TensorBoard event file.
WRITER_METHODS = frozenset(
    {
        "add_scalar",
        "add_scalars",
        "add_image",
        "add_images",
        "add_image_with_boxes",
        "add_histogram",
        "add_histogram_raw",
        "add_text",
        "add_figure",
        "add_graph",
        "add_hparams",
        "add_pr_curve",
        "add_embedding",
        "add_audio",
        "add_video",
        "add_mesh",
        "add_custom_scalars",
    }
)
IMAGE_METHODS = frozenset({"add_image", "add_images"})
# Calls whose arguments end up in front of a human: a logged number must be meaningful.
LOG_METHODS = frozenset(
    {
        "add_scalar",
        "add_scalars",
        "log",
        "log_metric",
        "log_metrics",
        "log_dict",
        "info",
        "debug",
        "warning",
        "warn",
        "error",
        "critical",
        "set_postfix",
        "set_postfix_str",
        "set_description",
        "write",
    }
)
NO_GRAD_CONTEXTS = frozenset({"no_grad", "inference_mode"})
# Free functions that clear gradients: `zero_grad(model_params)` helpers, paddle's clear_grad.
CLEAR_FUNCTIONS = frozenset({"zero_grad", "zero_grads", "zero_gradients", "clear_grad", "clear_grads"})

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_GENERIC_LOSS_CALLS = ("loss", "criterion", "entropy", "nll", "divergence")


def dotted(node: cst.BaseExpression | None) -> str | None:
    """`self.opt` -> 'self.opt', `opts[0]` -> 'opts[]'; None for anything that is not a plain path."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted(node.value)
        return None if base is None else f"{base}.{node.attr.value}"
    if isinstance(node, cst.Subscript):
        base = dotted(node.value)
        return None if base is None else f"{base}[]"
    return None


def callee_name(call: cst.Call) -> str | None:
    """The last name of what is called: `torch.optim.SGD(...)` -> 'SGD', `f(...)` -> 'f'."""
    func = call.func
    if isinstance(func, cst.Name):
        return func.value
    if isinstance(func, cst.Attribute):
        return func.attr.value
    return None


def _tokens(name: str) -> list[str]:
    last = name.rsplit(".", 1)[-1].replace("[]", "")
    return [t.lower() for part in last.split("_") for t in _CAMEL.split(part) if t]


def looks_like_optimizer(name: str) -> bool:
    last = name.rsplit(".", 1)[-1].lower()
    if "sched" in last:
        return False
    return "optim" in last or "opt" in _tokens(name) or "opts" in _tokens(name)


def looks_like_scheduler(name: str) -> bool:
    return "sched" in name.rsplit(".", 1)[-1].lower()


def looks_like_writer(name: str) -> bool:
    return "writer" in name.rsplit(".", 1)[-1].lower()


def looks_like_scaler(name: str) -> bool:
    return "scaler" in name.rsplit(".", 1)[-1].lower()


def looks_like_loss(name: str) -> bool:
    last = name.rsplit(".", 1)[-1].lower()
    return "loss" in last


def is_optimizer_class(name: str | None) -> bool:
    return name is not None and (name in OPTIMIZER_CLASSES or name.endswith("Optimizer"))


def is_scheduler_class(name: str | None, call: cst.Call | None = None) -> bool:
    """A learning-rate scheduler: a torch class, or a `...LR`/`...Scheduler`/`get_..._schedule...`
    factory whose first argument is an optimizer (a `GradientAccumulationScheduler` callback is
    not one)."""
    if name is None:
        return False
    if name in SCHEDULER_CLASSES:
        return True
    if not (name.endswith(("LR", "Scheduler")) or (name.startswith("get_") and "schedule" in name)):
        return False
    if call is None:
        return True
    first = next((a.value for a in call.args if a.keyword is None and not a.star), None)
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "optimizer":
            first = arg.value
    target = dotted(first) if first is not None else None
    return target is not None and looks_like_optimizer(target)


def is_loss_call(name: str | None) -> bool:
    """`criterion(...)`, `loss_fn(...)`, `F.cross_entropy(...)`, `nn.MSELoss()(...)`."""
    if name is None:
        return False
    lowered = name.lower()
    return any(word in lowered for word in _GENERIC_LOSS_CALLS)


def is_no_grad_decorator(decorator: cst.BaseExpression) -> bool:
    """`@torch.no_grad()`, `@torch.inference_mode()`, wrappers such as `@smart_inference_mode()`."""
    target = decorator.func if isinstance(decorator, cst.Call) else decorator
    last = (dotted(target) or "").rsplit(".", 1)[-1]
    return "no_grad" in last or "inference_mode" in last


def is_log_call(call: cst.Call) -> bool:
    func = call.func
    if isinstance(func, cst.Name):
        return func.value in ("print", "progress_bar", "tprint")
    if isinstance(func, cst.Attribute):
        return func.attr.value in LOG_METHODS or func.attr.value == "print"
    return False
