"""Mutation test over real training loops: put one classic bug into a real loop that is clean for
its rule, lint the project, and check that looplint reports the bug where it is.

    python benchmarks/mutation_recall.py --corpus /work/corpus [--split tune|held-out|all]
                                         [--sample 40] [--seed 0] [--json out.json]

Mutations, each applied alone to a temporary copy of the repository (the corpus is never touched):

- clear:    delete a gradient clear (`optimizer.zero_grad()`, `model.zero_grad()`, `set_to_none`
            forms) from a loop that runs backward() and the optimizer's step()   -> LL101 at the step
- reset:    move a loss accumulator's reset (`running_loss = 0.0`, ...) one loop level out
                                                                                  -> LL201 at the reset
- division: drop the division of a logged average (`add_scalar(tag, total / n)`, `print(... / 2000)`,
            `avg = total / len(loader)` with avg logged or returned to a caller that logs it,
            `total /= n` before total is logged)                           -> LL202 at the logging
- item:     drop `.item()` / `.detach()` / `float()` from a loss that was backpropagated and is
            summed across iterations (also through a variable or a helper's return)
                                                                                  -> LL203 at the +=

Each mutant has a shape: same-function (everything in one function), helper (the clear, reset,
division, logging or backward sits in another function or method of the same file) or
cross-module (in another module of the repository, found through its imports). Candidates are
found by a deliberately simple reading of the code (ast, names and imports), independent of
looplint's model; where a mutation would not certainly be a bug, the loop is left out. A loop
that looplint already reports for the rule is skipped ("not clean"). Every mutant must parse.

Notebooks are linted as one code cell holding their joined code cells (IPython lines blanked),
in the original and the mutant alike; missed mutants name the original cell and line.

Each mutant is linted in one looplint run over the mutated file, the files holding the other
pieces of the loop, and every repository module they import (`--whole-project`: the whole
repository). Caught: the expected code is reported at the expected line and was not there before.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import libcst
from corpus_tools import SPLITS, Repository, looplint_version, run_looplint, select

KINDS = {"clear": "LL101", "reset": "LL201", "division": "LL202", "item": "LL203"}
SHAPES = ("same-function", "helper", "cross-module")
LOOPS = (ast.For, ast.AsyncFor, ast.While)
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
HELPER_DEPTH = 3  # how many calls deep a loop's helpers are followed
LOG_METHODS = {
    "add_scalar",
    "add_scalars",
    "log",
    "info",
    "log_metrics",
    "set_postfix",
    "set_description",
    "write",
}
# Method names too common to tell, from the name alone, which class's method a call runs.
COMMON_METHODS = {
    "forward",
    "step",
    "update",
    "train",
    "eval",
    "add",
    "append",
    "__call__",
    "run",
    "fit",
    "log",
}
MATH_MODULES = {"np", "numpy", "math", "torch", "F", "jnp", "tf", "scipy"}  # their .log() is a logarithm
COPIED = ("*.py", "*.ipynb", ".gitignore", "pyproject.toml")


# ---------------------------------------------------------------------------------------------
# Source files and the project


@dataclass(eq=False)
class SourceFile:
    """One Python file, or one notebook's joined code cells."""

    rel: str  # path relative to the repository
    text: str
    tree: ast.Module
    cell_lines: list[tuple[int, int]] | None = None  # notebook: joined line -> (cell, line in cell)
    nodes: list[ast.AST] = field(default_factory=list)  # every node, in ast.walk order
    parents: dict[ast.AST, ast.AST] = field(default_factory=dict)
    line_starts: list[int] = field(default_factory=list)
    functions: dict[str, ast.FunctionDef] = field(default_factory=dict)  # top level
    methods: dict[str, list[ast.FunctionDef]] = field(default_factory=dict)  # by name, any class
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # name -> (file, symbol)
    star_imports: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.nodes = list(ast.walk(self.tree))
        for node in self.nodes:
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        offset = 0
        for line in self.text.splitlines(keepends=True):
            self.line_starts.append(offset)
            offset += len(line)
        self.line_starts.append(offset)
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions[node.name] = node
        for node in self.nodes:
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        self.methods.setdefault(item.name, []).append(item)

    def where(self, line: int) -> str:
        """A human-readable place: `path:line`, or `path:cell N:line` in a notebook."""
        if self.cell_lines and 0 < line <= len(self.cell_lines):
            cell, in_cell = self.cell_lines[line - 1]
            return f"{self.rel}:cell {cell}:{in_cell}"
        return f"{self.rel}:{line}"

    def offset(self, line: int, byte_column: int) -> int:
        """Character offset in `text` of an ast position (ast columns count UTF-8 bytes)."""
        start = self.line_starts[line - 1]
        line_text = self.text[start : self.line_starts[line]]
        return start + len(line_text.encode("utf-8")[:byte_column].decode("utf-8", errors="replace"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)

    def segment(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.text[start:end]

    def function_of(self, node: ast.AST) -> ast.AST:
        """The function or method around `node`, or the module."""
        node = self.parents.get(node)
        while node is not None and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node = self.parents.get(node)
        return node if node is not None else self.tree

    def loop_of(self, node: ast.AST) -> ast.AST | None:
        """The innermost loop around `node` within its function."""
        node = self.parents.get(node)
        while node is not None and not isinstance(node, SCOPES):
            if isinstance(node, LOOPS):
                return node
            node = self.parents.get(node)
        return None

    def unit(self, node: ast.AST) -> tuple[int, int]:
        """Lines of what a finding about `node` can sit in: its function, else its top-level
        statement."""
        function = self.function_of(node)
        if function is self.tree:
            function = node
            while self.parents.get(function) is not self.tree and function in self.parents:
                function = self.parents[function]
        return function.lineno, function.end_lineno

    def is_nested_function(self, function: ast.AST) -> bool:
        return function is not self.tree and self.function_of(function) is not self.tree


def text_of(node: ast.AST) -> str:
    return ast.unparse(node)


def body_walk(node: ast.AST) -> Iterator[ast.AST]:
    """`node` and everything inside it, but not inside nested functions, lambdas or classes."""
    yield node
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, SCOPES):
            yield from body_walk(child)


def join_cells(notebook_text: str) -> tuple[str, list[tuple[int, int]]] | None:
    """A notebook's code cells joined into one source, IPython lines blanked, with where each
    line came from; None when it is not a notebook."""
    try:
        notebook = json.loads(notebook_text)
        cells = notebook["cells"]
        metadata = notebook.get("metadata", {})
        language = (metadata.get("kernelspec") or {}).get("language") or (
            metadata.get("language_info") or {}
        ).get("name")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if language not in (None, "python"):
        return None
    lines: list[str] = []
    origin: list[tuple[int, int]] = []
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        cell_lines = source.splitlines()
        cell_magic = bool(cell_lines) and cell_lines[0].lstrip().startswith("%%")
        for index, line in enumerate(cell_lines, start=1):
            stripped = line.strip()
            ipython = stripped.startswith(("%", "!")) or stripped.endswith("?")
            if cell_magic or ipython or "= !" in line or "= %" in line:
                line = ""
            lines.append(line)
            origin.append((number, index))
    return "".join(line + "\n" for line in lines), origin


def flat_notebook(source: str, notebook_text: str) -> str:
    """A notebook holding `source` as its one code cell, with the original's metadata."""
    metadata = json.loads(notebook_text).get("metadata", {})
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
    return json.dumps({"cells": [cell], "metadata": metadata, "nbformat": 4, "nbformat_minor": 5})


def parses(source: str) -> bool:
    try:
        ast.parse(source)
        libcst.parse_module(source)
    except (SyntaxError, ValueError, RecursionError, libcst.ParserSyntaxError):
        return False
    return True


class Project:
    """The parsable files of one repository, their imports, and who calls which function."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, SourceFile] = {}
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if (
                path.suffix not in (".py", ".ipynb")
                or rel.startswith(".")
                or "/." in rel
                or not path.is_file()
            ):
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            cell_lines = None
            if path.suffix == ".ipynb":
                joined = join_cells(text)
                if joined is None:
                    continue
                text, cell_lines = joined
            try:
                tree = ast.parse(text)
            except (SyntaxError, ValueError, RecursionError):
                continue
            self.files[rel] = SourceFile(rel, text, tree, cell_lines)
        self.methods: dict[str, list[tuple[SourceFile, ast.FunctionDef]]] = defaultdict(list)
        for source in self.files.values():
            self._read_imports(source)
            for name, methods in source.methods.items():
                self.methods[name].extend((source, method) for method in methods)
        self._callers: dict[ast.AST, list[tuple[SourceFile, ast.Call]]] | None = None
        self.accumulators: dict[ast.AST, dict[str, str]] = {}  # memo of accumulators()

    # -- imports ------------------------------------------------------------------------------

    def _module_file(self, importer: str, dotted: str, level: int) -> str | None:
        """The repository file a module name points to, seen from the file `importer`: relative
        imports from its package, absolute ones from its directory or any directory above it."""
        parts = [p for p in dotted.split(".") if p]
        directory = Path(importer).parent
        if level:
            base = directory
            for _ in range(level - 1):
                base = base.parent
            bases = [base]
        else:
            bases = [directory, *directory.parents]
        for base in bases:
            stem = base.joinpath(*parts) if parts else base
            for candidate in (f"{stem.as_posix()}.py", f"{stem.as_posix()}/__init__.py"):
                candidate = candidate.removeprefix("./")
                if candidate in self.files and candidate != importer:
                    return candidate
        return None

    def _read_imports(self, source: SourceFile) -> None:
        for node in source.nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = self._module_file(source.rel, alias.name, 0)
                    if target:
                        source.imports[alias.asname or alias.name] = (target, None)
            elif isinstance(node, ast.ImportFrom):
                module = self._module_file(source.rel, node.module or "", node.level)
                for alias in node.names:
                    prefix = f"{node.module}." if node.module else ""
                    submodule = self._module_file(source.rel, prefix + alias.name, node.level)
                    if alias.name == "*":
                        if module:
                            source.star_imports.append(module)
                    elif submodule:
                        source.imports[alias.asname or alias.name] = (submodule, None)
                    elif module:
                        source.imports[alias.asname or alias.name] = (module, alias.name)

    def import_closure(self, rels: set[str]) -> set[str]:
        """`rels` and every repository module they import, directly or not."""
        seen, todo = set(rels), list(rels)
        while todo:
            source = self.files[todo.pop()]
            for target in [t for t, _ in source.imports.values()] + source.star_imports:
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        return seen

    # -- calls --------------------------------------------------------------------------------

    def resolve(self, source: SourceFile, call: ast.Call) -> tuple[SourceFile, ast.FunctionDef] | None:
        """The repository function or method `call` runs, when the names say so unambiguously."""
        func = call.func
        if isinstance(func, ast.Name):
            if func.id in source.functions:
                return source, source.functions[func.id]
            if func.id in source.imports:
                target, symbol = source.imports[func.id]
                module = self.files[target]
                if symbol and symbol in module.functions:
                    return module, module.functions[symbol]
            for target in source.star_imports:
                if func.id in self.files[target].functions:
                    return self.files[target], self.files[target].functions[func.id]
            return None
        if not isinstance(func, ast.Attribute):
            return None
        receiver = text_of(func.value)
        if receiver == "self":
            methods = source.methods.get(func.attr, [])
            return (source, methods[0]) if len(methods) == 1 else None
        if receiver in source.imports and source.imports[receiver][1] is None:
            module = self.files[source.imports[receiver][0]]
            if func.attr in module.functions:
                return module, module.functions[func.attr]
        return None

    def unique_method(self, call: ast.Call) -> tuple[SourceFile, ast.FunctionDef] | None:
        """`obj.m(...)` when exactly one class of the repository defines a method `m` (not a
        common name): the object was most likely made from that class."""
        func = call.func
        if not isinstance(func, ast.Attribute) or func.attr in COMMON_METHODS:
            return None
        found = self.methods.get(func.attr, [])
        return found[0] if len(found) == 1 else None

    def callers(self, function: ast.AST) -> list[tuple[SourceFile, ast.Call]]:
        """Every call in the repository that resolves to `function`."""
        if self._callers is None:
            self._callers = defaultdict(list)
            for source in self.files.values():
                for node in source.nodes:
                    if isinstance(node, ast.Call):
                        target = self.resolve(source, node)
                        if target:
                            self._callers[target[1]].append((source, node))
        return self._callers.get(function, [])

    def reach(self, source: SourceFile, root: ast.AST) -> list[tuple[SourceFile, ast.AST, str]]:
        """Every node that runs as part of `root` (a loop, or a function body): its own code
        and, HELPER_DEPTH calls deep, the repository helpers it calls, each with its shape."""
        found: list[tuple[SourceFile, ast.AST, str]] = []
        visited: set[ast.AST] = set()

        def visit(where: SourceFile, node: ast.AST, shape: str, depth: int) -> None:
            for inner in body_walk(node):
                found.append((where, inner, shape))
                if isinstance(inner, ast.Call) and depth < HELPER_DEPTH:
                    target = self.resolve(where, inner)
                    if target and target[1] not in visited:
                        visited.add(target[1])
                        next_shape = (
                            "cross-module" if target[0] is not source or shape == "cross-module" else "helper"
                        )
                        for statement in target[1].body:
                            visit(target[0], statement, next_shape, depth + 1)

        visit(source, root, "same-function", 0)
        return found


def widest(shapes: list[str]) -> str:
    return max(shapes, key=SHAPES.index)


# ---------------------------------------------------------------------------------------------
# What the code does: backward passes, optimizer steps, clears, losses, logging


def backward_tensor(call: ast.Call) -> str | None:
    """The text of the tensor a backward call differentiates (`loss` in `loss.backward()`,
    `scaler.scale(loss).backward()`, `(loss / k).backward()`, `accelerator.backward(loss)`)."""
    func = call.func
    if not isinstance(func, ast.Attribute) or func.attr not in ("backward", "manual_backward"):
        return None
    receiver = func.value
    if call.args and any(word in text_of(receiver) for word in ("accelerator", "fabric", "autograd", "self")):
        receiver = call.args[0]
    scaled = isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Attribute) and receiver.args
    if scaled and receiver.func.attr == "scale":
        receiver = receiver.args[0]
    if isinstance(receiver, ast.BinOp):
        receiver = receiver.left
    return text_of(receiver)


def stepped_optimizer(call: ast.Call) -> str | None:
    """The optimizer a `.step()` call steps: `opt` in `opt.step()` and `scaler.step(opt)`."""
    func = call.func
    if not isinstance(func, ast.Attribute) or func.attr != "step":
        return None
    receiver = text_of(func.value)
    if "scaler" in receiver.lower() and call.args:
        return text_of(call.args[0])
    lowered = receiver.lower()
    if "sched" in lowered or "env" in lowered or "lr" in lowered:
        return None
    return receiver


def is_optimizer(name: str) -> bool:
    return "opt" in name.lower()


def cleared(node: ast.AST) -> str | None:
    """What a gradient-clearing statement clears: `opt` in `opt.zero_grad(...)`; "?" for
    `p.grad = None` and `p.grad.zero_()` (whose owner cannot be told)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "zero_grad":
            return text_of(node.func.value)
        if node.func.attr in ("zero_", "detach_") and ".grad" in text_of(node.func.value):
            return "?"
    if isinstance(node, ast.Assign) and any(text_of(t).endswith(".grad") for t in node.targets):
        return "?"
    return None


def is_zero(node: ast.AST) -> bool:
    """`0`, `0.0`, `torch.tensor(0.)`, `torch.zeros(...)`, also moved with `.to(device)`."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("to", "cuda", "float")
    ):
        return is_zero(node.func.value)
    if isinstance(node, ast.Constant):
        return type(node.value) in (int, float) and node.value == 0
    if isinstance(node, ast.Call) and text_of(node.func) in ("torch.zeros", "torch.zeros_like"):
        return True
    if isinstance(node, ast.Call) and text_of(node.func) == "torch.tensor":
        return len(node.args) == 1 and is_zero(node.args[0])
    return False


def identifier(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def accumulator_target(node: ast.AST) -> str | None:
    """`x` or `self.x` as text, when `node` is a plain name or an attribute of self."""
    if isinstance(node, ast.Name) or (
        isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
    ):
        return text_of(node)
    return None


def value_parts(expr: ast.AST) -> Iterator[ast.AST]:
    """The parts of an expression its value is made of: not the arguments of calls (a loss passed
    to a helper is not what the helper returns), except those of float/abs/sum."""
    yield expr
    if isinstance(expr, ast.Call):
        yield from value_parts(expr.func)
        if text_of(expr.func) in ("float", "abs", "sum"):
            for argument in expr.args:
                yield from value_parts(argument)
    elif isinstance(expr, (ast.Attribute, ast.Subscript)):
        yield from value_parts(expr.value)
    elif isinstance(expr, ast.BinOp):
        yield from value_parts(expr.left)
        yield from value_parts(expr.right)
    elif isinstance(expr, ast.UnaryOp):
        yield from value_parts(expr.operand)


def loss_shape(project: Project, source: SourceFile, expr: ast.AST, depth: int = 0) -> str | None:
    """Whether `expr` is a loss value, and the shape of where that is seen: "same-function" when
    its own text says so (a name with "loss", a criterion call, a tensor its function
    backpropagates), "helper"/"cross-module" when it is what a repository helper returns and the
    helper's return is a loss."""
    backpropagated = backward_tensors(source, source.function_of(expr))
    for part in value_parts(expr):
        core = item_core(part) or part
        if "loss" in identifier(part).lower() or text_of(core) in backpropagated:
            return "same-function"
        if isinstance(part, ast.Call):
            callee = text_of(part.func).lower()
            if "loss" in callee or "criterion" in callee:
                return "same-function"
            target = project.resolve(source, part) if depth < HELPER_DEPTH else None
            if target:
                for node in body_walk(target[1]):
                    if isinstance(node, ast.Return) and node.value is not None:
                        inner = loss_shape(project, target[0], node.value, depth + 1)
                        if inner:
                            outer = "cross-module" if target[0] is not source else "helper"
                            return widest([outer, inner])
    return None


@dataclass(frozen=True)
class Accumulation:
    """`total += value` or `total = total + value`."""

    node: ast.stmt
    target: ast.AST
    value: ast.AST


def accumulations(source: SourceFile, root: ast.AST) -> dict[str, list[Accumulation]]:
    """Accumulations inside loops under `root`, by target text."""
    found: dict[str, list[Accumulation]] = defaultdict(list)
    for node in body_walk(root):
        if not isinstance(node, (ast.AugAssign, ast.Assign)) or not source.loop_of(node):
            continue
        if isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Add):
            accumulation = Accumulation(node, node.target, node.value)
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.value, ast.BinOp)
            and isinstance(node.value.op, ast.Add)
            and text_of(node.value.left) == text_of(node.targets[0])
        ):
            accumulation = Accumulation(node, node.targets[0], node.value.right)
        else:
            continue
        target = accumulator_target(accumulation.target)
        if target:
            found[target].append(accumulation)
    return found


