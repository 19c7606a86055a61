"""Window multi-head self-attention with a 3D relative position bias."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import keras
from keras import ops

from videoswin_tf.layers.tracing import in_openvino_trace
from videoswin_tf.layers.windows import bias_gather_index, bias_table_size

# Attention logits per chunk of windows: small enough to stay in a CPU's L2/L3 cache.
CHUNK_BYTES = 8 * 2**20
# Query, key and value per chunk of windows in the graph traced for OpenVINO
# (`WindowAttention3D.traced_call`): small enough that they, the attention's output and its
# projection stay in a CPU's L2/L3 cache from one node to the next.
TRACED_CHUNK_BYTES = 8 * 2**20

# Keras backends whose own ``dot_product_attention`` is faster than the matrix products of
# `WindowAttention3D.explicit_attention` (measured on Swin-T, README Benchmarks): torch's fused
# CPU kernel. TensorFlow's is einsums, and on JAX XLA compiles the explicit products faster.
FUSED_ATTENTION_BACKENDS = ("torch",)


def window_bias(bias, mask, batch_windows: int):
    """One additive bias per window: the relative position bias plus each window's mask.

    Args:
        bias: ``(1, heads, N', N')``.
        mask: ``(nWindows, N', N')`` for windows laid out as ``B x nWindows``.
        batch_windows: ``b``, a multiple of ``nWindows`` or (a chunk in one clip) at most it.

    Returns:
        ``(b, heads, N', N')``.
    """
    bias = bias + mask[:, None]  # (nWindows, heads, N', N')
    if batch_windows <= mask.shape[0]:
        return bias
    repeats = (batch_windows // mask.shape[0], 1, 1, 1, 1)  # several clips
    return ops.reshape(ops.tile(bias[None], repeats), (-1, *tuple(bias.shape[1:])))


class TracedWeights(NamedTuple):
    """What the chunks of `WindowAttention3D.traced_call` share, computed once a call.

    Attributes:
        projections: query (scaled), key and value, each ``(weights, bias)``: heads-major
            ``(heads, C, head_dim)`` and ``(heads, 1, head_dim)``, or tokens-major ``(C, C)``
            and ``(C,)``; the bias ``None`` without ``qkv_bias``.
        bias: relative position bias ``(heads, 1, N', N')``.
    """

    projections: tuple
    bias: Any


def dtype_bytes(dtype: str) -> int:
    """Bytes of one element of a float dtype named ``float16``, ``bfloat16``, ``float32`` or
    ``float64``."""
    return int(dtype[-2:]) // 8


def windows_per_chunk(
    batch_windows: int | None, window_bytes: int, limit: int, clip_windows: int | None = None
) -> int | None:
    """How many windows are attended at a time.

    The most windows whose ``window_bytes`` each fit in ``limit`` bytes (at least one); with
    ``clip_windows`` (the windows of one clip, where a mask or its factors come with them)
    whole clips, or a divisor of it where one clip does not fit, so that a chunk's windows
    lie in one clip or cover whole clips. ``None`` (all at once) when ``batch_windows`` is
    unknown or a single chunk holds them all.
    """
    if batch_windows is None:
        return None
    step = max(1, limit // window_bytes)
    if clip_windows is not None and step >= clip_windows:
        step -= step % clip_windows
    elif clip_windows is not None:
        step = max(d for d in range(1, step + 1) if clip_windows % d == 0)
    return None if step >= batch_windows else step


def window_chunks(
    batch_windows: int, step: int, clip_windows: int | None = None
) -> Iterator[tuple[slice, slice | None]]:
    """``(windows, clip)`` for each chunk of ``step`` windows, in order: ``windows`` slices the
    ``B * nWindows`` windows, ``clip`` the chunk's windows within its clip (the ``nWindows``
    axis of a mask or its factors; all of it where ``step`` covers whole clips), ``None``
    without ``clip_windows``. ``step`` is `windows_per_chunk`'s."""
    for start in range(0, batch_windows, step):
        clip = None
        if clip_windows is not None:
            first = start % clip_windows
            clip = slice(first, first + step)
        yield slice(start, start + step), clip


