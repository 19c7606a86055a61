"""The transformer block's feed-forward network."""

from __future__ import annotations

import math

import keras
from keras import ops


def exact_gelu(x):
    """Exact GELU, ``0.5 * x * (1 + erf(x / sqrt(2)))``.

    Written out on every backend but torch: Keras' ``gelu(approximate=False)`` on TensorFlow
    2.21 computes the same function with ``Erfc``, which tf2onnx cannot convert; ``erf``
    converts to ONNX ``Erf`` (and to the pattern ONNX Runtime fuses into its GELU kernel).
    On torch, which runs each of the five element-wise steps as its own pass over the MLP's
    largest tensor, Keras' exact GELU is torch's one-pass kernel.
    """
    if keras.backend.backend() == "torch":
        return ops.gelu(x, approximate=False)
    return 0.5 * x * (1.0 + ops.erf(x * (1.0 / math.sqrt(2.0))))


@keras.saving.register_keras_serializable(package="videoswin_tf")
class Mlp(keras.layers.Layer):
    """``fc1 -> exact (erf) GELU -> dropout -> fc2 -> dropout``.

    Args:
        dim: input and output channels ``C``.
        hidden_dim: channels of the hidden layer.
        drop: dropout rate after the activation and after ``fc2``.

    Call arguments:
        x: ``(..., C)``; returns ``(..., C)``.
    """

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.hidden_dim = hidden_dim
        self.drop = drop
        self.fc1 = keras.layers.Dense(hidden_dim, name="fc1", dtype=self.dtype_policy)
        self.fc2 = keras.layers.Dense(dim, name="fc2", dtype=self.dtype_policy)
        self.dropout = keras.layers.Dropout(drop, name="dropout", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.fc1.build(input_shape)
        self.fc2.build((*tuple(input_shape[:-1]), self.hidden_dim))

    def call(self, x, training=None):
        x = exact_gelu(self.fc1(x))
        x = self.dropout(x, training=training)
        return self.dropout(self.fc2(x), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "dim": self.dim,
            "hidden_dim": self.hidden_dim,
            "drop": self.drop,
        }
