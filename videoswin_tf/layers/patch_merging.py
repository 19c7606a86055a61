"""Spatial 2x2 downsampling between stages."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from videoswin_tf.layers.norm import build_norm, norm_config
from videoswin_tf.layers.windows import pad_to_multiple


@keras.saving.register_keras_serializable(package="videoswin_tf")
class PatchMerging(keras.layers.Layer):
    """Merges each 2x2 group of tokens in H and W (not D) into one token of twice the channels.

    H and W are zero-padded to even sizes; the four neighbours are concatenated in the order
    ``(h, w) = (0, 0), (1, 0), (0, 1), (1, 1)``, normalized over ``4C`` and projected to ``2C``
    without bias.

    Args:
        dim: input channels ``C``.
        norm_layer: normalization over ``4C``, as accepted by `norm_config`.

    Call arguments:
        x: ``(B, D, H, W, C)``.

    Returns:
        ``(B, D, ceil(H / 2), ceil(W / 2), 2C)``.
    """

    def __init__(self, dim: int, norm_layer: Any = None, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.norm_layer = norm_config(norm_layer)
        self.norm = build_norm(self.norm_layer, "norm", self.dtype_policy)
        self.reduction = keras.layers.Dense(
            2 * dim, use_bias=False, name="reduction", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        self.norm.build((None, None, None, None, 4 * self.dim))
        self.reduction.build((None, None, None, None, 4 * self.dim))

    def call(self, x):
        x = pad_to_multiple(x, (2, 2), axes=(2, 3))  # (B, D, H', W', C), H' and W' even
        depth, height, width = (
            ops.shape(x)[axis] if x.shape[axis] is None else x.shape[axis] for axis in (1, 2, 3)
        )
        channels = self.dim
        x = ops.reshape(x, (-1, height // 2, 2, width // 2, 2, channels))  # (B * D, H'/2, h, ...)
        # One transpose gathers the four neighbours, w-major: (h, w) = (0, 0), (1, 0), (0, 1),
        # (1, 1) (OpenVINO ran four strided slices and a concat as slices, concat and a reorder).
        x = ops.transpose(x, (0, 1, 3, 4, 2, 5))  # (B * D, H'/2, W'/2, w, h, C)
        x = ops.reshape(x, (-1, depth, height // 2, width // 2, 4 * channels))
        return self.reduction(self.norm(x))

    def compute_output_shape(self, input_shape):
        batch, depth, height, width, _ = input_shape
        half = [None if s is None else -(-s // 2) for s in (height, width)]
        return (batch, depth, *half, 2 * self.dim)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "norm_layer": self.norm_layer}
