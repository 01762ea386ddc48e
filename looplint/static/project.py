"""The project, not the file: imports resolved to the project's modules, each summarized once.

`from utils import train_step`, `import utils.misc as misc`, `from .hooks import log_loss`,
packages with `__init__.py`, `src/` layouts, modules on the project root and next to the
importing file: an import that names a module of the project binds to it; anything else stays
external (and unknown, which never fires).

A module's summary is what its importers can see of it: what each function and method does to
its parameters and what it returns, its classes (bases, methods, the attributes their methods
assign to `self`), and its module-level names. Its calls into other modules stay calls, which
the importer binds when it needs them (a few levels deep), so a summary depends on its module's
text alone: it is computed at most once per run and kept on disk, keyed by the module's bytes,
and rebuilt when one of its imports now resolves elsewhere. Summarizing a module never parses
the modules it imports. An importer's cached findings record the digests of the summaries its
analysis consulted, and are recomputed when one of them changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from looplint.static.prefilter import worth_summarizing
from looplint.static.values import (
    Accum,
    Attr,
    Bin,
    Bound,
    Call,
    Elem,
    Ext,
    Item,
    Lit,
    Name,
    Param,
    Phi,
    Ref,
    SelfAttr,
    Tup,
    Unknown,
    Value,
)

if TYPE_CHECKING:
    from looplint.static.model import Event, Loop, Model
    from looplint.static.summaries import FunctionSummary

SUMMARY_DIR = "summaries"
_MODELS_KEPT = 48  # parsed modules kept in memory, so a module imported and then linted parses once
_MAX_MODULE_BYTES = 60_000  # a module this large is a library's, not a training helper: unknown
_IMPORT_LINE = re.compile(
    r"^[ \t]*(?:from[ \t]+(\.*)([\w.]*)[ \t]+import\b|import[ \t]+([\w.]+(?:[ \t]*,[ \t]*[\w.]+)*))",
    re.MULTILINE,
)


@dataclass
class ModuleSummary:
    path: str
    functions: dict[str, FunctionSummary] = field(default_factory=dict)
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)  # bases, methods, attrs
    exports: dict[str, Value] = field(default_factory=dict)
    digest: str = ""  # hash of the serialized summary: what importers' caches depend on


class Project:
    """The modules of one project, for one run (or one editor session)."""

    def __init__(self, root: str | Path | None = None, cache_root: str | Path | None = None) -> None:
        self.root = Path(root).resolve() if root is not None else None
        self.cache_dir = Path(cache_root) / SUMMARY_DIR if cache_root is not None else None
        self.backwarded: set[int] = set()  # ids of foreign values that a backward ran on
        self._keep: list[Value] = []
        self._summaries: dict[str, ModuleSummary | None] = {}
        self._in_progress: set[str] = set()
        self._models: OrderedDict[tuple[str, str], Model] = OrderedDict()
        self._found: dict[tuple[str, str, int], str | None] = {}
        self._digests: dict[str, str] = {}
        self._listings: dict[str, frozenset[str]] = {}
        self.used: set[str] = set()  # modules whose summaries the current analysis consulted
        self.asked: set[tuple[str, str, int]] = set()  # imports the current analysis resolved
        self.wanted: set[str] = set()  # modules that files of the run import

    # ------------------------------------------------------------------------- imports
    def resolve_import(self, importer: str, module: str, level: int, name: str | None) -> Value | None:
        """`from module import name` (level dots) or `import module` in `importer`, as a value."""
        base = self.find_module(importer, module, level)
        if base is None:
            return None
        if name is None:
            return Ref("module", base, "")
        if base.endswith("__init__.py"):
            submodule = self.find_module(importer, f"{module}.{name}" if module else name, level)
            if submodule is not None:
                return Ref("module", submodule, "")
        return Attr(Ref("module", base, ""), name)

    def find_module(self, importer: str, module: str, level: int) -> str | None:
        """The file of a project module, or None (stdlib, installed packages, missing)."""
        key = (os.path.dirname(os.path.abspath(importer)), module, level)
        self.asked.add(key)
        if key in self._found:
            return self._found[key]
        found = None
        parts = [part for part in module.split(".") if part]
        for root in self._roots(key[0], level):
            directory = os.path.join(root, *parts[:-1]) if parts else root
            last = parts[-1] if parts else None
            if last is not None and f"{last}.py" in self._listing(directory):
                found = os.path.join(directory, f"{last}.py")
                break
            package = os.path.join(directory, last) if last is not None else directory
            if "__init__.py" in self._listing(package):
                found = os.path.join(package, "__init__.py")
                break
        self._found[key] = found
        return found

    def _listing(self, directory: str) -> frozenset[str]:
        """The names in a directory (read once: most imports ask about the same few folders)."""
        found = self._listings.get(directory)
        if found is None:
            try:
                found = frozenset(os.listdir(directory))
            except OSError:
                found = frozenset()
            self._listings[directory] = found
        return found

    def _roots(self, directory: str, level: int) -> list[str]:
        here = directory
        if level > 0:
            for _ in range(level - 1):
                here = os.path.dirname(here)
            return [here]
        roots = [here]
        package = here
        while "__init__.py" in self._listing(package) and os.path.dirname(package) != package:
            package = os.path.dirname(package)
        if package != here:
            roots.append(package)
        # The folders above (a script in scripts/ importing the project's package), and their
        # src/ folders, up to the project's root.
        root = str(self.root) if self.root is not None else None
        above = here
        for _ in range(3):
            if above == root or os.path.dirname(above) == above:
                break
            above = os.path.dirname(above)
            roots += [above, os.path.join(above, "src")]
        if root is not None:
            roots += [root, os.path.join(root, "src")]
        return list(dict.fromkeys(roots))

    # ------------------------------------------------------------------------- what modules say
    def export(self, module: str, name: str, importer: str | None = None) -> Value | None:
        summary = self.summary(module)
        if summary is None:
            return None
        found = summary.exports.get(name)
        if found is not None:
            return found
        if module.endswith("__init__.py"):
            submodule = os.path.join(os.path.dirname(module), f"{name}.py")
            if os.path.isfile(submodule):
                return Ref("module", submodule, "")
            package = os.path.join(os.path.dirname(module), name, "__init__.py")
            if os.path.isfile(package):
                return Ref("module", package, "")
        return None

    def function_summary(self, module: str, qualname: str) -> FunctionSummary | None:
        summary = self.summary(module)
        return summary.functions.get(qualname) if summary is not None else None

    def class_attribute(self, module: str, cls: str, attr: str, depth: int = 0) -> Value | None:
        """A method of the class (or of a base), or what its methods assign to `self.attr`."""
        summary = self.summary(module)
        if summary is None or depth > 8:
            return None
        info = summary.classes.get(cls)
        if info is None:
            return None
        if attr in info["methods"]:
            return Ref("function", module, f"{cls}.{attr}")
        if attr in info["attrs"]:
            return info["attrs"][attr]
        for base in info["bases"]:
            if isinstance(base, Ref) and base.kind == "class":
                found = self.class_attribute(base.module, base.name, attr, depth + 1)
                if found is not None:
                    return found
        return None

    def class_layers(self, module: str, cls: str) -> frozenset[str] | None:
        summary = self.summary(module)
        info = summary.classes.get(cls) if summary is not None else None
        return frozenset(info["layers"]) if info is not None and "layers" in info else None

    def class_bases(self, module: str, cls: str) -> list[Value]:
        summary = self.summary(module)
        info = summary.classes.get(cls) if summary is not None else None
        return list(info["bases"]) if info is not None else []

    # ------------------------------------------------------------------------- summaries
    def summary(self, path: str) -> ModuleSummary | None:
        """The module's summary: from this run, from the disk cache, or built now."""
        self.used.add(path)
        if path in self._summaries:
            return self._summaries[path]
        if path in self._in_progress:
            return None  # an import cycle: what the other module says is unknown here
        self._in_progress.add(path)
        try:
            summary = self._load_or_build(path)
        finally:
            self._in_progress.discard(path)
        self._summaries[path] = summary
        return summary

    def order_by_imports(self, paths: list[str]) -> list[str]:
        """The files, those that others of them import first; and remember those as wanted, so
        that linting one also keeps its summary for its importers (one parse per module)."""
        files = {os.path.abspath(path): path for path in paths}
        imported: set[str] = set()
        for absolute in files:
            try:
                text = Path(absolute).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for match in _IMPORT_LINE.finditer(text):
                dots, module, plain = match.group(1), match.group(2), match.group(3)
                specs = [(module, len(dots))] if plain is None else [(m.strip(), 0) for m in plain.split(",")]
                for name, level in specs:
                    found = self.find_module(absolute, name, level)
                    if found is not None and found in files and found != absolute:
                        imported.add(found)
        self.wanted |= imported
        return [files[f] for f in files if f in imported] + [files[f] for f in files if f not in imported]

    def offer(self, model: Model) -> None:
        """A module was just analyzed: keep its summary if other files of the run import it."""
        if model.file in self.wanted and model.file not in self._summaries and self.cache_dir is not None:
            encoded = encode_module(model)
            try:
                key = self._cache_key(model.file, Path(model.file).read_bytes())
            except OSError:
                return
            self._write_cache(key, encoded)
            self._summaries[model.file] = _decode_module(encoded, self)
        elif model.file in self.wanted and model.file not in self._summaries:
            self._summaries[model.file] = _decode_module(encode_module(model), self)

    def refresh(self) -> None:
        """Forget what the files said (one was saved, or changed on disk): summaries are read
        again, from the disk cache when their module's bytes are the same."""
        self._summaries.clear()
        self._digests.clear()
        self._found.clear()
        self._listings.clear()

    def start(self) -> None:
        """Begin recording what one file's analysis depends on."""
        self.used = set()
        self.asked = set()

    def dependencies(self, itself: str) -> dict[str, Any]:
        """What the analysis since `start()` depended on besides its own file: the summaries it
        consulted and where each import it met resolved (or that it did not)."""
        itself = os.path.abspath(itself)
        return {
            "summaries": {path: self.summary_digest(path) for path in sorted(self.used) if path != itself},
            "imports": sorted([*key, self._found.get(key)] for key in self.asked),
        }

    def dependencies_hold(self, dependencies: dict[str, Any]) -> bool:
        """Do the recorded dependencies still hold (same summaries, imports resolved alike)?"""
        try:
            for directory, module, level, found in dependencies.get("imports", []):
                if self.find_module(os.path.join(directory, "_"), module, level) != found:
                    return False
            return all(
                self.summary_digest(path) == digest
                for path, digest in dependencies.get("summaries", {}).items()
            )
        except (TypeError, ValueError):
            return False

    def summary_digest(self, path: str) -> str:
        """What an importer's cached result depends on; read from the summary cache when it is
        there, so a warm run never parses an imported module."""
        found = self._digests.get(path)
        if found is not None:
            return found
        if path in self._summaries:
            summary = self._summaries[path]
            found = summary.digest if summary is not None else "missing"
        else:
            found = self._cached_digest(path)
            if found is None:
                summary = self.summary(path)
                found = summary.digest if summary is not None else "missing"
        self._digests[path] = found
        return found

    def _cached_digest(self, path: str) -> str | None:
        if self.cache_dir is None or path in self._in_progress:
            return None
        try:
            data = Path(path).read_bytes()
        except OSError:
            return "missing"
        self._in_progress.add(path)
        try:
            entry = self._valid_entry(self._cache_key(path, data))
        finally:
            self._in_progress.discard(path)
        return entry["summary"]["digest"] if entry is not None else None

    def kept_model(self, path: str, source: str) -> Model | None:
        """The model of this very text, if one was built recently (say, for an importer)."""
        found = self._models.get(self._model_key(path, source))
        if found is not None:
            self._models.move_to_end(self._model_key(path, source))
        return found

    @staticmethod
    def _model_key(path: str, source: str) -> tuple[str, str]:
        digest = hashlib.blake2b(source.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
        return os.path.abspath(path), digest

    def model(self, path: str, source: str, module: Any = None) -> Model | None:
        """The model of a module's text (kept for a while: a module imported by one file and
        linted next is parsed once). `module` is its libcst tree when the caller parsed it."""
        key = self._model_key(path, source)
        found = self._models.get(key)
        if found is not None:
            self._models.move_to_end(key)
            return found
        import libcst as cst

        from looplint.static.model import Model

        try:
            if module is None:
                module = cst.parse_module(source)
            model = Model(module, path, self)
        except (cst.ParserSyntaxError, RecursionError, ValueError):
            return None
        self._models[key] = model
        while len(self._models) > _MODELS_KEPT:
            self._models.popitem(last=False)
        return model

    def _load_or_build(self, path: str) -> ModuleSummary | None:
        try:
            data = Path(path).read_bytes()
        except OSError:
            return None
        if len(data) > _MAX_MODULE_BYTES or b"\0" in data:
            return None
        key = self._cache_key(path, data)
        cached = self._read_cache(key)
        if cached is not None:
            return cached
        try:
            source = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return None
        if not path.endswith("__init__.py") and not worth_summarizing(source):
            return None  # nothing in it could train, log or hold a loss: its names stay unknown
        model = self.model(path, source)
        if model is None:
            return None
        encoded = encode_module(model)
        self._write_cache(key, encoded)
        return _decode_module(encoded, self)

    def _cache_key(self, path: str, data: bytes) -> str:
        from looplint.engine.cache import code_fingerprint

        digest = hashlib.blake2b(code_fingerprint().encode(), digest_size=20)
        digest.update(os.path.abspath(path).encode("utf-8", "surrogateescape") + b"\0")
        digest.update(data)
        return digest.hexdigest()

    def _read_cache(self, key: str) -> ModuleSummary | None:
        entry = self._valid_entry(key)
        if entry is None:
            return None
        try:
            return _decode_module(entry["summary"], self)
        except (ValueError, KeyError, TypeError, IndexError):
            return None

    def _valid_entry(self, key: str) -> dict[str, Any] | None:
        """A cached summary whose imports still resolve where they did. (A summary depends on
        its module's text alone: calls into other modules stay calls, bound by the importer.)"""
        if self.cache_dir is None:
            return None
        try:
            with open(self.cache_dir / f"{key}.json", encoding="utf-8") as handle:
                entry = json.load(handle)
            for (directory, module, level), expected in entry["imports"]:
                if self.find_module(os.path.join(directory, "_"), module, level) != expected:
                    return None
            if not isinstance(entry["summary"]["digest"], str):
                return None
            return entry
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None

    def _write_cache(self, key: str, encoded: dict[str, Any]) -> None:
        if self.cache_dir is None:
            return
        directory = os.path.dirname(os.path.abspath(encoded["path"]))
        imports = [[list(spec), found] for spec, found in self._found.items() if spec[0] == directory]
        entry = {"summary": encoded, "imports": imports}
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=self.cache_dir, suffix=".tmp")
            try:
                with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                    json.dump(entry, handle)
                os.replace(temporary, self.cache_dir / f"{key}.json")
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError:
            pass


