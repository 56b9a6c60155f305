"""What a torch model file would run, checked before torch reads it: code from a file runs only with ``--unsafe``.

torch's own loaders run more than tensors. :func:`check_exported` reads a ``torch.export`` archive (``.pt2``)
as a zip of JSON before ``torch.export.load`` sees it, and refuses what would run code or touch files:

* weights or constants marked ``use_pickle`` (read with ``torch.load(weights_only=False)``), TorchBind and
  opaque objects (unpickled), the legacy layouts (a pickle fallback), AOTInductor programs (shared libraries),
  sample inputs that torch's safe unpickler refuses (torch falls back to a full unpickle for them);
* graph calls outside the tensor operator namespaces, or of an operator that names a file (``aten.from_file``);
* symbolic-shape expressions that are not arithmetic (torch parses them with ``sympy.sympify``, an ``eval``),
  and names with quotes, brackets or newlines (torch.fx pastes module paths into the Python it generates).

:func:`check_script` parses a TorchScript archive's ``code/`` (Python syntax) before ``torch.jit.load``, which
runs ``__setstate__``: operators that name a file (``torch.from_file(path, shared=True)`` creates and fills
one) and operator or class namespaces other than the tensor ones are refused. TorchScript reaches nothing but
registered operators, so torchvision's scripted models (and most others) pass.

Each refusal is one :class:`~featuremaps.errors.UserError` naming what was found and ``--unsafe``.
"""

from __future__ import annotations

import ast
import json
import re
import zipfile
from pathlib import Path

from featuremaps.errors import UserError

#: operators whose schema takes a file name (``aten::from_file(str filename, bool? shared, ...)``,
#: ``aten::save(t item, str filename)``): the only tensor operators that reach the file system
FILE_OPS = frozenset({"from_file", "save"})
#: operator namespaces a TorchScript archive may call (``torch.X`` is aten; ``ops.NS.X`` / ``torch.ops.NS.X``)
SCRIPT_NAMESPACES = frozenset({"aten", "prim", "quantized", "_quantized"})
#: TorchBind class namespaces a TorchScript archive may hold (quantized models' packed weights)
SCRIPT_CLASSES = frozenset({"quantized"})
#: operator namespaces an exported graph may call, and the higher-order operators (control flow) among them
EXPORT_NAMESPACES = frozenset({"aten", "prims", "quantized_decomposed", "higher_order"})
HIGHER_ORDER = frozenset(
    {"cond", "while_loop", "map_impl", "scan", "invoke_subgraph", "wrap_with_set_grad_enabled", "wrap_with_autocast"}
)
#: Python callables an exported graph may name (torch's deserializer accepts these for symbolic sizes)
EXPORT_FUNCTIONS = re.compile(r"(_operator\.\w+|math\.\w+|torch\.sym_\w+)")
#: a symbolic-shape expression as torch writes it (``Symbol('s77', positive=True, integer=True)``, ``s0 + 1``):
#: numbers, size symbols, operators, sympy's constructors and torch's sympy functions, assumption keywords
EXPR_CHARS = re.compile(r"[\w\s.+\-*/%()<>=!&|~,]*")
EXPR_NAMES = frozenset(
    {
        "Symbol", "Integer", "Rational", "Float", "Mul", "Add", "Pow", "Mod", "FloorDiv", "CeilDiv", "CleanDiv",
        "ModularIndexing", "Where", "PythonMod", "CeilToInt", "FloorToInt", "LShift", "RShift", "PowByNatural",
        "FloatPow", "FloatTrueDiv", "IntTrueDiv", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal",
        "ToFloat", "Identity", "Min", "Max", "IsNonOverlappingAndDenseIndicator", "Eq", "Ne", "Lt", "Le", "Gt",
        "Ge", "StrictLessThan", "StrictGreaterThan", "LessThan", "GreaterThan", "Equality", "Unequality", "And",
        "Or", "Not", "True", "False", "oo", "Abs", "floor", "ceiling", "sqrt", "Piecewise",
        "positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite", "infinite", "zero",
        "nonzero", "rational", "even", "odd", "extended_real", "commutative",
    }
)  # fmt: skip
#: size symbols (``s0``, ``u3``), also quoted as ``Symbol``'s name
EXPR_SYMBOL = re.compile(r"[a-z]{1,4}\d+|(OpaqueUnaryFn|BitwiseFn)_\w+")
#: characters no name in an exported program needs, which would let a name become code in torch.fx's output
NAME_BAD = re.compile(r"[\"\\()=#{}\x00-\x1f\x7f]")
#: free text torch.fx only turns into comments, line by line
FREE_TEXT = frozenset({"stack_trace", "in_spec", "out_spec"})  # (the specs: JSON that torch's pytree reads)


