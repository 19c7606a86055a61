"""Reading mmaction2 ``.py`` configs without running them.

mmengine's ``Config.fromfile`` executes a config file, so a config could run any code. This
module parses the file with `ast` and evaluates only data: literals, ``dict(...)``, lists,
tuples, names assigned earlier in the same file, ``_base_.name`` / ``_base_['name']`` and
``{{_base_.name}}`` references to the bases, ``**`` unpacking, f-strings, ``+ - * / // %`` on
numbers, ``+`` on strings, lists and tuples, repetition (``[128] * n``), subscripts and slices
of known values, item assignment (``x['key'] = value``) and ``.copy()`` of a known dict or
list. Anything else (an import, any other call, a lambda, a loop, attribute access on anything
but ``_base_``) is refused with its file and line: such a config needs ``--trust-config``.

Inheritance follows mmengine's rules (``Config._file2dict``): ``_base_`` is a path or a list
of paths relative to the file; the bases are read in order and may not define the same
top-level name twice; the file's own names are merged into them recursively, dict into dict,
anything else (lists included) replacing what the base had, and a dict holding
``_delete_=True`` replaces the base's dict instead of merging into it.
"""

from __future__ import annotations

import ast
import copy
import operator
import re
from pathlib import Path
from typing import Any

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"
DEPRECATION_KEY = "_deprecation_"
BASE_REFERENCE = re.compile(r"\{\{\s*" + BASE_KEY + r"\.([\w.]+)\s*\}\}")
TEMPLATE = re.compile(r"\{\{.*?\}\}")
MAX_DEPTH = 32  # of _base_ inheritance, against cycles
SNIPPET = 80  # characters of a refused construct quoted in the message
MAX_REPEATED = 100_000  # items of a repeated sequence ([0] * n), against memory bombs

NUMBER_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
SIGNS = {ast.USub: operator.neg, ast.UAdd: operator.pos}


class UnreadableConfig(ValueError):
    """A config this module will not read; the message names the file, line and construct."""


def read_config(path: str | Path) -> dict[str, Any]:
    """Every top-level name of the config at ``path``, its bases merged in, as mmengine's
    ``Config.fromfile(path).to_dict()`` gives it for configs this module can read.

    Raises:
        UnreadableConfig: the file is missing or not Python, or needs executing (the message
            names the construct, the file and line, and ``--trust-config``).
    """
    return _read(Path(path).resolve(), depth=0)


