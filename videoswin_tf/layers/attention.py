"""Window multi-head self-attention with a 3D relative position bias."""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from videoswin_tf.layers.windows import bias_gather_index, bias_table_size


@keras.saving.register_keras_serializable(package="videoswin_tf")
class WindowAttention3D(keras.layers.Layer):
    """Multi-head self-attention inside windows, with a learned relative position bias.

    The bias table ``((2Wd-1)(2Wh-1)(2Ww-1), heads)`` is a weight; the index into it is
    computed from the window size and never stored. When the feature map is smaller than the
    window, the window holds ``N' < N`` tokens and the bias uses ``index[:N', :N']`` of the
    full-window index, exactly as the reference does.

    Args:
        dim: channels ``C``.
        window_size: configured window ``(Wd, Wh, Ww)``; sizes the bias table.
        num_heads: attention heads; ``C`` must be divisible by it.
        qkv_bias: learn a bias for the query, key and value projections.
        qk_scale: query scale; ``None`` for ``head_dim ** -0.5``.
        attn_drop: dropout rate of the attention weights.
        proj_drop: dropout rate after the output projection.

    Call arguments:
        windows: ``(B * nWindows, N', C)``.
        attention_mask: optional additive mask ``(nWindows, N', N')`` in the compute dtype.
        training: whether dropout is active.

    Returns:
        ``(B * nWindows, N', C)``.
    """

    def __init__(
        self,
        dim: int,
        window_size: Sequence[int],
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.window_size = tuple(window_size)
        self.num_heads = num_heads
        self.qkv_bias = qkv_bias
        self.qk_scale = qk_scale
        self.attn_drop = attn_drop
        self.proj_drop = proj_drop
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim**-0.5
        self.qkv = keras.layers.Dense(
            3 * dim, use_bias=qkv_bias, name="qkv", dtype=self.dtype_policy
        )
        self.proj = keras.layers.Dense(dim, name="proj", dtype=self.dtype_policy)
        self.attn_dropout = keras.layers.Dropout(
            attn_drop, name="attn_drop", dtype=self.dtype_policy
        )
        self.proj_dropout = keras.layers.Dropout(
            proj_drop, name="proj_drop", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        self.relative_position_bias_table = self.add_weight(
            name="relative_position_bias_table",
            shape=(bias_table_size(self.window_size), self.num_heads),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )
        self.qkv.build((None, None, self.dim))
        self.proj.build((None, None, self.dim))

    def relative_position_bias(self, num_tokens: int):
        """Bias ``(heads, N', N')`` for windows of ``num_tokens`` tokens."""
        index = bias_gather_index(self.window_size, num_tokens)  # (N'*N',)
        bias = ops.take(self.relative_position_bias_table, index, axis=0)  # (N'*N', heads)
        bias = ops.reshape(bias, (num_tokens, num_tokens, self.num_heads))
        return ops.cast(ops.transpose(bias, (2, 0, 1)), self.compute_dtype)

    def call(self, windows, attention_mask=None, training=None):
        num_tokens = windows.shape[1]
        qkv = self.qkv(windows)  # (B_, N', 3C)
        qkv = ops.reshape(qkv, (-1, num_tokens, 3, self.num_heads, self.head_dim))
        qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))  # (3, B_, heads, N', head_dim)
        query, key, value = qkv[0] * self.scale, qkv[1], qkv[2]

        attn = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2)))  # (B_, heads, N', N')
        attn = attn + self.relative_position_bias(num_tokens)[None]
        if attention_mask is not None:
            num_windows = attention_mask.shape[0]
            mask = attention_mask[None, :, None]  # (1, nW, 1, N', N')
            attn = ops.reshape(attn, (-1, num_windows, self.num_heads, num_tokens, num_tokens))
            attn = ops.reshape(attn + mask, (-1, self.num_heads, num_tokens, num_tokens))
        # A one-token window (a 1x1x1 feature map) attends only to itself; ops.softmax would
        # warn about softmax over an axis of size 1.
        attn = ops.softmax(attn, axis=-1) if num_tokens > 1 else ops.ones_like(attn)
        attn = self.attn_dropout(attn, training=training)

        x = ops.matmul(attn, value)  # (B_, heads, N', head_dim)
        x = ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (-1, num_tokens, self.dim))
        return self.proj_dropout(self.proj(x), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "dim": self.dim,
            "window_size": self.window_size,
            "num_heads": self.num_heads,
            "qkv_bias": self.qkv_bias,
            "qk_scale": self.qk_scale,
            "attn_drop": self.attn_drop,
            "proj_drop": self.proj_drop,
        }