def _refuse(path, what: str, fix: str = "") -> UserError:
    fix = fix or "pass --unsafe only if you trust the file"
    return UserError(f"{path} {what}: loading or running it could run code or write files; {fix}")


# ---------------------------------------------------------------- torch.export (.pt2)
def check_exported(path: Path, load_safely) -> None:
    """Raise :class:`UserError` unless ``path`` is a ``torch.export`` archive whose loading and running run only
    tensor operators. ``load_safely(bytes)``: ``torch.load(..., weights_only=True)`` (raises where it refuses).
    Also a one-line answer, before torch's logged tracebacks, for files that are no such archive."""
    not_archive = "save the program with torch.export.save(program, FILE)"
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a torch.export archive (not a zip file: truncated or corrupt?); {not_archive}")
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            files = _rooted(names)
            if "data.pkl" in files:
                raise UserError(
                    f"{path} was written by torch.save (weights or a pickled module), not by torch.export.save; "
                    "pass weights as --model torchvision:NAME --weights FILE, or export the model to a .pt2"
                )
            if "archive_version" not in files:
                if "serialized_exported_program.json" in files or "version" in files:
                    raise _refuse(path, "is a torch.export archive of the old layout, which torch reads with pickle")
                raise UserError(f"{path} is a zip archive but not a torch.export archive; {not_archive}")
            _check_exported_files(path, files, z, load_safely)
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as e:
        first = str(e).splitlines()[0][:100] if str(e).strip() else type(e).__name__
        raise UserError(
            f"{path} is a torch.export archive that cannot be read, truncated or corrupt? ({first})"
        ) from None


def _rooted(names: list[str]) -> dict[str, str]:
    """``{path inside the archive's root folder: zip entry name}`` (torch writes every record under one folder)."""
    out = {}
    for n in names:
        root, sep, rest = n.partition("/")
        out[rest if sep else n] = n
    return out


def _check_exported_files(path, files: dict[str, str], z: zipfile.ZipFile, load_safely) -> None:
    for f in files:
        if f.startswith("data/aotinductor/"):
            raise _refuse(path, "holds an AOTInductor-compiled program (a shared library)")
        if re.fullmatch(r"data/(weights|constants)/[^/]+\.pt", f):
            raise _refuse(path, f"holds pickled {f.split('/')[1]} of the old layout ({f})")
    for f, entry in files.items():
        if re.fullmatch(r"data/(weights|constants)/[^/]+_config\.json", f):
            _check_payloads(path, json.loads(z.read(entry)), f.split("/")[1])
        elif f.startswith("data/sample_inputs/"):
            try:
                load_safely(z.read(entry))
            except Exception:
                raise _refuse(
                    path, "holds sample inputs that are not plain tensors (torch would unpickle them)"
                ) from None
        elif f.startswith("models/") and f.endswith(".json"):
            _check_program(path, json.loads(z.read(entry)))


def _check_payloads(path, config, kind: str) -> None:
    entries = config.get("config", {}) if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise ValueError(f"{kind} config is not a mapping")
    for name, meta in entries.items():
        meta = meta if isinstance(meta, dict) else {}
        file = str(meta.get("path_name", ""))
        if meta.get("use_pickle"):
            raise _refuse(path, f"stores {kind} '{name}' as a pickle, which torch loads with weights_only=False")
        if kind == "constants" and file.startswith(("custom_obj", "opaque_obj")):
            raise _refuse(path, f"stores constant '{name}' as a pickled object ({file})")
        _check_name(path, name)