def _read(path: Path, depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise UnreadableConfig(f"{path}: _base_ inheritance deeper than {MAX_DEPTH} (a cycle?)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UnreadableConfig(f"{path}: cannot read it ({error})") from error
    references: dict[str, str] = {}

    def placeholder(match: re.Match) -> str:
        token = f"__base_reference_{len(references)}__"
        references[token] = match[1]
        return repr(token)

    text = BASE_REFERENCE.sub(placeholder, text)
    template = TEMPLATE.search(text)
    if template:
        line = text.count("\n", 0, template.start()) + 1
        raise _needs_execution(
            path, line, f"the template {template[0]} (predefined or environment variable)"
        )
    try:
        module = ast.parse(text, filename=str(path))
    except SyntaxError as error:
        raise UnreadableConfig(f"{path}:{error.lineno}: not valid Python ({error.msg})") from error

    base: dict[str, Any] = {}
    bases = [statement for statement in module.body if _assigns_base(statement)]
    statements = [statement for statement in module.body if not _assigns_base(statement)]
    if bases:  # mmengine follows the first _base_ and ignores any later one
        for relative in _base_paths(path, bases[0]):
            for key, value in _read((path.parent / relative).resolve(), depth + 1).items():
                if key in base:
                    raise UnreadableConfig(
                        f"{path}: the bases both define {key!r}; mmengine refuses that too"
                    )
                base[key] = value

    names = _Evaluator(path, base).run(statements)
    names.pop(DEPRECATION_KEY, None)
    names = _substitute(names, references, base, path)
    return _merge(names, base)


def _assigns_base(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Assign)
        and isinstance(statement.targets[0], ast.Name)
        and statement.targets[0].id == BASE_KEY
    )


def _base_paths(path: Path, statement: ast.Assign) -> list[str]:
    value = _Evaluator(path, {}).value(statement.value)
    paths = value if isinstance(value, list) else [value]
    for relative in paths:
        if not isinstance(relative, str):
            raise UnreadableConfig(
                f"{path}:{statement.lineno}: _base_ must be a path or a list of paths, "
                f"got {relative!r}"
            )
        if "::" in relative:
            raise _needs_execution(
                path, statement.lineno, f"the package config {relative!r} (mmengine imports it)"
            )
    return paths


def _needs_execution(path: Path, line: int, construct: str) -> UnreadableConfig:
    return UnreadableConfig(
        f"{path}:{line}: {construct} can only be run, not read; configs are read as data and "
        f"never executed. If you trust the file, pass --trust-config to let mmengine run it"
    )


class _Evaluator:
    """Evaluates the statements of one config file as data (see the module docstring)."""

    def __init__(self, path: Path, base: dict[str, Any]):
        self.path = path
        self.base = base
        self.names: dict[str, Any] = {}

    def run(self, statements: list[ast.stmt]) -> dict[str, Any]:
        for statement in statements:
            self.statement(statement)
        return {key: value for key, value in self.names.items() if not key.startswith("__")}

    def refuse(self, node: ast.AST, construct: str) -> UnreadableConfig:
        return _needs_execution(self.path, getattr(node, "lineno", 0), construct)

    def statement(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Expr):
            self.value(node.value)  # a docstring, or refused
            return
        if isinstance(node, ast.Pass):
            return
        if isinstance(node, ast.Assign):
            value = self.value(node.value)
            for target in node.targets:
                self.assign(target, value)
            return
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            self.assign(node.target, self.value(node.value))
            return
        raise self.refuse(node, _describe(node))

    def assign(self, target: ast.expr, value: Any) -> None:
        if isinstance(target, ast.Name):
            self.names[target.id] = value
        elif isinstance(target, ast.Subscript):
            container = self.value(target.value)
            if not isinstance(container, (dict, list)):
                raise self.refuse(target, f"item assignment on a {type(container).__name__}")
            try:
                container[self.value(target.slice)] = value
            except (IndexError, TypeError) as error:
                raise UnreadableConfig(f"{self.path}:{target.lineno}: {error}") from error
        else:
            raise self.refuse(target, f"assignment to {_describe(target)}")

    def value(self, node: ast.expr) -> Any:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise self.refuse(node, _describe(node))
        return method(node)

    def _Constant(self, node: ast.Constant) -> Any:
        return node.value

    def _Name(self, node: ast.Name) -> Any:
        if node.id == BASE_KEY:
            return self.base
        if node.id not in self.names:
            raise self.refuse(node, f"the name {node.id!r}, not assigned earlier in the file,")
        return self.names[node.id]

    def _List(self, node: ast.List) -> list:
        return [item for element in node.elts for item in self.elements(element)]

    def _Tuple(self, node: ast.Tuple) -> tuple:
        return tuple(item for element in node.elts for item in self.elements(element))

    def elements(self, node: ast.expr) -> list:
        if isinstance(node, ast.Starred):
            value = self.value(node.value)
            if not isinstance(value, (list, tuple)):
                raise self.refuse(node, f"unpacking a {type(value).__name__}")
            return list(value)
        return [self.value(node)]

    def _Dict(self, node: ast.Dict) -> dict:
        result: dict = {}
        for key, value in zip(node.keys, node.values, strict=False):
            if key is None:
                result.update(self.mapping(value))
            else:
                result[self.value(key)] = self.value(value)
        return result

    def mapping(self, node: ast.expr) -> dict:
        value = self.value(node)
        if not isinstance(value, dict):
            raise self.refuse(node, f"** unpacking of a {type(value).__name__}")
        return value

    def _Call(self, node: ast.Call) -> Any:
        function = node.func
        if isinstance(function, ast.Name) and function.id == "dict" and "dict" not in self.names:
            if len(node.args) > 1:
                raise self.refuse(node, "dict() with several positional arguments")
            result: dict = dict(self.mapping(node.args[0])) if node.args else {}
            for keyword in node.keywords:
                if keyword.arg is None:
                    result.update(self.mapping(keyword.value))
                else:
                    result[keyword.arg] = self.value(keyword.value)
            return result
        if (
            isinstance(function, ast.Attribute)
            and function.attr == "copy"
            and not node.args
            and not node.keywords
        ):
            value = self.value(function.value)
            if isinstance(value, (dict, list)):
                return value.copy()
        raise self.refuse(node, f"the call {_snippet(node)}")

    def _Attribute(self, node: ast.Attribute) -> Any:
        root = node.value
        while isinstance(root, (ast.Attribute, ast.Subscript)):
            root = root.value
        if not (isinstance(root, ast.Name) and root.id == BASE_KEY):
            raise self.refuse(node, f"the attribute access {ast.unparse(node)}")
        value = self.value(node.value)
        if not isinstance(value, dict) or node.attr not in value:
            raise UnreadableConfig(
                f"{self.path}:{node.lineno}: {ast.unparse(node)}: the bases define no such value"
            )
        return value[node.attr]

    def _Subscript(self, node: ast.Subscript) -> Any:
        container = self.value(node.value)
        index = self.value(node.slice)
        if not isinstance(container, (dict, list, tuple, str)):
            raise self.refuse(node, f"indexing a {type(container).__name__}")
        try:
            return container[index]
        except (KeyError, IndexError, TypeError) as error:
            raise UnreadableConfig(
                f"{self.path}:{node.lineno}: {ast.unparse(node)}: {type(error).__name__} {error}"
            ) from error

    def _Slice(self, node: ast.Slice) -> slice:
        parts = [
            None if part is None else self.value(part)
            for part in (node.lower, node.upper, node.step)
        ]
        if not all(part is None or _integer(part) for part in parts):
            raise self.refuse(node, "a slice with bounds that are not integers")
        return slice(*parts)

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        operand = self.value(node.operand)
        if type(node.op) in SIGNS and _number(operand):
            return SIGNS[type(node.op)](operand)
        raise self.refuse(node, f"the operation {ast.unparse(node)}")

    def _BinOp(self, node: ast.BinOp) -> Any:
        left, right = self.value(node.left), self.value(node.right)
        kind = type(node.op)
        joinable = (str, list, tuple)
        if kind in NUMBER_OPERATORS and _number(left) and _number(right):
            try:
                return NUMBER_OPERATORS[kind](left, right)
            except ZeroDivisionError as error:
                raise UnreadableConfig(f"{self.path}:{node.lineno}: {error}") from error
        if kind is ast.Add and type(left) is type(right) and isinstance(left, joinable):
            return left + right
        if kind is ast.Mult and isinstance(left, joinable) and _integer(right):
            if len(left) * right > MAX_REPEATED:
                raise self.refuse(node, f"a sequence of over {MAX_REPEATED} items")
            return left * right
        raise self.refuse(
            node,
            f"the operation {ast.unparse(node)} on {type(left).__name__} and "
            f"{type(right).__name__}",
        )

    def _JoinedStr(self, node: ast.JoinedStr) -> str:
        parts = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                parts.append(part.value)
                continue
            value = self.value(part.value)
            if not isinstance(value, (str, int, float, bool, type(None))):
                raise self.refuse(part, f"formatting a {type(value).__name__} in an f-string")
            value = {ord("r"): repr, ord("a"): ascii, ord("s"): str}.get(part.conversion, _same)(
                value
            )
            spec = "" if part.format_spec is None else self.value(part.format_spec)
            try:
                parts.append(format(value, spec))
            except ValueError as error:
                raise UnreadableConfig(f"{self.path}:{part.lineno}: {error}") from error
        return "".join(parts)


def _same(value: Any) -> Any:
    return value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _describe(node: ast.AST) -> str:
    """What a refused construct is, in words."""
    words = {
        ast.Import: "an import",
        ast.ImportFrom: "an import",
        ast.With: "a with block (read_base() or another context manager)",
        ast.FunctionDef: "a function definition",
        ast.ClassDef: "a class definition",
        ast.Lambda: "a lambda",
        ast.For: "a loop",
        ast.While: "a loop",
        ast.If: "an if statement",
        ast.ListComp: "a comprehension",
        ast.DictComp: "a comprehension",
        ast.GeneratorExp: "a comprehension",
    }
    return words.get(type(node), f"the {type(node).__name__} {_snippet(node)}")


def _snippet(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= SNIPPET else text[: SNIPPET - 3] + "..."


def _substitute(value: Any, references: dict[str, str], base: dict, path: Path) -> Any:
    """Replace ``{{_base_.a.b}}`` placeholders by the bases' values (as mmengine: only where
    the placeholder is a whole value), on a deep copy."""
    if isinstance(value, dict):
        return {key: _substitute(item, references, base, path) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_substitute(item, references, base, path) for item in value)
    if isinstance(value, str) and value in references:
        found: Any = base
        for key in references[value].split("."):
            if not isinstance(found, dict) or key not in found:
                raise UnreadableConfig(
                    f"{path}: {{{{_base_.{references[value]}}}}}: the bases define no such value"
                )
            found = found[key]
        return copy.deepcopy(found)
    return value


def _merge(child: dict, base: dict) -> dict:
    """mmengine's ``Config._merge_a_into_b``: ``child`` merged into a copy of ``base``."""
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, dict):
            if key in merged and not value.pop(DELETE_KEY, False):
                if not isinstance(merged[key], dict):
                    raise UnreadableConfig(
                        f"{key}: a dict in the config but a {type(merged[key]).__name__} in its "
                        f"base; set {DELETE_KEY}=True to replace it"
                    )
                merged[key] = _merge(value, merged[key])
            else:
                merged[key] = value
        else:
            merged[key] = value
    return merged