def is_log_call(project: Project, source: SourceFile, call: ast.Call) -> str | None:
    """How a call logs its arguments: "same-function" for print/add_scalar/.log/.info/...,
    "helper"/"cross-module" for a repository function whose body makes such a call."""
    func = call.func
    if isinstance(func, ast.Name) and func.id == "print":
        return "same-function"
    if (
        isinstance(func, ast.Attribute)
        and func.attr in LOG_METHODS
        and text_of(func.value) not in MATH_MODULES
    ):
        return "same-function"
    target = project.resolve(source, call) or project.unique_method(call)
    if target:
        for node in body_walk(target[1]):
            if (
                isinstance(node, ast.Call)
                and node is not call
                and is_log_call(project, target[0], node) == "same-function"
            ):
                return "cross-module" if target[0] is not source else "helper"
    return None


def sink(log: ast.AST) -> str:
    """A logging call's name, for reports: `print()`, `add_scalar()`, `bar.desc =`."""
    if isinstance(log, ast.Call):
        return f"{text_of(log.func).split('.')[-1]}()"
    return f"{text_of(log.targets[0])} ="


def enclosing_log_call(project: Project, source: SourceFile, node: ast.AST) -> tuple[ast.AST, str] | None:
    """The innermost logging call whose arguments contain `node`, or a progress bar's
    `bar.desc = ...` assignment of it, within its statement."""
    current = source.parents.get(node)
    while current is not None and not isinstance(current, ast.stmt):
        if isinstance(current, ast.Call) and node is not current.func:
            shape = is_log_call(project, source, current)
            if shape:
                return current, shape
        current = source.parents.get(current)
    if isinstance(current, ast.Assign) and any(text_of(t).endswith(".desc") for t in current.targets):
        return current, "same-function"
    return None