def with_mask_columns(x, columns):
    """``x`` with a window's mask columns appended to every head (`shifted_window_mask_factors`).

    Args:
        x: query or key, heads-major ``(heads, B * nWindows, N', head_dim)``, ``B`` possibly
            unknown.
        columns: ``(nWindows, 1, N', R)``.

    Returns:
        ``(heads, B * nWindows, N', head_dim + R)``.
    """
    heads, num_windows = x.shape[0], columns.shape[0]
    per_clip = ops.reshape(x, (heads, -1, num_windows, *x.shape[2:]))  # (heads, B, nW, N', hd)
    # broadcast over the heads and clips; x * 0 gives the batch, unknown while tracing
    columns = per_clip[..., :1] * 0 + ops.cast(columns[:, 0], x.dtype)
    extended = ops.concatenate([per_clip, columns], axis=-1)
    return ops.reshape(extended, (heads, -1, *extended.shape[3:]))


@keras.saving.register_keras_serializable(package="videoswin_tf")
class WindowAttention3D(keras.layers.Layer):
    """Multi-head self-attention inside windows, with a learned relative position bias.

    The bias table ``((2Wd-1)(2Wh-1)(2Ww-1), heads)`` is a weight; the index into it is
    computed from the window size and never stored. When the feature map is smaller than the
    window, the window holds ``N' < N`` tokens and the bias uses ``index[:N', :N']`` of the
    full-window index, exactly as the reference does.

    Within `openvino_trace` (the graph converted for OpenVINO) attention is traced as
    `traced_attention`, in the pattern that OpenVINO's CPU plugin fuses into one attention
    kernel. TensorFlow and JAX keep the chunks of `explicit_attention`, which are faster for
    them.

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
        attention_mask: optional additive mask ``(nWindows, N', N')`` in the compute dtype,
            for windows ordered batch-major (``B_ = B * nWindows``).
        mask_factors: optional ``(qm, km)`` from `shifted_window_mask_factors`, each
            ``(nWindows, 1, N', R)``, instead of ``attention_mask``: the mask as extra query
            and key columns (`with_mask_columns`); only within `openvino_trace`.
        training: whether dropout is active; within `openvino_trace` (inference) ignored.

    Returns:
        ``(B * nWindows, N', C)``.

    Raises:
        ValueError: ``mask_factors`` given outside `openvino_trace`.
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

    def call(self, windows, attention_mask=None, mask_factors=None, training=None):
        if in_openvino_trace():
            return self.traced_call(windows, attention_mask, mask_factors)
        if mask_factors is not None:
            raise ValueError(
                "mask_factors are for the graph traced for OpenVINO (within openvino_trace); "
                "pass attention_mask (shifted_window_mask) instead"
            )
        num_tokens = windows.shape[1]
        qkv = ops.reshape(self.qkv(windows), (-1, num_tokens, 3, self.num_heads, self.head_dim))
        # The fused kernel needs the number of windows, unknown while Keras' OpenVINO backend
        # traces the model (batch None), and has no attention dropout.
        fused = keras.backend.backend() in FUSED_ATTENTION_BACKENDS and windows.shape[0] is not None
        if fused and not (training and self.attn_drop > 0):
            x = self.backend_attention(qkv, attention_mask)
        else:
            x = self.explicit_attention(qkv, attention_mask, training)
        return self.proj_dropout(self.proj(x), training=training)

    def traced_call(self, windows, attention_mask=None, mask_factors=None):
        """The layer as traced for OpenVINO (`openvino_trace`), for inference:
        `traced_attention` and the output projection over chunks of windows whose query, key
        and value take at most `TRACED_CHUNK_BYTES` (`windows_per_chunk`; within one clip
        where a mask or its factors come with them), concatenated along the windows, which
        OpenVINO does in place. A chunk's query, key, value, attention output and projection
        then stay in the CPU's cache from one node to the next instead of going through
        memory (Swin-T's first stage: 19 MB each, 16 chunks of 8 windows). The chunks share
        one `traced_weights` (one constant each in OpenVINO, not one a chunk). Each chunk is
        nodes to convert, so the graph grows with the batch: the OpenVINO engine traces one
        clip (`videoswin_tf.inference.openvino_runner`).

        Swin-T 1x32x224x224, one process alternating the IRs, 2 shared Zen 5 cores: with the
        MLP in chunks too (`SwinTransformerBlock3D.traced_mlp_branch`) 2.3-6.7% less CPU time
        than in one pass (medians of 10-16, load 1.2-1.6), 5.9% on one thread (median of 8);
        the MLP's chunks alone 2.6-3.6%. 4 MiB chunks gained 0.6% and 5.0% in the same runs.

        Args and returns as `call`'s (no ``training``: inference only).
        """
        batch_windows, num_tokens = windows.shape[:2]
        clip_windows = None
        if mask_factors is not None:
            clip_windows = mask_factors[0].shape[0]
        elif attention_mask is not None:
            clip_windows = attention_mask.shape[0]
        weights = self.traced_weights(num_tokens, windows.dtype, batch_windows is not None)
        window_bytes = 3 * num_tokens * self.dim * dtype_bytes(self.compute_dtype)
        step = windows_per_chunk(batch_windows, window_bytes, TRACED_CHUNK_BYTES, clip_windows)
        if step is None:
            return self.proj(self.traced_attention(windows, weights, attention_mask, mask_factors))
        chunks = []
        for window, clip in window_chunks(batch_windows, step, clip_windows):
            mask = None if attention_mask is None else attention_mask[clip]
            factors = None if mask_factors is None else tuple(f[clip] for f in mask_factors)
            chunks.append(self.proj(self.traced_attention(windows[window], weights, mask, factors)))
        return ops.concatenate(chunks, axis=0)

    def traced_weights(self, num_tokens: int, dtype: str, heads_major: bool) -> TracedWeights:
        """The `TracedWeights` of windows of ``num_tokens`` tokens in ``dtype``: heads-major
        query, key and value weights where the number of windows is known, else tokens-major
        (see `traced_projections`)."""
        kernel = ops.cast(self.qkv.kernel, dtype)
        bias = None if self.qkv.bias is None else ops.cast(self.qkv.bias, dtype)
        projections = []
        for index, scale in enumerate((self.scale, None, None)):
            third = slice(index * self.dim, (index + 1) * self.dim)
            weights = kernel[:, third] if scale is None else kernel[:, third] * scale
            third_bias = None
            if bias is not None:
                third_bias = bias[third] if scale is None else bias[third] * scale
            if heads_major:
                weights = ops.reshape(weights, (self.dim, self.num_heads, self.head_dim))
                weights = ops.transpose(weights, (1, 0, 2))  # (heads, C, head_dim)
                if third_bias is not None:
                    third_bias = ops.reshape(third_bias, (self.num_heads, 1, self.head_dim))
            projections.append((weights, third_bias))
        bias = self.relative_position_bias(num_tokens)[:, None]  # (heads, 1, N', N')
        return TracedWeights(tuple(projections), bias)

    def traced_attention(self, windows, weights, attention_mask=None, mask_factors=None):
        """Attention as traced for OpenVINO (`openvino_trace`), for inference, in the pattern
        that OpenVINO's CPU plugin fuses into one attention kernel, which never holds all
        logits in memory: the windows given (a chunk of `traced_call`) in one
        ``MatMul-Add-Softmax-MatMul``, heads-major query, key and value from
        `traced_projections`, and a shifted block's mask as extra query and key columns
        (`with_mask_columns`), so that OpenVINO folds one bias constant per block, not one
        bias and mask per window.

        Swin-T 1x32x224x224 on 2 shared Zen cores, A/B interleaved: one fused pass over all
        windows 9.5% less time than `attend_in_chunks`' chunks of logits after whole-map
        projections (median of 7, load 12), peak memory 1.94 GiB against 2.05;
        grouping by mask: IR 713 -> 403 MB, peak 2.05 -> 1.83 GiB; the mask as query and key
        columns instead: IR 403 -> 199 MB, peak 1.82 -> 1.60 GiB, same speed.

        Args:
            windows: ``(B * nWindows, N', C)``.
            weights: `traced_weights` for windows of ``N'`` tokens.
            attention_mask: ``(nWindows, N', N')`` or ``None``.
            mask_factors: ``(qm, km)`` or ``None``.

        Returns:
            ``(B * nWindows, N', C)``, before the output projection.
        """
        num_tokens = windows.shape[1]
        query, key, value = self.traced_projections(windows, weights.projections)
        if mask_factors is not None:
            query_columns, key_columns = mask_factors
            query = with_mask_columns(query, query_columns)
            key = with_mask_columns(key, key_columns)
        attn = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2)))  # (heads, B_, N', N')
        attn = attn + weights.bias
        if attention_mask is not None:  # (nWindows, N', N') over (heads, B, nWindows, N', N')
            shape = (self.num_heads, -1, *attention_mask.shape)
            attn = ops.reshape(ops.reshape(attn, shape) + attention_mask, (*shape[:2], *shape[3:]))
        # one-token windows: see `attend`
        attn = ops.softmax(attn, axis=-1) if num_tokens > 1 else ops.ones_like(attn)
        x = ops.matmul(attn, value)  # (heads, B_, N', head_dim)
        return ops.reshape(ops.transpose(x, (1, 2, 0, 3)), (-1, num_tokens, self.dim))

    def traced_projections(self, windows, projections):
        """Query (scaled), key and value, heads-major ``(heads, B * nWindows, N', head_dim)``,
        for `traced_attention`: each its own product of all the windows' tokens ``(1, B *
        nWindows * N', C)`` with its third of the ``qkv`` kernel as ``(heads, C, head_dim)``,
        plus the bias, the query's third multiplied by the scale (``projections``, from
        `traced_weights`). OpenVINO folds those
        constants (no slice of the projection, no multiply of the query), runs each product as
        one ``FullyConnected`` that writes heads-major, and its fused attention then walks one
        head's windows together, reusing that head's bias from cache, with no transpose of
        the key. Swin-T 1x32x224x224, one process alternating the IRs, 2 shared Zen cores:
        3.3% less CPU time than tokens-major ``(B * nWindows, heads, N', head_dim)`` (median
        of 9, load 4.8-5.3), 4.7% on one thread (11, load 4.5-5.5); in a stage's attention
        layer alone (one thread, median of 11) stages 2-4 (6-24 heads) took 3-10% less, stage
        1 (3 heads) 3% more, yet in the whole model keeping stage 1 tokens-major gained
        nothing (2.4% and 2.6% less against 3.3% and 2.4%). Tokens-major in turn had 2.9% less
        CPU time than slicing one projection and scaling the query. Where the number of
        windows is unknown while tracing (clips of any batch), each product is tokens-major
        (``(C, C)`` weights) and then transposed: OpenVINO 2026.4 converts the heads-major
        product there, but its ``FullyConnected`` then fails at run time.
        """
        num_tokens = windows.shape[1]
        heads_shape = (self.num_heads, -1, num_tokens, self.head_dim)
        outputs = []
        for weights, bias in projections:
            if windows.shape[0] is None:
                x = ops.matmul(windows, weights)  # (B_, N', C)
                x = x if bias is None else x + bias
                x = ops.reshape(x, (-1, num_tokens, self.num_heads, self.head_dim))
                outputs.append(ops.transpose(x, (2, 0, 1, 3)))
                continue
            rows = ops.reshape(windows, (1, -1, self.dim))  # (1, B_ * N', C)
            x = ops.matmul(rows, weights)  # (heads, B_ * N', head_dim)
            outputs.append(ops.reshape(x if bias is None else x + bias, heads_shape))
        return outputs

    def explicit_attention(self, qkv, attention_mask, training):
        """Attention written out in matrix products, with dropout on its weights.

        The faster path on TensorFlow, whose oneDNN batched products beat the einsums of its
        ``dot_product_attention`` (measured on Swin-T: about 10% faster in all), and on JAX
        (Swin-T 17% less time than with its ``dot_product_attention``), and the only one
        with attention dropout.

        Args:
            qkv: ``(B_, N', 3, heads, head_dim)``.
            attention_mask: ``(nWindows, N', N')`` or ``None``.
            training: whether dropout is active.

        Returns:
            ``(B_, N', C)``.
        """
        attend = functools.partial(self.attend, training=training)
        return self.attend_in_chunks(qkv, attention_mask, attend)

    def backend_attention(self, qkv, attention_mask):
        """Attention by the backend's own ``dot_product_attention``, the relative position
        bias and the chunk's mask summed into its one additive bias: on torch its fused
        kernel (Swin-T's stage-0 attention 3x faster than the matrix products). No dropout.

        Args:
            qkv: ``(B_, N', 3, heads, head_dim)``, ``B_`` known.
            attention_mask: ``(nWindows, N', N')`` or ``None``.

        Returns:
            ``(B_, N', C)``.
        """

        def attend(query, key, value, bias, mask):
            if mask is not None:
                bias = window_bias(bias, mask, query.shape[0])
            # (b, heads, N', head_dim) <-> the kernel's (b, N', heads, head_dim)
            query, key, value = (ops.transpose(t, (0, 2, 1, 3)) for t in (query, key, value))
            # flash_attention=False: what Keras decides on CPU for an additive bias, said
            # here so that torch.compile need not trace that check (a graph break)
            x = ops.dot_product_attention(
                query, key, value, bias=bias, scale=1.0, flash_attention=False
            )
            return ops.transpose(x, (0, 2, 1, 3))

        return self.attend_in_chunks(qkv, attention_mask, attend)

    def attend_in_chunks(self, qkv, attention_mask, attend):
        """``attend`` over the windows a few at a time, in clip order.

        Where the number of windows is known they are attended `windows_per_chunk` at a time,
        so that each chunk's logits (and on the fused path its bias) stay in the CPU's cache
        from the bias add to the second product (stage 0 of Swin-T: 3x faster than one pass
        over all 128 windows' 59M logits on TensorFlow; on torch it also spares building the
        whole ``(nWindows, heads, N', N')`` bias of a shifted stage).

        Args:
            qkv: ``(B_, N', 3, heads, head_dim)``.
            attention_mask: ``(nWindows, N', N')`` or ``None``.
            attend: ``(query, key, value, bias, mask) -> (b, heads, N', head_dim)`` for a
                chunk's ``(b, heads, N', head_dim)`` query (already scaled), key and value,
                the bias ``(1, heads, N', N')`` and the chunk's mask ``(b, N', N')`` (or the
                whole mask, or ``None``).

        Returns:
            ``(B_, N', C)``.
        """
        batch_windows, num_tokens = qkv.shape[:2]
        qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))  # (3, B_, heads, N', head_dim)
        query, key, value = qkv[0] * self.scale, qkv[1], qkv[2]
        bias = self.relative_position_bias(num_tokens)[None]  # (1, heads, N', N')
        clip_windows = None if attention_mask is None else attention_mask.shape[0]
        logits_bytes = self.num_heads * num_tokens**2 * dtype_bytes(self.compute_dtype)
        step = windows_per_chunk(batch_windows, logits_bytes, CHUNK_BYTES, clip_windows)
        if step is None:
            x = attend(query, key, value, bias, attention_mask)
        else:
            chunks = []
            for window, clip in window_chunks(batch_windows, step, clip_windows):
                mask = None if clip is None else attention_mask[clip]
                chunks.append(attend(query[window], key[window], value[window], bias, mask))
            x = ops.concatenate(chunks, axis=0) if len(chunks) > 1 else chunks[0]
        # (B_, heads, N', head_dim) -> (B_, N', C)
        return ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (-1, num_tokens, self.dim))

    def attend(self, query, key, value, bias, mask, training):
        """``softmax(query key^T + bias + mask) value`` over windows ``(b, heads, N', hd)``.

        ``mask`` is ``(nWindows, N', N')`` for windows laid out as ``B x nWindows`` (any
        ``B``), or ``None``; returns ``(b, heads, N', head_dim)``.
        """
        num_tokens = query.shape[2]
        attn = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2))) + bias  # (b, h, N', N')
        if mask is not None and mask.shape[0] == query.shape[0]:
            attn = attn + mask[:, None]
        elif mask is not None:  # several clips, or a batch unknown while tracing
            shape = (-1, mask.shape[0], self.num_heads, num_tokens, num_tokens)
            attn = ops.reshape(
                ops.reshape(attn, shape) + mask[None, :, None], shape[:1] + shape[2:]
            )
        # A one-token window (a 1x1x1 feature map) attends only to itself; ops.softmax would
        # warn about softmax over an axis of size 1.
        attn = ops.softmax(attn, axis=-1) if num_tokens > 1 else ops.ones_like(attn)
        attn = self.attn_dropout(attn, training=training)
        return ops.matmul(attn, value)  # (b, heads, N', head_dim)

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
