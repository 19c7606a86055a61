"""Stochastic depth."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="videoswin_tf")
class DropPath(keras.layers.Layer):
    """Drops the whole residual branch per sample during training (stochastic depth).

    Kept samples are scaled by ``1 / (1 - rate)``; at inference the layer is the identity.

    Args:
        rate: probability of dropping a sample's branch, in ``[0, 1)``.
        seed: optional seed of the random draws.

    Call arguments:
        x: ``(B, ...)``.
        training: drop only when true.
    """

    def __init__(self, rate: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"DropPath rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask_shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        mask = keras.random.uniform(mask_shape, seed=self.seed_generator, dtype=x.dtype)
        mask = ops.cast(mask < keep, x.dtype)
        return x * mask / keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
