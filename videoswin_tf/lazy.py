"""Public names of a package imported from their modules on first use (PEP 562).

A package's ``__init__`` lists what it exports as a table, module -> names, and gets its
module-level ``__getattr__`` and ``__dir__`` from `exports`; importing the package then imports
none of those modules. This module imports nothing but the standard library.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence


def exports(
    package: str, table: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` for the names in ``table``.

    Args:
        package: the package's ``__name__``.
        table: module path -> the public names it defines, e.g.
            ``{"videoswin_tf.model": ("TFSwinTransformer3D",)}``.

    Returns:
        ``(__getattr__, __dir__)``. ``__getattr__(name)`` imports the name's module, stores the
        value in the package (later lookups do not come back) and returns it; for a name that is
        not in ``table`` it raises ``AttributeError``, as a plain module does, so
        ``from package import submodule`` still finds submodules.
    """
    modules = {name: module for module, names in table.items() for name in names}

    def __getattr__(name: str) -> object:
        if name not in modules:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(modules[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *modules})

    return __getattr__, __dir__
