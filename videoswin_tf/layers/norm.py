"""The configurable normalization layer: one serializable description, many instances.

The seed API takes ``norm_layer`` as a factory, e.g.
``functools.partial(keras.layers.LayerNormalization, epsilon=1e-5)``. A factory cannot be
saved in a model config, so it is turned into the serialized config of the layer it makes; every
layer of the model then builds its norms from that config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

NormLayer = dict | Callable[..., keras.layers.Layer] | None


def norm_config(norm_layer: NormLayer = None) -> dict[str, Any]:
    """Serialized config of the normalization layer that ``norm_layer`` describes.

    Args:
        norm_layer: ``None`` for LayerNormalization with epsilon 1e-5 (the reference's
            ``nn.LayerNorm``), a callable returning a Keras layer, or a config already made
            by this function.

    Returns:
        A ``keras.layers.serialize`` dict without ``name`` and ``dtype``, which each
        instance sets itself.
    """
    if isinstance(norm_layer, dict):
        return norm_layer
    layer = keras.layers.LayerNormalization(epsilon=1e-5) if norm_layer is None else norm_layer()
    config = keras.layers.serialize(layer)
    config["config"] = {
        key: value for key, value in config["config"].items() if key not in ("name", "dtype")
    }
    return config


def build_norm(config: dict[str, Any], name: str, dtype: Any = None) -> keras.layers.Layer:
    """A new normalization layer from a `norm_config` dict."""
    layer_config = {**config["config"], "name": name, "dtype": dtype}
    return keras.layers.deserialize({**config, "config": layer_config})