# ---------------------------------------------------------------------------------------------
# Mutants


@dataclass
class Mutant:
    kind: str
    shape: str
    source: SourceFile  # the file the edit applies to
    edits: list[tuple[int, int, str]]  # (start, end, text) in character offsets, non-overlapping
    anchors: set[tuple[str, int]]  # (file, line) where the finding is expected, in mutant lines
    units: set[tuple[str, int, int]]  # (file, first, last line): clean before mutation there
    where: str  # the mutated place, in the original file
    what: str  # the mutation, in a few words

    @property
    def code(self) -> str:
        return KINDS[self.kind]

    def files(self) -> set[str]:
        return {self.source.rel} | {rel for rel, _ in self.anchors} | {rel for rel, _, _ in self.units}

    def mutated_text(self) -> str:
        text = self.source.text
        for start, end, replacement in sorted(self.edits, reverse=True):
            text = text[:start] + replacement + text[end:]
        return text


def lines_of(source: SourceFile, node: ast.AST) -> set[tuple[str, int]]:
    return {(source.rel, line) for line in range(node.lineno, node.end_lineno + 1)}


def unit_of(source: SourceFile, node: ast.AST) -> tuple[str, int, int]:
    return (source.rel, *source.unit(node))


def block_of(source: SourceFile, statement: ast.stmt) -> list[ast.stmt]:
    """The statement list (a body, an else, ...) that holds `statement`."""
    parent = source.parents[statement]
    for name in ("body", "orelse", "finalbody"):
        block = getattr(parent, name, None)
        if isinstance(block, list) and any(s is statement for s in block):
            return block
    return [statement]


