"""The configurable normalization layer: one serializable description, many instances.

The seed API takes ``norm_layer`` as a factory, e.g.
``functools.partial(keras.layers.LayerNormalization, epsilon=1e-5)``. A factory cannot be
saved in a model config, so it is turned into the serialized config of the layer it makes; every
layer of the model then builds its norms from that config.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import keras
from keras import ops

from videoswin_tf.layers.switch import TraceSwitch

NormLayer = dict | Callable[..., keras.layers.Layer] | None

# Whether `LayerNormalization` is traced in the pattern that OpenVINO fuses (`fusable_norm`).
_FUSABLE = TraceSwitch()


@contextlib.contextmanager
def fusable_norm() -> Iterator[None]:
    """Within this block, `LayerNormalization` traces its normalization over rows ``(tokens, C)`` as
    ``(x - mean) / sqrt(var + eps) * gamma + beta``, the pattern OpenVINO fuses into one MVN
    node with the scale and shift (Keras' ``x * inv + (beta - mean * inv)`` on
    ``(B, D, H, W, C)`` runs as two reductions and two element-wise passes; the pattern on 5D
    tensors becomes MVN, which OpenVINO's CPU plugin splits again). Used for the graphs
    `videoswin_tf.inference` traces for OpenVINO; TensorFlow, JAX and torch keep Keras' own
    formula. Same weights; results equal to float32 rounding.
    """
    with _FUSABLE.turned_on():
        yield


@keras.saving.register_keras_serializable(package="videoswin_tf")
class LayerNormalization(keras.layers.LayerNormalization):
    """Keras' ``LayerNormalization``, traced in OpenVINO's MVN pattern within `fusable_norm`.

    Takes the arguments of ``keras.layers.LayerNormalization`` and computes the same function;
    `build_norm` makes one wherever a norm config describes Keras' layer. It keeps Keras'
    class name because Keras names a layer's variables in ``.weights.h5`` files after it
    (``layers/layer_normalization/vars``): a file written before or by Keras' own layer loads.

    Call arguments:
        inputs: ``(..., C)``, normalized over ``C``; returns the same shape.
    """

    def call(self, inputs):
        over_last = self.axis in (-1, [-1], [len(inputs.shape) - 1])
        if not (_FUSABLE.on and over_last and self.center and self.scale) or self.rms_scaling:
            return super().call(inputs)
        shape = ops.shape(inputs)
        rows = ops.reshape(inputs, (-1, shape[-1]))  # (tokens, C)
        # Axes as a list: OpenVINO's MVN takes its axes as a 1D tensor.
        centred = rows - ops.mean(rows, axis=[-1], keepdims=True)
        variance = ops.mean(ops.square(centred), axis=[-1], keepdims=True)
        rows = centred / ops.sqrt(variance + self.epsilon) * self.gamma + self.beta
        return ops.reshape(rows, shape)


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
    """A new normalization layer from a `norm_config` dict: a `LayerNormalization` where the config
    describes Keras' ``LayerNormalization``, else the layer the config describes."""
    layer_config = {**config["config"], "name": name, "dtype": dtype}
    if (config.get("module"), config.get("class_name")) == ("keras.layers", "LayerNormalization"):
        return LayerNormalization.from_config(layer_config)
    return keras.layers.deserialize({**config, "config": layer_config})