def encode_module(model: Model) -> dict[str, Any]:
    """What importers can see of a module (its functions, classes and module-level names), in
    the form that is cached; this run uses the same form, so a cached run cannot differ."""
    summary = ModuleSummary(model.file)
    for scope in model.scopes:
        if scope.parent is None or "<locals>" in scope.key:
            continue
        qualname = scope.key.split("::", 1)[1]
        summary.functions[qualname] = model.summary(scope, local=True)
    for name in model.classes:
        attrs: dict[str, Value] = {}
        for attr, bindings in model.self_bindings.items():
            values = [value for owner, value in bindings if owner == name]
            if values:
                attrs[attr] = values[0] if len(values) == 1 else Phi(tuple(values))
        summary.classes[name] = {
            "bases": list(model.class_bases.get(name, [])),
            "methods": sorted(method for (owner, method) in model.methods if owner == name),
            "attrs": attrs,
            "layers": sorted(model.class_layers(Ref("class", model.file, name)) or ()),
        }
    assert model.root is not None
    summary.exports = dict(model.root.final)
    encoded = _encode_module(summary, model)
    encoded["digest"] = hashlib.blake2b(
        json.dumps(encoded, sort_keys=True).encode(), digest_size=16
    ).hexdigest()
    return encoded


# ----------------------------------------------------------------------------- serialization