def statement_to_pass(source: SourceFile, statement: ast.stmt) -> tuple[int, int, str]:
    """Replace a statement by `pass`, keeping the line count (so later lines keep their numbers)."""
    start, end = source.span(statement)
    return start, end, "pass" + "\n" * (statement.end_lineno - statement.lineno)


def replace_node(source: SourceFile, node: ast.AST, by: ast.AST) -> tuple[int, int, str] | None:
    """Replace `node`'s text by `by`'s, when both positions are exact and on one line."""
    if node.lineno != node.end_lineno or not sanity(source, node) or not sanity(source, by):
        return None
    start, end = source.span(node)
    return start, end, source.segment(by)


def sanity(source: SourceFile, node: ast.AST) -> bool:
    """ast positions inside f-strings can be off before Python 3.12: check the text."""
    try:
        parsed = ast.parse(source.segment(node).strip(), mode="eval").body
    except SyntaxError:
        return False
    return ast.dump(parsed) == ast.dump(node)


def clear_mutants(project: Project, source: SourceFile) -> Iterator[Mutant]:
    for statement in source.nodes:
        if not isinstance(statement, ast.Expr) or not isinstance(statement.value, ast.Call):
            continue
        receiver = cleared(statement.value)
        if receiver is None or receiver == "?":
            continue
        function = source.function_of(statement)
        if source.is_nested_function(function):
            continue  # a closure (LBFGS) or a local helper: who calls it, and how often, is unclear
        # The loop that runs the steps: around the clear, or around a call of its function.
        contexts: list[tuple[SourceFile, ast.AST]] = []
        loop = source.loop_of(statement)
        if loop is not None:
            contexts.append((source, loop))
        elif function is not source.tree:
            for caller, call in project.callers(function):
                caller_loop = caller.loop_of(call)
                if caller_loop is not None:
                    contexts.append((caller, caller_loop))
        for where, loop in contexts:
            mutant = clear_mutant(project, source, statement, receiver, where, loop)
            if mutant:
                yield mutant
                break