def _check_program(path, program) -> None:
    """Every string of the serialized program: operator targets, symbolic expressions, names."""
    stack = [("", program)]
    while stack:
        key, o = stack.pop()
        if isinstance(o, dict):
            for k, v in o.items():
                _check_name(path, k)
                stack.append((k, v))
        elif isinstance(o, list):
            stack.extend((key, v) for v in o)
        elif isinstance(o, str):
            if key == "target":
                _check_target(path, o)
            elif key == "expr_str":
                _check_expr(path, o)
            elif key not in FREE_TEXT:
                _check_name(path, o)


def _check_target(path, target: str) -> None:
    parts = target.split(".")
    if parts[:2] == ["torch", "ops"] and len(parts) >= 4:
        ns, op = parts[2], parts[3]
        if ns in EXPORT_NAMESPACES and op not in FILE_OPS and (ns != "higher_order" or op in HIGHER_ORDER):
            return
    elif EXPORT_FUNCTIONS.fullmatch(target):
        return
    raise _refuse(path, f"calls {target[:80]}, which is not a tensor operation featuremaps runs without --unsafe")


def _check_expr(path, expr: str) -> None:
    quoted = re.findall(r"'([^']*)'", expr)
    plain = re.sub(r"'[^']*'", " ", expr)
    ok = (
        all(EXPR_SYMBOL.fullmatch(q) for q in quoted)
        and EXPR_CHARS.fullmatch(plain)
        and "__" not in plain
        and not re.search(r"(?<!\d)\.|\.(?!\d)", plain)
    )
    names = re.findall(r"(?<![\w.])[A-Za-z_]\w*", plain) if ok else []
    if not ok or any(n not in EXPR_NAMES and not EXPR_SYMBOL.fullmatch(n) for n in names):
        raise _refuse(path, f"holds a shape expression that is not arithmetic ({expr[:60]!r}), which torch evaluates")


def _check_name(path, name: str) -> None:
    if NAME_BAD.search(name):
        raise _refuse(path, f"holds a name torch.fx would paste into generated code ({name[:60]!r})")


# ---------------------------------------------------------------- TorchScript
def check_script(path: Path) -> None:
    """Raise :class:`UserError` unless the code of the TorchScript archive ``path`` calls only tensor operators
    (read as text, before ``torch.jit.load`` runs any of it)."""
    try:
        with zipfile.ZipFile(path) as z:
            for entry in z.namelist():
                if re.search(r"(^|/)code/.+\.py$", entry):
                    _check_script_code(path, entry, z.read(entry).decode("utf-8"))
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, SyntaxError, ValueError) as e:
        raise _refuse(
            path, f"is a TorchScript archive whose code featuremaps cannot check ({type(e).__name__})"
        ) from None


def _dotted(node) -> list[str]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return []


def _check_script_code(path, entry: str, code: str) -> None:
    where = entry.split("/code/", 1)[-1]
    for node in ast.walk(ast.parse(code, filename=entry)):
        words = []
        if isinstance(node, ast.Name):
            words = [node.id]
        elif isinstance(node, ast.Attribute):
            words = [node.attr]
            chain = _dotted(node)
            if chain[:1] == ["__torch__"]:
                chain = chain[1:]
            ns = None
            if chain[:2] in (["torch", "ops"], ["torch", "classes"]) and len(chain) >= 3:
                ns, allowed = chain[2], SCRIPT_NAMESPACES if chain[1] == "ops" else SCRIPT_CLASSES
            elif chain[:1] == ["ops"] and len(chain) >= 2:
                ns, allowed = chain[1], SCRIPT_NAMESPACES
            if ns is not None and ns not in allowed:
                raise _refuse(path, f"is a TorchScript archive whose code ({where}) calls {'.'.join(chain[:4])}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            words = [node.value]
        hit = next((w for w in words if w in FILE_OPS), None)
        if hit is not None:
            raise _refuse(
                path, f"is a TorchScript archive whose code ({where}) calls {hit}, which reads or writes files"
            )