class _Encoder:
    def __init__(self, model: Model | None) -> None:
        self.model = model
        self.loops: list[Loop] = []
        self.loop_index: dict[int, int] = {}
        self.branch_keys: dict[Any, int] = {}

    def value(self, value: Value | None, depth: int = 0) -> Any:
        if value is None or depth > 60:
            return None
        marked = self.model is not None and self.model.is_backwarded(value)
        encoded = self._value(value, depth + 1)
        return ["!", encoded] if marked else encoded

    def _value(self, value: Value, depth: int) -> Any:
        v = self.value
        if isinstance(value, Bound):
            return v(value.force(), depth)
        if isinstance(value, Lit):
            return ["lit", value.kind]
        if isinstance(value, Ext):
            return ["ext", value.path]
        if isinstance(value, Ref):
            return ["ref", value.kind, value.module, value.name]
        if isinstance(value, Unknown):
            return ["unk", _origin(value.origin)]
        if isinstance(value, Name):
            if self.model is None:
                return ["unk", None]
            return v(self.model.resolve_name(value), depth)
        if isinstance(value, Param):
            return ["param", value.scope, value.name]
        if isinstance(value, SelfAttr):
            return ["self", value.cls, value.attr]
        if isinstance(value, Call):
            return [
                "call",
                v(value.func, depth),
                [v(a, depth) for a in value.args],
                [[k, v(a, depth)] for k, a in value.kwargs],
                _origin(value.site),
                value.no_grad,
                value.display,
            ]
        if isinstance(value, Attr):
            return ["attr", v(value.base, depth), value.attr]
        if isinstance(value, Item):
            return ["item", v(value.base, depth), value.key]
        if isinstance(value, Bin):
            return ["bin", value.op, v(value.left, depth), v(value.right, depth), sorted(value.divisor)]
        if isinstance(value, Tup):
            return ["tup", [v(item, depth) for item in value.items]]
        if isinstance(value, Accum):
            return ["accum", v(value.prev, depth), v(value.term, depth), value.spans, value.window]
        if isinstance(value, Phi):
            return ["phi", [v(option, depth) for option in value.options]]
        if isinstance(value, Elem):
            return ["elem", v(value.iterable, depth), _origin(value.origin)]
        return ["unk", None]

    def event(self, event: Event) -> dict[str, Any]:
        return {
            "kind": event.kind,
            "name": event.name,
            "loops": [self.loop(loop) for loop in event.loops],
            "branches": [[self.branch(b[0]), b[1], b[2]] for b in event.branches],
            "no_grad": event.no_grad,
            "periodic": event.periodic,
            "value": self.value(event.value),
            "var": list(event.var) if event.var is not None else None,
            "foreign": event.foreign,
            "data": self.data(event.data),
        }

    def data(self, data: dict[str, Any]) -> dict[str, Any]:
        kept: dict[str, Any] = {}
        for key, item in data.items():
            if key == "via":
                continue
            if isinstance(item, Value):
                kept[key] = ["$v", self.value(item)]
            elif isinstance(item, (str, int, float, bool)) or item is None:
                kept[key] = item
            elif isinstance(item, frozenset) and all(isinstance(x, str) for x in item):
                kept[key] = ["$set", sorted(item)]
            elif isinstance(item, tuple) and item and all(isinstance(x, Value) for x in item):
                kept[key] = ["$vs", [self.value(x) for x in item]]
            elif isinstance(item, tuple) and all(x is None or isinstance(x, str) for x in item):
                kept[key] = ["$names", list(item)]
        return kept

    def loop(self, loop: Loop) -> int:
        index = self.loop_index.get(id(loop))
        if index is None:
            index = self.loop_index[id(loop)] = len(self.loops)
            self.loops.append(loop)
        return index

    def branch(self, key: Any) -> int:
        return self.branch_keys.setdefault(key, len(self.branch_keys))