def clear_mutant(
    project: Project, source: SourceFile, statement: ast.stmt, receiver: str, where: SourceFile, loop: ast.AST
) -> Mutant | None:
    reached = project.reach(where, loop)
    if not any(s is source and n is statement for s, n, _ in reached):
        return None
    backward = [(s, n, shape) for s, n, shape in reached if isinstance(n, ast.Call) and backward_tensor(n)]
    steps = [(s, n, shape, stepped_optimizer(n)) for s, n, shape in reached if isinstance(n, ast.Call)]
    steps = [(s, n, shape, opt) for s, n, shape, opt in steps if opt]
    clears = [(s, n, cleared(n)) for s, n, _ in reached if cleared(n) and n is not statement.value]
    own_steps = [(s, n, shape) for s, n, shape, opt in steps if opt == receiver]
    if own_steps:  # an optimizer's clear: no other clear of it, nor of a module, nor of .grad
        if any(
            other == receiver or other == "?" or not any(opt == other for *_, opt in steps)
            for _, _, other in clears
        ):
            return None
        anchors = own_steps
    else:  # a module's clear (`model.zero_grad()`): nothing else may clear anything
        if clears or is_optimizer(receiver):
            return None
        anchors = [(s, n, shape) for s, n, shape, opt in steps if is_optimizer(opt)]
    if not backward or not anchors:
        return None
    own_shape = next(shape for s, n, shape in reached if n is statement)
    nearest_backward = min((shape for _, _, shape in backward), key=SHAPES.index)
    shape = widest([own_shape, nearest_backward] + [shape for _, _, shape in anchors])
    return Mutant(
        kind="clear",
        shape=shape,
        source=source,
        edits=[statement_to_pass(source, statement)],
        anchors=set().union(*(lines_of(s, n) for s, n, _ in anchors)),
        units={unit_of(source, statement), unit_of(where, loop)} | {unit_of(s, n) for s, n, _ in anchors},
        where=source.where(statement.lineno),
        what=f"deleted `{source.segment(statement)}`",
    )


def reset_mutants(project: Project, source: SourceFile) -> Iterator[Mutant]:
    for statement in source.nodes:
        if (
            not isinstance(statement, ast.Assign)
            or len(statement.targets) != 1
            or not is_zero(statement.value)
        ):
            continue
        target = accumulator_target(statement.targets[0])
        loop = source.loop_of(statement)
        if target is None or loop is None or statement.lineno != statement.end_lineno:
            continue
        # The accumulation: in a loop inside `loop` after the reset, or (a periodic reset under
        # an `if`) in `loop` itself.
        nested = statement in loop.body
        adds = [
            add
            for add in accumulations(source, loop)[target]
            if (source.loop_of(add.node) is not loop) == nested
            and add.node.lineno > (statement.lineno if nested else 0)
        ]
        shapes = []
        for add in adds:
            shape = "same-function" if "loss" in target.lower() else None
            shapes.append(loss_shape(project, source, add.value) or shape)
        if not adds or None in shapes or target in backpropagated(source, source.function_of(loop)):
            continue
        # Only this reset may assign the accumulator in the loop, and the loop must read it.
        in_adds = {id(n) for add in adds for n in ast.walk(add.node)}
        names = [
            n
            for n in body_walk(loop)
            if accumulator_target(n) == target and n is not statement.targets[0] and id(n) not in in_adds
        ]
        stores = [n for n in names if isinstance(n.ctx, ast.Store)]
        reads = [n for n in names if isinstance(n.ctx, ast.Load)]
        if stores or not reads:
            continue
        indent = " " * loop.col_offset
        line_start = source.line_starts[loop.lineno - 1]
        reset_text = source.segment(statement)
        # A reset just before the loop, in the same block, is where the finding may sit too.
        block = block_of(source, loop)
        others = [
            n
            for n in block[: block.index(loop)]
            if isinstance(n, ast.Assign) and text_of(n.targets[0]) == target
        ]
        anchors = {(source.rel, loop.lineno)} | {(source.rel, n.lineno) for n in others}
        yield Mutant(
            kind="reset",
            shape=widest(shapes),
            source=source,
            edits=[statement_to_pass(source, statement), (line_start, line_start, f"{indent}{reset_text}\n")],
            anchors=anchors,  # the inserted line and earlier resets keep their numbers
            units={unit_of(source, loop)},
            where=source.where(statement.lineno),
            what=f"moved `{reset_text}` out of the loop at line {loop.lineno}",
        )


def accumulators(project: Project, source: SourceFile, function: ast.AST) -> dict[str, str]:
    """Loss accumulators of a function (reset to zero, `+=` a loss in a loop) -> shape of the loss."""
    if function not in project.accumulators:
        project.accumulators[function] = _accumulators(project, source, function)
    return project.accumulators[function]


def _accumulators(project: Project, source: SourceFile, function: ast.AST) -> dict[str, str]:
    zeros = {
        accumulator_target(n.targets[0])
        for n in body_walk(function)
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and is_zero(n.value)
    }
    found = {}
    summed_for_backward = backpropagated(source, function)
    for target, adds in accumulations(source, function).items():
        if target in zeros and target not in summed_for_backward:
            shapes = [loss_shape(project, source, add.value) for add in adds]
            if "loss" in target.lower() or all(shapes):
                found[target] = widest([s or "same-function" for s in shapes])
    return found


def logged_after(project: Project, source: SourceFile, function: ast.AST, name: str, after: int) -> list:
    """Logging calls of `function` after line `after` whose arguments hold the name `name`."""
    found = []
    for node in body_walk(function):
        if (
            isinstance(node, ast.Name)
            and node.id == name
            and isinstance(node.ctx, ast.Load)
            and node.lineno > after
        ):
            log = enclosing_log_call(project, source, node)
            if log:
                found.append(log)
    return found


def division_mutants(project: Project, source: SourceFile) -> Iterator[Mutant]:
    functions = [source.tree] + [
        n for n in source.nodes if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    for function in functions:
        sums = accumulators(project, source, function)
        for node in body_walk(function):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):  # log(total / n)
                total = accumulator_target(item_core(node.left) or node.left)  # `total.item() / n` too
                edit = replace_node(source, node, node.left) if total in sums else None
                uses = division_uses(project, source, function, node)
                what = f"`{source.segment(node)}` -> `{source.segment(node.left)}`"
            elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Div):  # total /= n; log(total)
                total = accumulator_target(node.target)
                edit = statement_to_pass(source, node) if total in sums else None
                uses = name_uses(project, source, function, total, node.lineno)
                what = f"deleted `{source.segment(node)}`"
            else:
                continue
            if edit is None:
                continue
            for shape, anchors, how in uses:
                yield Mutant(
                    kind="division",
                    shape=widest([shape, sums[total]]),
                    source=source,
                    edits=[edit],
                    anchors=anchors,
                    units={unit_of(source, node)} | {(rel, line, line) for rel, line in anchors},
                    where=source.where(node.lineno),
                    what=f"{what} ({how})",
                )
                break


