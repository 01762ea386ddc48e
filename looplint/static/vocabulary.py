"""The names of the training-loop vocabulary: classes, methods, and what a user's name suggests.

Plain strings only, so the text and AST prefilters can use it without importing libcst.
"""

from __future__ import annotations

import re

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


def is_loss_call(name: str | None) -> bool:
    """`criterion(...)`, `loss_fn(...)`, `F.cross_entropy(...)`, `nn.MSELoss()(...)`."""
    if name is None:
        return False
    lowered = name.lower()
    return any(word in lowered for word in _GENERIC_LOSS_CALLS)


def is_scheduler_name(name: str | None) -> bool:
    """A class or factory name that may build a learning-rate scheduler."""
    if name is None:
        return False
    return (
        name in SCHEDULER_CLASSES
        or name.endswith(("LR", "Scheduler"))
        or (name.startswith("get_") and "schedule" in name)
    )
