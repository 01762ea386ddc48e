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
# Plots of a `visdom.Visdom()` object: logs too (a name this common is a log only on that object).
VISDOM_PLOTS = frozenset({"line", "scatter", "bar", "text"})
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


# Top-level packages whose losses, optimizers and schedulers are torch's own kind.
TORCH_ECOSYSTEM = frozenset(
    {
        "torch",
        "torchvision",
        "torchaudio",
        "torchtext",
        "timm",
        "transformers",
        "accelerate",
        "lightning",
        "pytorch_lightning",
        "deepspeed",
        "kornia",
        "monai",
        "segmentation_models_pytorch",
        "pytorch_metric_learning",
        "torchmetrics",
        "apex",
        "bitsandbytes",
        "bnb",
        "mmcv",
        "mmengine",
        "detectron2",
        "ignite",
        "fastai",
        "torch_optimizer",
    }
)
# Frameworks whose training loops are not torch's: no backward() accumulation, other losses.
OTHER_FRAMEWORKS = frozenset({"tensorflow", "keras", "tf_keras", "jax", "flax", "optax", "mxnet", "paddle"})
# torch.nn.functional losses, and torchvision's.
FUNCTIONAL_LOSSES = frozenset(
    {
        "cross_entropy",
        "nll_loss",
        "mse_loss",
        "l1_loss",
        "smooth_l1_loss",
        "huber_loss",
        "binary_cross_entropy",
        "binary_cross_entropy_with_logits",
        "kl_div",
        "ctc_loss",
        "poisson_nll_loss",
        "gaussian_nll_loss",
        "margin_ranking_loss",
        "hinge_embedding_loss",
        "multilabel_margin_loss",
        "soft_margin_loss",
        "multilabel_soft_margin_loss",
        "cosine_embedding_loss",
        "multi_margin_loss",
        "triplet_margin_loss",
        "triplet_margin_with_distance_loss",
        "sigmoid_focal_loss",
        "generalized_box_iou_loss",
        "complete_box_iou_loss",
        "distance_box_iou_loss",
    }
)


_LOSS_CLASS = re.compile(r"(Loss|CrossEntropy|Criterion)([123]d)?$")


def is_loss_class(name: str) -> bool:
    """`CrossEntropyLoss`, `BCEWithLogitsLoss`, timm's `LabelSmoothingCrossEntropy`, the old
    `NLLLoss2d`."""
    return _LOSS_CLASS.search(name) is not None


def is_functional_loss(path: str) -> bool:
    """`torch.nn.functional.cross_entropy`, `torchvision.ops.sigmoid_focal_loss`."""
    last = path.rsplit(".", 1)[-1]
    return last in FUNCTIONAL_LOSSES or (last.endswith("_loss") and not last.startswith("_"))