def division_uses(project: Project, source: SourceFile, function: ast.AST, division: ast.BinOp):
    """How a division's value is logged: (shape, anchors, how) for each way found."""
    log = enclosing_log_call(project, source, division)
    if log:
        yield log[1], lines_of(source, log[0]), f"logged by {sink(log[0])}"
        return
    parent = source.parents.get(division)
    while isinstance(parent, (ast.Call, ast.Attribute)) and not isinstance(parent, ast.stmt):
        parent = source.parents.get(parent)  # `(total / n).item()`, `float(total / n)`
    if (
        isinstance(parent, ast.Assign)
        and len(parent.targets) == 1
        and isinstance(parent.targets[0], ast.Name)
    ):
        yield from name_uses(project, source, function, parent.targets[0].id, parent.lineno)
    elif isinstance(parent, (ast.Return, ast.Tuple)):
        ret = parent if isinstance(parent, ast.Return) else source.parents.get(parent)
        if isinstance(ret, ast.Return):
            yield from caller_logs(project, source, function, ret.value, division)


def name_uses(project: Project, source: SourceFile, function: ast.AST, name: str | None, after: int):
    """How the average held by `name` from line `after` on is logged: by this function, or by a
    caller it is returned to."""
    if name is None or "." in name:
        return
    logs = logged_after(project, source, function, name, after)
    if logs:
        yield "same-function", set().union(*(lines_of(source, c) for c, _ in logs)), f"`{name}` logged"
        return
    returns = [n for n in body_walk(function) if isinstance(n, ast.Return) and n.value is not None]
    for ret in returns:
        names = [x for x in ast.walk(ret.value) if isinstance(x, ast.Name) and x.id == name]
        if names and ret.lineno > after:
            yield from caller_logs(project, source, function, ret.value, names[0])
            return


def caller_logs(project: Project, source: SourceFile, function: ast.AST, value: ast.AST, average: ast.AST):
    """A returned average logged by a caller: the call's result, or the element of the returned
    tuple that holds `average`, logged after the call."""
    if function is source.tree:
        return
    index = None
    if isinstance(value, ast.Tuple):
        index = next(
            i for i, element in enumerate(value.elts) if any(x is average for x in ast.walk(element))
        )
    for caller, call in project.callers(function):
        shape = "cross-module" if caller is not source else "helper"
        log = enclosing_log_call(project, caller, call)
        if log and index is None:
            yield shape, lines_of(caller, log[0]), "returned and logged by the caller"
            return
        statement = caller.parents.get(call)
        if not isinstance(statement, ast.Assign) or len(statement.targets) != 1:
            continue
        target = statement.targets[0]
        if index is not None and isinstance(target, ast.Tuple) and index < len(target.elts):
            target = target.elts[index]
        elif index is not None:
            continue
        if isinstance(target, ast.Name):
            logs = logged_after(project, caller, caller.function_of(call), target.id, statement.lineno)
            if logs:
                anchors = set().union(*(lines_of(caller, c) for c, _ in logs))
                yield shape, anchors, f"returned, `{target.id}` logged by the caller"
                return


def item_core(node: ast.AST) -> ast.AST | None:
    """`loss` in `loss.item()`, `loss.detach()`, `loss.data.item()`, `float(loss)`, ...; None
    when `node` wraps nothing."""
    core = node
    while True:
        wrapper = isinstance(core, ast.Call) and isinstance(core.func, ast.Attribute) and not core.args
        if wrapper and core.func.attr in ("item", "detach", "cpu", "numpy", "tolist"):
            core = core.func.value
            continue
        if isinstance(core, ast.Call) and text_of(core.func) == "float" and len(core.args) == 1:
            core = core.args[0]
            continue
        if isinstance(core, ast.Attribute) and core.attr == "data":
            core = core.value
            continue
        break
    return core if core is not node else None


def backpropagated(source: SourceFile, function: ast.AST) -> set[str]:
    """Names (and self attributes) whose value flows into a backward pass of `function`: a
    loss built from terms summed in a loop (`loss = 0; for t: loss += term; loss.backward()`)
    is the step's loss, not an accumulator of logged values."""
    flowing: set[str] = set()
    assignments: list[tuple[str, ast.AST]] = []
    for node in body_walk(function):
        if isinstance(node, ast.Call) and backward_tensor(node):
            flowing |= {text_of(n) for n in ast.walk(node) if accumulator_target(n)}
        elif isinstance(node, (ast.Assign, ast.AugAssign)) and node.value is not None:
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                assignments.append((text_of(target), node.value))
    grown = True
    while grown:
        grown = False
        for target, value in assignments:
            if target in flowing:
                names = {text_of(n) for n in ast.walk(value) if accumulator_target(n)} - flowing
                flowing |= names
                grown = grown or bool(names)
    return flowing


def backward_tensors(source: SourceFile, root: ast.AST) -> set[str]:
    """The tensors backpropagated in `root` (by their text)."""
    return {backward_tensor(n) for n in body_walk(root) if isinstance(n, ast.Call) and backward_tensor(n)}


def unwrap_in(source: SourceFile, expr: ast.AST, tensors: set[str]) -> tuple[ast.AST, ast.AST] | None:
    """The first wrapper in `expr` (`x.item()`, ...) around a backpropagated tensor, and the tensor."""
    for part in value_parts(expr):
        core = item_core(part)
        if isinstance(source.parents.get(part), ast.Subscript):
            continue  # `loss.data[0]` (PyTorch < 0.4): `loss[0]` would fail, not leak
        if core is not None and text_of(core) in tensors:
            return part, core
    return None


