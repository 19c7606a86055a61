"""One stage of the backbone: a stack of blocks, then optional patch merging."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from videoswin_tf.architectures import DEFAULT_WINDOW
from videoswin_tf.layers.block import SwinTransformerBlock3D
from videoswin_tf.layers.norm import norm_config
from videoswin_tf.layers.patch_merging import PatchMerging


@keras.saving.register_keras_serializable(package="videoswin_tf")
class SwinStage(keras.layers.Layer):
    """``depth`` blocks alternating regular and shifted windows (shift = window // 2), then
    `PatchMerging` unless this is the last stage.

    Args:
        dim: channels ``C`` of the stage.
        depth: number of blocks.
        num_heads: attention heads of every block.
        window_size: configured window ``(Wd, Wh, Ww)``.
        mlp_ratio, qkv_bias, qk_scale, drop, attn_drop: passed to every block.
        drop_path: stochastic depth rate per block (a list of ``depth`` floats) or one rate.
        norm_layer: normalization, as accepted by `norm_config`.
        downsample: end the stage with `PatchMerging`.

    Call arguments:
        x: ``(B, D, H, W, C)``.

    Returns:
        ``(features, x)``: ``features`` ``(B, D, H, W, C)`` is the blocks' output, ``x`` is
        ``(B, D, ceil(H / 2), ceil(W / 2), 2C)`` after merging, or ``features`` itself when the
        stage does not downsample.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: Sequence[int] = DEFAULT_WINDOW,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float | Sequence[float] = 0.0,
        norm_layer: Any = None,
        downsample: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        drop_path = [drop_path] * depth if isinstance(drop_path, (int, float)) else drop_path
        if len(drop_path) != depth:
            raise ValueError(f"drop_path has {len(drop_path)} rates for {depth} blocks")
        self.dim = dim
        self.depth = depth
        self.num_heads = num_heads
        self.window_size = tuple(window_size)
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.qk_scale = qk_scale
        self.drop = drop
        self.attn_drop = attn_drop
        self.drop_path = [float(rate) for rate in drop_path]
        self.norm_layer = norm_config(norm_layer)
        self.downsample = downsample

        shift_size = tuple(w // 2 for w in self.window_size)
        self.blocks = [
            SwinTransformerBlock3D(
                dim,
                num_heads,
                window_size=self.window_size,
                shift_size=(0, 0, 0) if index % 2 == 0 else shift_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop=drop,
                attn_drop=attn_drop,
                drop_path=rate,
                norm_layer=self.norm_layer,
                name=f"blocks_{index}",
                dtype=self.dtype_policy,
            )
            for index, rate in enumerate(self.drop_path)
        ]
        self.merging = (
            PatchMerging(
                dim, norm_layer=self.norm_layer, name="downsample", dtype=self.dtype_policy
            )
            if downsample
            else None
        )

    def build(self, input_shape):
        for block in self.blocks:
            block.build((None, None, None, None, self.dim))
        if self.merging is not None:
            self.merging.build((None, None, None, None, self.dim))

    def call(self, x, training=None):
        for block in self.blocks:
            x = block(x, training=training)
        return x, (x if self.merging is None else self.merging(x))

    def compute_output_shape(self, input_shape):
        merged = (
            input_shape if self.merging is None else self.merging.compute_output_shape(input_shape)
        )
        return input_shape, merged

    def get_config(self):
        return {
            **super().get_config(),
            "dim": self.dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "window_size": self.window_size,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "qk_scale": self.qk_scale,
            "drop": self.drop,
            "attn_drop": self.attn_drop,
            "drop_path": self.drop_path,
            "norm_layer": self.norm_layer,
            "downsample": self.downsample,
        }
