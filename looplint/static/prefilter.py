"""Cheap tests that keep files without training code away from the CST parser.

Both are derived from what the rules start from, so they never hide a finding:
LL1xx need a backward pass; LL2xx a `+=`-style sum of losses (or a training step, for LL204);
LL3xx a writer's `add_*` method; LL401 a `step()`; LL402 parameter groups; LL403 a scheduler.
"""

from __future__ import annotations

import ast
import unicodedata

from looplint.static import vocabulary

# A file whose text contains none of these (ignoring case) cannot produce a finding but LL000.
MARKERS: tuple[str, ...] = (
    "backward",
    "loss",
    "criterion",
    "entropy",
    "nll",
    "divergence",
    "step",
    "writer",
    "add_",
    "param",
    "lr",
    "schedul",
)


def might_have_findings(source: str) -> bool:
    """Text test, about 1% of a parse. Python NFKC-normalizes identifiers (`ｓｔｅｐ` is `step`)."""
    if not source.isascii():
        source = unicodedata.normalize("NFKC", source)
    text = source.lower()
    return any(marker in text for marker in MARKERS)


def needs_analysis(tree: ast.Module) -> bool:
    """Syntax test on CPython's tree (already built for the syntax check), about 5% of a parse."""
    accumulates = lossy = False
    for node in ast.walk(tree):
        kind = type(node)
        if kind is ast.Attribute:
            attribute = node.attr
            if attribute in ("backward", "manual_backward", "step", "add_param_group"):
                return True
            if attribute in vocabulary.WRITER_METHODS:
                return True
            if "loss" in attribute.lower():
                lossy = True
        elif kind is ast.Name:
            if "loss" in node.id.lower():
                lossy = True
        elif kind is ast.Call:
            callee = _callee(node)
            if vocabulary.is_scheduler_name(callee):
                return True
            if vocabulary.is_loss_call(callee):
                lossy = True
        elif kind is ast.AugAssign:
            accumulates = accumulates or isinstance(node.op, ast.Add)
        elif kind is ast.Assign:
            value = node.value
            if isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add):
                accumulates = True
        elif kind is ast.Dict and any(
            isinstance(key, ast.Constant) and key.value == "params" for key in node.keys
        ):
            return True
        if accumulates and lossy:
            return True
    return False


def _callee(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def calls_project_code(tree: ast.Module, path: str, project) -> bool:
    """A loop that calls a function of another module of the project (`for batch in loader:
    train_step(...)` with `train_step` imported from `engine.py`) can hold a finding that the
    text of this file does not show."""
    if project is None:
        return False
    imports: list[ast.Import | ast.ImportFrom] = []
    assigns: list[ast.Assign] = []
    loops: list[ast.AST] = []
    for node in ast.walk(tree):
        kind = type(node)
        if kind is ast.Import or kind is ast.ImportFrom:
            imports.append(node)
        elif kind is ast.Assign:
            assigns.append(node)
        elif kind is ast.For or kind is ast.While or kind is ast.AsyncFor:
            loops.append(node)
    if not loops:
        return False
    imported: set[str] = set()
    for node in imports:
        if isinstance(node, ast.ImportFrom):
            if project.find_module(path, node.module or "", node.level) is not None:
                imported.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        else:
            for alias in node.names:
                if project.find_module(path, alias.name, 0) is not None:
                    imported.add((alias.asname or alias.name).split(".")[0])
    if not imported:
        return False
    for node in assigns:  # objects built from them: `scaler = NativeScaler()`
        if _root_name(node.value) in imported:
            imported.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return any(
        isinstance(inner, ast.Call) and _root_name(inner.func) in imported
        for loop in loops
        for inner in ast.walk(loop)
    )


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


# What a module's functions must contain to matter to a caller: something they do to the
# objects they are given (a backward pass, a step, a clear, a write, a close, a clip, a mode
# switch, a freeze), a loss or an optimizer they build or return, or a log of a value.
SUMMARY_MARKERS = (
    "backward",
    "zero_grad",
    ".step(",
    ".add_",
    ".close(",
    "clip_grad",
    ".train(",
    ".eval(",
    "requires_grad",
    "optim",
    "sched",
    "loss",
    "criterion",
    "writer",
    "print(",
    ".log(",
    "desc",
    "postfix",
    "nn.module",
)


def worth_summarizing(source: str) -> bool:
    """Can a module's functions do anything the rules follow? (Else: nothing to summarize.)"""
    text = source.lower()
    return any(marker in text for marker in SUMMARY_MARKERS)