def item_mutants(project: Project, source: SourceFile) -> Iterator[Mutant]:
    functions = [source.tree] + [
        n for n in source.nodes if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    for function in functions:
        sums = accumulators(project, source, function)
        for target, adds in accumulations(source, function).items():
            if target not in sums:
                continue
            for add in adds:
                mutant = item_mutant(project, source, add)
                if mutant:
                    yield mutant


def item_mutant(project: Project, source: SourceFile, add: Accumulation) -> Mutant | None:
    loop = source.loop_of(add.node)
    tensors = backward_tensors(source, loop)
    anchors = lines_of(source, add.node)
    unit = unit_of(source, add.node)
    found = unwrap_in(source, add.value, tensors)
    if found:  # total += loss.item()
        edit = replace_node(source, *found)
        shape, how, edited, at = "same-function", "", source, add.node
    elif isinstance(add.value, ast.Name):  # value = loss.item(); total += value
        assigned = [
            n
            for n in body_walk(loop)
            if isinstance(n, ast.Assign)
            and n.lineno < add.node.lineno
            and [text_of(t) for t in n.targets] == [add.value.id]
            and unwrap_in(source, n.value, tensors)
        ]
        if not assigned:
            return None
        edit = replace_node(source, *unwrap_in(source, assigned[-1].value, tensors))
        shape, how, edited, at = "same-function", f" through `{add.value.id}`", source, assigned[-1]
    else:  # total += train_step(...), which returns loss.item()
        calls = [p for p in value_parts(add.value) if isinstance(p, ast.Call) and project.resolve(source, p)]
        if not calls:
            return None
        helper_file, helper = project.resolve(source, calls[0])
        helper_tensors = backward_tensors(helper_file, helper)
        returns = [n for n in body_walk(helper) if isinstance(n, ast.Return) and n.value is not None]
        wrapped = [(r, unwrap_in(helper_file, r.value, helper_tensors)) for r in returns]
        wrapped = [(r, w) for r, w in wrapped if w]
        if len(wrapped) != 1:
            return None
        edit = replace_node(helper_file, *wrapped[0][1])
        shape = "cross-module" if helper_file is not source else "helper"
        how, edited, at = f" in `{helper.name}`'s return", helper_file, wrapped[0][0]
        unit = unit_of(helper_file, helper)
    if edit is None:
        return None
    start, end, text = edit
    return Mutant(
        kind="item",
        shape=shape,
        source=edited,
        edits=[edit],
        anchors=anchors,
        units={unit_of(source, add.node), unit},
        where=edited.where(at.lineno),
        what=f"`{edited.text[start:end]}` -> `{text}`{how}",
    )


MUTATORS = {
    "clear": clear_mutants,
    "reset": reset_mutants,
    "division": division_mutants,
    "item": item_mutants,
}


def find_mutants(project: Project) -> list[Mutant]:
    """Every candidate mutant of the project (whether it parses is checked when it is tested)."""
    return [
        mutant
        for source in project.files.values()
        for mutator in MUTATORS.values()
        for mutant in mutator(project, source)
    ]


# ---------------------------------------------------------------------------------------------
# Running looplint on the mutants


def copy_project(repository: Path, project: Project, destination: Path) -> None:
    """A copy of the repository's lintable files; notebooks become one cell of joined code."""
    shutil.copytree(repository, destination, ignore=_not_copied, symlinks=True)
    for rel, source in project.files.items():
        if source.cell_lines is not None:
            original = (repository / rel).read_text(encoding="utf-8", errors="replace")
            (destination / rel).write_text(flat_notebook(source.text, original), encoding="utf-8")


def _not_copied(directory: str, names: list[str]) -> list[str]:
    keep = {n for n in names if Path(directory, n).is_dir() or any(Path(n).match(p) for p in COPIED)}
    return [n for n in names if n not in keep or n == ".git"]


def write_source(destination: Path, source: SourceFile, text: str, original: Path) -> None:
    path = destination / source.rel
    if source.cell_lines is not None:
        text = flat_notebook(text, original.read_text(encoding="utf-8", errors="replace"))
    path.write_text(text, encoding="utf-8")


@dataclass
class Outcome:
    repository: Repository
    mutant: Mutant
    status: str  # caught, elsewhere, missed, error; or not tested: not clean, unparsable
    reported: list[str] = field(default_factory=list)  # where the code was reported anew
    after: list[str] = field(default_factory=list)  # every finding in the mutant's files (--show)

    def row(self) -> dict:
        m = self.mutant
        return {
            "repository": self.repository.name,
            "split": self.repository.split,
            "kind": m.kind,
            "code": m.code,
            "shape": m.shape,
            "where": m.where,
            "what": m.what,
            "expected_at": sorted(f"{rel}:{line}" for rel, line in m.anchors),
            "status": self.status,
            "reported_at": self.reported,
        }


def findings_of(run, code: str) -> list[tuple[str, int]]:
    return [(f["path"], f["line"]) for f in run.findings if f["code"] == code]


def test_repository(
    repository: Repository, corpus: Path, mutants: list[Mutant], project: Project, whole: bool
) -> Iterator[Outcome]:
    baselines: dict[frozenset[str], object] = {}
    with tempfile.TemporaryDirectory(prefix="looplint-mutants-") as temporary:
        copy = Path(temporary) / repository.directory
        copy_project(corpus / repository.directory, project, copy)
        for mutant in mutants:
            scope = frozenset() if whole else frozenset(project.import_closure(mutant.files()))
            paths = None if whole else [copy / rel for rel in sorted(scope)]
            if scope not in baselines:
                baselines[scope] = run_looplint(copy, paths)
            before = baselines[scope]
            if before.crash:
                yield Outcome(repository, mutant, "error")
                continue
            earlier = findings_of(before, mutant.code)
            if any(
                rel == r and first <= line <= last for r, line in earlier for rel, first, last in mutant.units
            ):
                yield Outcome(repository, mutant, "not clean")
                continue
            if not parses(mutant.mutated_text()):
                yield Outcome(repository, mutant, "unparsable")
                continue
            original = corpus / repository.directory / mutant.source.rel
            write_source(copy, mutant.source, mutant.mutated_text(), original)
            try:
                after = run_looplint(copy, paths)
            finally:
                write_source(copy, mutant.source, mutant.source.text, original)
            found = findings_of(after, mutant.code)
            new = sorted(set(found) - set(earlier))
            if after.crash or any("internal error" in e for e in after.errors):
                status = "error"
            elif set(found) & mutant.anchors:
                status = "caught"
            elif len(found) > len(earlier):
                status = "elsewhere"
            else:
                status = "missed"
            reported = [f"{rel}:{line}" for rel, line in new]
            involved = mutant.files()
            everything = [
                f"{f['path']}:{f['line']}: {f['code']} {f['message']}"
                for f in after.findings
                if f["path"] in involved
            ]
            yield Outcome(repository, mutant, status, reported, everything)


def sample(mutants: list[Mutant], size: int, seed: int) -> list[Mutant]:
    """At most `size` mutants of each (kind, shape), drawn with a fixed seed."""
    groups: dict[tuple[str, str], list[Mutant]] = defaultdict(list)
    for mutant in mutants:
        groups[(mutant.kind, mutant.shape)].append(mutant)
    chosen = []
    for key in sorted(groups):
        group = groups[key]
        chosen.extend(group if len(group) <= size else random.Random(f"{seed}:{key}").sample(group, size))
    return chosen


def print_table(outcomes: list[Outcome], title: str, by) -> None:
    rows: dict[tuple, Counter] = defaultdict(Counter)
    for outcome in outcomes:
        rows[by(outcome)][outcome.status] += 1
    print(f"\n{title}")
    print(
        f"  {'':34} {'caught':>7} {'mutants':>7} {'recall':>7} {'elsewhere':>9} {'errors':>6} "
        f"{'not clean':>9} {'unparsable':>10}"
    )
    for key in sorted(rows):
        counts = rows[key]
        tested = counts["caught"] + counts["elsewhere"] + counts["missed"] + counts["error"]
        recall = f"{counts['caught'] / tested:.0%}" if tested else "-"
        label = " ".join(key)
        print(
            f"  {label:34} {counts['caught']:7} {tested:7} {recall:>7} {counts['elsewhere']:9} "
            f"{counts['error']:6} {counts['not clean']:9} {counts['unparsable']:10}"
        )


def show(outcome: Outcome) -> None:
    """One mutant in full: what changed, the verdict, and what looplint reported after."""
    m = outcome.mutant
    print(f"\n{outcome.repository.name}/{m.where}: {m.kind} ({m.shape}) {outcome.status}: {m.what}")
    print(f"expected {m.code} at {', '.join(sorted(f'{rel}:{line}' for rel, line in m.anchors))}")
    before, after = m.source.text.splitlines(keepends=True), m.mutated_text().splitlines(keepends=True)
    sys.stdout.writelines(difflib.unified_diff(before, after, m.source.rel, m.source.rel + " (mutant)", n=3))
    print("findings after the mutation:" if outcome.after else "no findings after the mutation")
    for line in outcome.after:
        print(f"  {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="directory holding <owner>__<name>/")
    parser.add_argument("--split", choices=SPLITS, default="all")
    parser.add_argument("--repository", action="append", help="only this repository (repeatable)")
    parser.add_argument(
        "--kind", action="append", choices=sorted(KINDS), help="only this mutation (repeatable)"
    )
    parser.add_argument(
        "--sample", type=int, default=40, help="mutants per kind and shape and split (default 40)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--whole-project", action="store_true", help="lint the whole repository for each mutant"
    )
    parser.add_argument("--json", type=Path, help="write every mutant and its outcome here")
    parser.add_argument(
        "--show", metavar="TEXT", help="test every mutant whose place contains TEXT; print its diff"
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    repositories = select(args.corpus, args.split, args.repository or [])
    kinds = args.kind or list(KINDS)
    found: list[tuple[Repository, Project, Mutant]] = []
    projects = {}
    for repository in repositories:
        root = args.corpus / repository.directory
        if not root.is_dir():
            print(f"{repository.name}: missing {root} (see the README to rebuild the corpus)")
            continue
        project = projects[repository.name] = Project(root)
        found.extend((repository, project, m) for m in find_mutants(project) if m.kind in kinds)
    # Sampled per split too, so that each split keeps its own mutants of every kind and shape.
    chosen_ids = set()
    for split in ("tune", "held-out"):
        in_split = [m for r, _, m in found if r.split == split]
        chosen_ids |= {id(m) for m in sample(in_split, args.sample, args.seed)}
    if args.show:
        chosen_ids = {id(m) for _, _, m in found if args.show in m.where}
    print(
        f"{len(found)} mutants found in {len(projects)} repositories, {len(chosen_ids)} tested ({looplint_version()})"
    )

    outcomes: list[Outcome] = []
    for repository in repositories:
        mutants = [m for r, _, m in found if r is repository and id(m) in chosen_ids]
        if mutants:
            project = projects[repository.name]
            outcomes.extend(test_repository(repository, args.corpus, mutants, project, args.whole_project))
            print(f"  {repository.name}: {len(mutants)} mutants tested", file=sys.stderr, flush=True)

    if args.show:
        for outcome in outcomes:
            show(outcome)
        return 0
    print_table(outcomes, "per kind (expected code)", lambda o: (o.mutant.kind, o.mutant.code))
    print_table(outcomes, "per kind and split", lambda o: (o.mutant.kind, o.repository.split))
    print_table(outcomes, "per kind and shape", lambda o: (o.mutant.kind, o.mutant.shape))
    print_table(
        outcomes, "per kind, shape and split", lambda o: (o.mutant.kind, o.mutant.shape, o.repository.split)
    )
    missed = [o for o in outcomes if o.status in ("missed", "elsewhere", "error")]
    print(f"\nnot caught at the expected line ({len(missed)}):")
    for outcome in sorted(
        missed, key=lambda o: (o.mutant.kind, o.mutant.shape, o.repository.name, o.mutant.where)
    ):
        m = outcome.mutant
        elsewhere = f" [reported at {', '.join(outcome.reported)}]" if outcome.status == "elsewhere" else ""
        print(
            f"  {m.kind:8} {m.shape:13} {outcome.status:9} {outcome.repository.name}/{m.where}: {m.what}{elsewhere}"
        )
    print(f"\n{time.perf_counter() - started:.0f} s")
    if args.json:
        rows = [outcome.row() for outcome in outcomes]
        report = {"looplint": looplint_version(), "split": args.split, "seed": args.seed, "mutants": rows}
        args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {len(rows)} mutants to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
