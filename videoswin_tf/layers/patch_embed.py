"""Video to patch tokens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from videoswin_tf.architectures import DEFAULT_PATCH
from videoswin_tf.layers.norm import build_norm, norm_config
from videoswin_tf.layers.windows import pad_to_multiple


@keras.saving.register_keras_serializable(package="videoswin_tf")
class PatchEmbed3D(keras.layers.Layer):
    """Zero-pads the clip to multiples of the patch, embeds each patch, then normalizes.

    Args:
        patch_size: ``(Pd, Ph, Pw)``; the Conv3D kernel and stride.
        embed_dim: output channels ``C``.
        in_channels: channels of the clip (3 for RGB).
        norm_layer: normalization after the projection, as accepted by `norm_config`; ignored
            when ``patch_norm`` is false.
        patch_norm: normalize the patch tokens.

    Call arguments:
        x: ``(B, T, H, W, in_channels)``.

    Returns:
        ``(B, ceil(T / Pd), ceil(H / Ph), ceil(W / Pw), C)``.
    """

    def __init__(
        self,
        patch_size: Sequence[int] = DEFAULT_PATCH,
        embed_dim: int = 96,
        in_channels: int = 3,
        norm_layer: Any = None,
        patch_norm: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.patch_size = tuple(patch_size)
        self.embed_dim = embed_dim
        self.in_channels = in_channels
        self.norm_layer = norm_config(norm_layer)
        self.patch_norm = patch_norm
        self.proj = keras.layers.Conv3D(
            embed_dim,
            kernel_size=self.patch_size,
            strides=self.patch_size,
            name="proj",
            dtype=self.dtype_policy,
        )
        self.norm = build_norm(self.norm_layer, "norm", self.dtype_policy) if patch_norm else None

    def build(self, input_shape):
        self.proj.build((None, None, None, None, self.in_channels))
        if self.norm is not None:
            self.norm.build((None, None, None, None, self.embed_dim))

    def call(self, x):
        x = self.proj(pad_to_multiple(x, self.patch_size))  # (B, D, H, W, C)
        return x if self.norm is None else self.norm(x)

    def compute_output_shape(self, input_shape):
        batch, *sizes, _ = input_shape
        out = [
            None if s is None else -(-s // p) for s, p in zip(sizes, self.patch_size, strict=False)
        ]
        return (batch, *out, self.embed_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "in_channels": self.in_channels,
            "norm_layer": self.norm_layer,
            "patch_norm": self.patch_norm,
        }
