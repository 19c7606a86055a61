"""Dotted paths to the layers and variables of a model, as weight-file layouts and the
converter's mapping rules name them.

A path walks attributes, with numbers indexing lists: ``stages.1.blocks.0.attn.qkv.kernel`` is
``model.stages[1].blocks[0].attn.qkv.kernel``. This module imports nothing.
"""

from __future__ import annotations

from typing import Any


def resolve(model: Any, path: str) -> Any | None:
    """The object at the dotted ``path`` on ``model`` (a layer, a variable, a list of them), or
    ``None`` where an attribute is missing or ``None`` or an index is past a list's end.

    Args:
        model: any object, usually a Keras model (`TFSwinTransformer3D`, `VideoSwinBackbone`).
        path: attribute names and list indices joined by dots, e.g. ``"stages.0.blocks.1"``.
    """
    node = model
    for part in path.split("."):
        if part.isdigit():
            index = int(part)
            node = node[index] if isinstance(node, (list, tuple)) and index < len(node) else None
        else:
            node = getattr(node, part, None)
        if node is None:
            return None
    return node