def _origin(origin: tuple | None) -> Any:
    return list(origin) if origin is not None else None


def _encode_module(summary: ModuleSummary, model: Model | None = None) -> dict[str, Any]:
    encoder = _Encoder(model)
    functions = {}
    for qualname, function in summary.functions.items():
        functions[qualname] = {
            "key": function.key,
            "params": function.params,
            "star": function.star,
            "is_method": function.is_method,
            "label": function.label,
            "events": None
            if function.events is None
            else [encoder.event(event) for event in function.events],
            "returns": encoder.value(function.returns),
        }
    classes = {
        name: {
            "bases": [encoder.value(base) for base in info["bases"]],
            "methods": info["methods"],
            "attrs": {attr: encoder.value(value) for attr, value in info["attrs"].items()},
            "layers": info["layers"],
        }
        for name, info in summary.classes.items()
    }
    # Module-level names an importer can use: functions, classes, modules and built objects.
    exports = {
        name: encoder.value(value)
        for name, value in summary.exports.items()
        if not isinstance(value, (Lit, Unknown, Tup, Bin))
    }
    loops = [
        {
            "targets": list(loop.targets),
            "label": loop.label,
            "kind": loop.kind,
            "count": loop.count,
            "counted": loop.counted,
            "count_name": loop.count_name,
            "param_source": loop.param_source,
        }
        for loop in encoder.loops
    ]
    return {
        "path": summary.path,
        "functions": functions,
        "classes": classes,
        "exports": exports,
        "loops": loops,
        "digest": summary.digest,
    }


