"""The (shifted) window transformer block."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from videoswin_tf.architectures import DEFAULT_WINDOW
from videoswin_tf.layers.attention import WindowAttention3D
from videoswin_tf.layers.drop_path import DropPath
from videoswin_tf.layers.mlp import Mlp
from videoswin_tf.layers.norm import build_norm, norm_config
from videoswin_tf.layers.tracing import in_openvino_trace
from videoswin_tf.layers.windows import (
    effective_window,
    pad_to_multiple,
    shifted_window_gather,
    shifted_window_labels,
    shifted_window_mask,
    shifted_window_mask_factors,
    shifted_window_regions,
    take_tokens,
    window_partition,
    window_reverse,
)

# Rows (tokens) per chunk of the MLP branch in the graph traced for OpenVINO
# (`SwinTransformerBlock3D.traced_mlp_branch`): the chunk's hidden activations (rows x 4C,
# 2.4 MB in Swin-T's first stage) stay in a CPU's L2/L3 cache between the two products.
TRACED_MLP_ROWS = 1568


@keras.saving.register_keras_serializable(package="videoswin_tf")
class SwinTransformerBlock3D(keras.layers.Layer):
    """Video Swin block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``.

    The attention branch normalizes, zero-pads ``D, H, W`` to multiples of the window (padded
    tokens are not masked), rolls by ``-shift`` when shifted, attends within windows (with the
    shifted-window mask), reverses the windows and the roll, and crops the padding. Window and
    shift shrink on axes where the feature map is not larger than the window.

    Args:
        dim: channels ``C``.
        num_heads: attention heads.
        window_size: configured window ``(Wd, Wh, Ww)``.
        shift_size: configured shift ``(Sd, Sh, Sw)``; ``(0, 0, 0)`` for a regular block.
        mlp_ratio: hidden channels of the MLP over ``C``.
        qkv_bias: learn a bias for query, key and value.
        qk_scale: query scale; ``None`` for ``head_dim ** -0.5``.
        drop: dropout rate of the projections and the MLP.
        attn_drop: dropout rate of the attention weights.
        drop_path: stochastic depth rate of both residual branches.
        norm_layer: normalization, as accepted by `norm_config`.

    Call arguments:
        x: ``(B, D, H, W, C)``; returns the same shape.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: Sequence[int] = DEFAULT_WINDOW,
        shift_size: Sequence[int] = (0, 0, 0),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_layer: Any = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for axis, (win, sh) in enumerate(zip(window_size, shift_size, strict=False)):
            if not 0 <= sh < win:
                raise ValueError(
                    f"shift_size[{axis}] must be in [0, window_size[{axis}]), "
                    f"got shift {tuple(shift_size)} for window {tuple(window_size)}"
                )
        self.dim = dim
        self.num_heads = num_heads
        self.window_size = tuple(window_size)
        self.shift_size = tuple(shift_size)
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.qk_scale = qk_scale
        self.drop = drop
        self.attn_drop = attn_drop
        self.drop_path_rate = drop_path
        self.norm_layer = norm_config(norm_layer)

        self.norm1 = build_norm(self.norm_layer, "norm1", self.dtype_policy)
        self.attn = WindowAttention3D(
            dim,
            self.window_size,
            num_heads,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop=attn_drop,
            proj_drop=drop,
            name="attn",
            dtype=self.dtype_policy,
        )
        self.drop_path = DropPath(drop_path, name="drop_path", dtype=self.dtype_policy)
        self.norm2 = build_norm(self.norm_layer, "norm2", self.dtype_policy)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop, name="mlp", dtype=self.dtype_policy)

    def build(self, input_shape):
        channels_last = (None, None, None, None, self.dim)
        # drop_path too: built at its first call instead, it would be built inside the graph
        # torch.compile traces, and break it (Keras' torch layers track variables on build)
        for layer in (self.norm1, self.attn, self.norm2, self.mlp, self.drop_path):
            layer.build(channels_last)

    def attention_branch(self, x, training=None):
        """``attn(x)`` over (shifted) windows of the normalized ``x``; ``(B, D, H, W, C)`` in
        and out."""
        depth, height, width = x.shape[1:4]
        window, shift = effective_window((depth, height, width), self.window_size, self.shift_size)
        x = pad_to_multiple(x, window)  # (B, Dp, Hp, Wp, C)
        if any(shift) and in_openvino_trace():
            x = self.factored_attention(x, window, shift, training)
        else:
            x = self.windowed_attention(x, window, shift, training)
        return x[:, :depth, :height, :width, :]

    def windowed_attention(self, x, window, shift, training):
        """Roll by ``-shift`` (if any), attend within windows with the shifted-window mask,
        reverse both. ``x``: padded ``(B, Dp, Hp, Wp, C)``; returns the same shape."""
        padded_size = tuple(x.shape[1:4])
        shifted = any(shift)
        mask = None
        if shifted:
            x = ops.roll(x, shift=[-s for s in shift], axis=[1, 2, 3])
            regions = shifted_window_labels(padded_size, window, shift)  # (nWindows, N')
            mask = shifted_window_mask(regions, self.compute_dtype)  # (nWindows, N', N')

        windows = window_partition(x, window)  # (B * nWindows, N', C)
        windows = self.attn(windows, attention_mask=mask, training=training)
        x = window_reverse(windows, window, padded_size)  # (B, Dp, Hp, Wp, C)
        if shifted:
            x = ops.roll(x, shift=list(shift), axis=[1, 2, 3])
        return x

    def factored_attention(self, x, window, shift, training):
        """`windowed_attention` of a shifted block for OpenVINO (`in_openvino_trace`): one
        gather rolls and partitions (`shifted_window_gather`), the mask enters attention as
        extra query and key columns (`shifted_window_mask_factors`), so that OpenVINO folds
        one ``(heads, N', N')`` bias constant per block and no mask, and one gather puts the
        tokens back. All windows are attended in one pass."""
        padded_size = tuple(x.shape[1:4])
        gather, scatter = shifted_window_gather(padded_size, window, shift)
        regions = shifted_window_regions(padded_size, window, shift)  # (nWindows, N')
        windows = take_tokens(x, gather, regions.shape[1:])  # (B * nWindows, N', C)
        factors = shifted_window_mask_factors(regions)
        windows = self.attn(windows, mask_factors=factors, training=training)
        return take_tokens(windows, scatter, padded_size)  # (B, Dp, Hp, Wp, C)

    def call(self, x, training=None):
        if in_openvino_trace():
            return self.traced_call(x)
        attended = self.attention_branch(self.norm1(x), training=training)
        x = x + self.drop_path(attended, training=training)
        return x + self.drop_path(self.mlp(self.norm2(x), training=training), training=training)

    def traced_call(self, x):
        """`call` as traced for OpenVINO (`in_openvino_trace`), for inference: the residual
        stream is ``(tokens, C)`` rows, which OpenVINO's MVN (`LayerNormalization`) and the
        MLP's products read as they are; on ``(B, D, H, W, C)`` OpenVINO's CPU plugin copied
        each residual sum before the norm (Swin-T 1x32x224x224: 26 reorders, 1.3% of the node
        time; 1.5% less CPU time without them, one thread). ``x``: ``(B, D, H, W, C)``;
        returns the same shape."""
        shape = tuple(x.shape[1:])
        rows = ops.reshape(x, (-1, self.dim))  # (B * D * H * W, C)
        attended = self.attention_branch(ops.reshape(self.norm1(rows), (-1, *shape)))
        rows = rows + ops.reshape(attended, (-1, self.dim))
        return ops.reshape(self.traced_mlp_branch(rows), (-1, *shape))

    def traced_mlp_branch(self, rows):
        """``rows + mlp(norm2(rows))`` as traced for OpenVINO (`in_openvino_trace`): over
        chunks of `TRACED_MLP_ROWS` rows (where their number is known), concatenated, which
        OpenVINO does in place, so that a chunk's
        hidden activations stay in the CPU's cache from the first product to the second
        instead of going through memory (Swin-T's first stage: 77 MB in one pass).

        Swin-T 1x32x224x224, one process alternating the IRs, 2 shared Zen 5 cores: 784-row
        chunks 2.6-6.8% less CPU time than one pass, 1568-row chunks 2.8-5.6%, 3136-row 2.9%
        (medians of 10, load 1.2-1.6); with the attention in chunks too, see
        `WindowAttention3D.traced_call`. Each chunk is nodes to convert: 784-row chunks took
        OpenVINO's conversion of the model from 3.4 to 11.1 s, 1568-row ones to 8.0 s (with
        the attention's chunks). ``rows``: ``(tokens, C)``; returns the same shape."""
        count = rows.shape[0]
        if count is None or count <= TRACED_MLP_ROWS:
            return rows + self.mlp(self.norm2(rows))
        parts = ops.split(rows, list(range(TRACED_MLP_ROWS, count, TRACED_MLP_ROWS)), axis=0)
        return ops.concatenate([part + self.mlp(self.norm2(part)) for part in parts], axis=0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "dim": self.dim,
            "num_heads": self.num_heads,
            "window_size": self.window_size,
            "shift_size": self.shift_size,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "qk_scale": self.qk_scale,
            "drop": self.drop,
            "attn_drop": self.attn_drop,
            "drop_path": self.drop_path_rate,
            "norm_layer": self.norm_layer,
        }