class _Decoder:
    def __init__(self, project: Project | None, path: str, loops: list[Loop]) -> None:
        self.project = project
        self.path = path
        self.loops = loops

    def value(self, data: Any) -> Value | None:
        if data is None:
            return None
        if data[0] == "!":
            value = self.value(data[1])
            if value is not None and self.project is not None:
                self.project.backwarded.add(id(value))
                self.project._keep.append(value)
            return value
        v = self.value
        tag = data[0]
        if tag == "lit":
            return Lit(data[1])
        if tag == "ext":
            return Ext(data[1])
        if tag == "ref":
            return Ref(data[1], data[2], data[3])
        if tag == "unk":
            return Unknown(_tuple(data[1]))
        if tag == "param":
            return Param(data[1], data[2])
        if tag == "self":
            return SelfAttr(data[1], data[2])
        if tag == "call":
            return Call(
                v(data[1]) or Unknown(),
                tuple(v(a) or Unknown() for a in data[2]),
                tuple((k, v(a) or Unknown()) for k, a in data[3]),
                _tuple(data[4]) or ("site", self.path, -1),
                data[5],
                data[6],
            )
        if tag == "attr":
            return Attr(v(data[1]) or Unknown(), data[2])
        if tag == "item":
            return Item(v(data[1]) or Unknown(), data[2])
        if tag == "bin":
            return Bin(data[1], v(data[2]) or Unknown(), v(data[3]) or Unknown(), frozenset(data[4]))
        if tag == "tup":
            return Tup(tuple(v(item) or Unknown() for item in data[1]))
        if tag == "accum":
            return Accum(v(data[1]) or Unknown(), v(data[2]) or Unknown(), data[3], data[4])
        if tag == "phi":
            return Phi(tuple(v(option) or Unknown() for option in data[1]))
        if tag == "elem":
            return Elem(v(data[1]) or Unknown(), _tuple(data[2]) or ("elem", self.path))
        return Unknown()

    def event(self, data: dict[str, Any], label: str) -> Event:
        from looplint.static.model import Event

        return Event(
            kind=data["kind"],
            name=data["name"],
            node=None,
            statement=None,
            loops=tuple(self.loops[i] for i in data["loops"]),
            branches=tuple((f"{self.path}#{b[0]}", b[1], b[2]) for b in data["branches"]),
            no_grad=data["no_grad"],
            periodic=data["periodic"],
            scope=None,
            data=self.data(data["data"]),
            value=self.value(data["value"]),
            var=tuple(data["var"]) if data["var"] is not None else None,
            foreign=data["foreign"] or f"{label} of {os.path.basename(self.path)}",
        )

    def data(self, data: dict[str, Any]) -> dict[str, Any]:
        decoded: dict[str, Any] = {}
        for key, item in data.items():
            if isinstance(item, list) and item and item[0] == "$v":
                decoded[key] = self.value(item[1])
            elif isinstance(item, list) and item and item[0] == "$set":
                decoded[key] = frozenset(item[1])
            elif isinstance(item, list) and item and item[0] == "$vs":
                decoded[key] = tuple(self.value(x) or Unknown() for x in item[1])
            elif isinstance(item, list) and item and item[0] == "$names":
                decoded[key] = tuple(item[1])
            else:
                decoded[key] = item
        return decoded


def _tuple(data: Any) -> tuple | None:
    if data is None:
        return None
    return tuple(_tuple(x) if isinstance(x, list) else x for x in data)


def _decode_module(data: dict[str, Any], project: Project | None) -> ModuleSummary:
    from looplint.static.model import Loop
    from looplint.static.summaries import FunctionSummary

    loops = [
        Loop(
            None,
            tuple(loop["targets"]),
            frozenset(),
            loop["label"],
            loop["kind"],
            loop["count"],
            loop["counted"],
            loop["count_name"],
            loop.get("param_source"),
        )
        for loop in data["loops"]
    ]
    decoder = _Decoder(project, data["path"], loops)
    summary = ModuleSummary(data["path"], digest=data["digest"])
    for qualname, function in data["functions"].items():
        summary.functions[qualname] = FunctionSummary(
            key=function["key"],
            params=function["params"],
            is_method=function["is_method"],
            events=None
            if function["events"] is None
            else [decoder.event(event, function["label"]) for event in function["events"]],
            returns=decoder.value(function["returns"]),
            foreign=True,
            label=function["label"],
            star=function.get("star"),
        )
    for name, info in data["classes"].items():
        summary.classes[name] = {
            "bases": [decoder.value(base) or Unknown() for base in info["bases"]],
            "methods": info["methods"],
            "attrs": {attr: decoder.value(value) or Unknown() for attr, value in info["attrs"].items()},
            "layers": info.get("layers", []),
        }
    summary.exports = {name: decoder.value(value) or Unknown() for name, value in data["exports"].items()}
    return summary
