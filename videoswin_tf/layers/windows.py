"""Pure functions for 3D (shifted) window attention.

Shapes follow the channels-last layout of the model: a feature map is ``(B, D, H, W, C)``,
windows are ``(B * nD * nH * nW, Wd * Wh * Ww, C)`` with windows ordered ``B, nD, nH, nW`` and
the tokens inside a window ordered depth-major (``d, h, w``).

The sizes here (``D, H, W``, windows, shifts) are Python ints known when the layer is called;
only the batch axis may be unknown while a graph is traced.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from keras import ops

Size3 = tuple[int, int, int]


def effective_window(
    feature_size: Sequence[int], window_size: Sequence[int], shift_size: Sequence[int]
) -> tuple[Size3, Size3]:
    """The window and shift actually used on a feature map of ``feature_size``.

    On every axis where the feature map is not larger than the window (``<=``, so an exact fit
    counts too), the window shrinks to the feature size and that axis is not shifted.

    Args:
        feature_size: ``(D, H, W)`` of the feature map.
        window_size: configured ``(Wd, Wh, Ww)``.
        shift_size: configured ``(Sd, Sh, Sw)``.

    Returns:
        ``(window, shift)``, each a tuple of three ints.
    """
    window, shift = [], []
    for size, win, sh in zip(feature_size, window_size, shift_size, strict=False):
        fits = size <= win
        window.append(size if fits else win)
        shift.append(0 if fits else sh)
    return tuple(window), tuple(shift)


def window_partition(x, window: Size3):
    """Cut a padded feature map into non-overlapping windows.

    Args:
        x: ``(B, D, H, W, C)`` with ``D, H, W`` multiples of ``window``.
        window: ``(Wd, Wh, Ww)``.

    Returns:
        ``(B * nD * nH * nW, Wd * Wh * Ww, C)``.
    """
    _, depth, height, width, channels = x.shape
    wd, wh, ww = window
    x = ops.reshape(
        x, (-1, depth // wd, wd, height // wh, wh, width // ww, ww, channels)
    )  # (B, nD, Wd, nH, Wh, nW, Ww, C)
    x = ops.transpose(x, (0, 1, 3, 5, 2, 4, 6, 7))  # (B, nD, nH, nW, Wd, Wh, Ww, C)
    return ops.reshape(x, (-1, wd * wh * ww, channels))


def window_reverse(windows, window: Size3, padded_size: Size3):
    """Inverse of `window_partition`.

    Args:
        windows: ``(B * nD * nH * nW, Wd * Wh * Ww, C)``.
        window: ``(Wd, Wh, Ww)``.
        padded_size: ``(D, H, W)`` of the feature map the windows were cut from.

    Returns:
        ``(B, D, H, W, C)``.
    """
    depth, height, width = padded_size
    wd, wh, ww = window
    channels = windows.shape[-1]
    x = ops.reshape(
        windows, (-1, depth // wd, height // wh, width // ww, wd, wh, ww, channels)
    )  # (B, nD, nH, nW, Wd, Wh, Ww, C)
    x = ops.transpose(x, (0, 1, 4, 2, 5, 3, 6, 7))  # (B, nD, Wd, nH, Wh, nW, Ww, C)
    return ops.reshape(x, (-1, depth, height, width, channels))


@functools.cache
def relative_position_index(window_size: Size3) -> np.ndarray:
    """Index into the relative position bias table for every pair of tokens in a window.

    Token coordinates come from an ``ij`` meshgrid over ``(Wd, Wh, Ww)``, flattened depth-major.
    The relative offset of tokens ``i`` and ``j`` is shifted to start at 0 on each axis and
    flattened as ``d * (2Wh - 1) * (2Ww - 1) + h * (2Ww - 1) + w``.

    Args:
        window_size: ``(Wd, Wh, Ww)``.

    Returns:
        int64 array ``(N, N)``, ``N = Wd * Wh * Ww``, values in
        ``[0, (2Wd - 1) * (2Wh - 1) * (2Ww - 1))``.
    """
    wd, wh, ww = window_size
    coords = np.stack(np.meshgrid(np.arange(wd), np.arange(wh), np.arange(ww), indexing="ij"))
    coords = coords.reshape(3, -1)  # (3, N)
    relative = coords[:, :, None] - coords[:, None, :]  # (3, N, N)
    relative += np.array([wd - 1, wh - 1, ww - 1])[:, None, None]
    strides = np.array([(2 * wh - 1) * (2 * ww - 1), 2 * ww - 1, 1])[:, None, None]
    return (relative * strides).sum(axis=0).astype(np.int64)


def bias_gather_index(window_size: Size3, num_tokens: int):
    """Flat int32 index into the bias table for windows of ``num_tokens`` tokens, computed with
    ``keras.ops`` from a range rather than converted from NumPy at every call (which breaks the
    graph ``torch.compile`` traces). Graph compilers (TensorFlow's, XLA, OpenVINO) fold it
    into a constant.

    This is ``relative_position_index(window_size)[:N', :N']``: when the window shrinks, the
    reference slices the full window's index rather than computing the smaller window's. The
    index of tokens ``i, j`` is ``r_i - r_j + c``, with token ``i`` (depth-major) at ``(d, h,
    w)``, ``r_i = d (2Wh-1)(2Ww-1) + h (2Ww-1) + w`` and ``c = r`` of ``(Wd-1, Wh-1, Ww-1)``.

    Args:
        window_size: configured ``(Wd, Wh, Ww)``.
        num_tokens: tokens ``N'`` of the windows actually used.

    Returns:
        int32 tensor ``(N' * N',)``.
    """
    _, wh, ww = window_size
    strides = ((2 * wh - 1) * (2 * ww - 1), 2 * ww - 1, 1)
    token = ops.arange(num_tokens, dtype="int32")
    coords = (token // (wh * ww), token // ww % wh, token % ww)  # (d, h, w), each (N',)
    flat = sum(c * s for c, s in zip(coords, strides, strict=True))  # r_i
    centre = sum((w - 1) * s for w, s in zip(window_size, strides, strict=True))
    return ops.reshape(flat[:, None] - flat[None, :] + centre, (-1,))


def bias_table_size(window_size: Sequence[int]) -> int:
    """Rows of the relative position bias table: ``(2Wd - 1) * (2Wh - 1) * (2Ww - 1)``."""
    return int(np.prod([2 * w - 1 for w in window_size]))


@functools.cache
def shifted_window_regions(padded_size: Size3, window: Size3, shift: Size3) -> np.ndarray:
    """Region label of every token of every window, for the shifted-window mask.

    After the cyclic roll by ``-shift``, a window at the end of an axis holds tokens from up to
    three regions of that axis: ``[0, L - W)``, ``[L - W, L - S)`` and ``[L - S, L)``. Tokens
    may only attend to tokens of the same region on every axis. An axis with shift 0 is one
    region. Padded tokens are not masked, as in the reference.

    Only these labels are cached (``nWindows * N`` ints); `shifted_window_mask` expands them
    to the ``nWindows * N * N`` mask when a block runs.

    Args:
        padded_size: ``(D, H, W)`` after padding to multiples of ``window``.
        window: effective ``(Wd, Wh, Ww)``.
        shift: effective ``(Sd, Sh, Sw)``.

    Returns:
        int32 array ``(nD * nH * nW, N)``, tokens ordered as `window_partition` orders them.
    """
    axis_labels = []
    for length, win, sh in zip(padded_size, window, shift, strict=False):
        labels = np.zeros(length, dtype=np.int32)
        if sh > 0:
            labels[length - win : length - sh] = 1
            labels[length - sh :] = 2
        axis_labels.append(labels)
    d, h, w = axis_labels
    region = d[:, None, None] * 9 + h[None, :, None] * 3 + w[None, None, :]  # (D, H, W)
    nd, nh, nw = (size // win for size, win in zip(padded_size, window, strict=False))
    region = region.reshape(nd, window[0], nh, window[1], nw, window[2])
    return region.transpose(0, 2, 4, 1, 3, 5).reshape(nd * nh * nw, -1)  # (nWindows, N)


def shifted_window_labels(padded_size: Size3, window: Size3, shift: Size3):
    """`shifted_window_regions` computed with ``keras.ops`` from ranges, for the graph of a
    call: converting the NumPy labels at every call breaks the graph ``torch.compile`` traces.
    Graph compilers fold it into a constant.

    Args:
        padded_size: ``(D, H, W)`` after padding to multiples of ``window``.
        window: effective ``(Wd, Wh, Ww)``.
        shift: effective ``(Sd, Sh, Sw)``.

    Returns:
        int32 tensor ``(nD * nH * nW, N)``, equal to `shifted_window_regions`.
    """
    axis_labels = []
    for length, win, sh in zip(padded_size, window, shift, strict=True):
        position = ops.arange(length, dtype="int32")
        starts = (length - win, length - sh) if sh > 0 else ()  # where regions 1 and 2 start
        axis_labels.append(sum((ops.cast(position >= s, "int32") for s in starts), position * 0))
    d, h, w = axis_labels
    region = d[:, None, None] * 9 + h[None, :, None] * 3 + w[None, None, :]  # (D, H, W)
    # Partitioned as float32 (labels below 27: exact) and cast back: TensorFlow's oneDNN
    # transpose of int32 logs "oneDNN supports DT_INT32 only on platforms with AVX-512" at
    # error level (on AVX-512 CPUs too) before falling back to Eigen.
    region = ops.cast(region, "float32")[None, ..., None]
    return ops.cast(window_partition(region, window)[..., 0], "int32")


def shifted_window_mask(regions, dtype: str = "float32"):
    """Additive attention mask from `shifted_window_regions` labels.

    Args:
        regions: ``(nWindows, N)`` region labels.
        dtype: dtype of the mask.

    Returns:
        ``(nWindows, N, N)``: ``-100.0`` between tokens of different regions, ``0.0`` otherwise.
    """
    differs = ops.not_equal(regions[:, :, None], regions[:, None, :])  # (nWindows, N, N)
    return ops.cast(ops.where(differs, -100.0, 0.0), dtype)


@functools.cache
def _region_factors(regions: bytes, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    labels = np.frombuffer(regions, dtype=np.int32).reshape(shape)
    # Each window's labels renumbered 0..R-1 (at most 8 regions a window: 2 per shifted axis).
    local = np.stack([np.unique(row, return_inverse=True)[1].reshape(-1) for row in labels])
    onehot = (local[..., None] == np.arange(local.max() + 1)).astype(np.float32)
    return -100.0 * onehot[:, None], 1.0 - onehot[:, None]


def shifted_window_mask_factors(regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`shifted_window_mask` as extra query and key columns: ``[q, qm] . [k, km] = q . k +
    mask`` for every pair of tokens of a window, so that attention needs no mask constant
    per window (OpenVINO folds the bias and a ``(nWindows, N', N')`` mask into one
    ``(nWindows, heads, N', N')`` constant: Swin-T's stage 3, 59 MB a block).

    With each token's region ``r`` one-hot over the window's ``R`` regions, ``qm = -100 *
    onehot(r)`` and ``km = 1 - onehot(r)``: ``qm_i . km_j = -100 * [r_i != r_j]`` exactly.

    Args:
        regions: int32 ``(nWindows, N')`` labels from `shifted_window_regions`.

    Returns:
        ``(qm, km)``, float32 ``(nWindows, 1, N', R)`` each (broadcast over heads).
    """
    regions = np.ascontiguousarray(regions, dtype=np.int32)
    return _region_factors(regions.tobytes(), regions.shape)


@functools.cache
def shifted_window_gather(
    padded_size: Size3, window: Size3, shift: Size3
) -> tuple[np.ndarray, np.ndarray]:
    """The roll by ``-shift`` and `window_partition` as one gather index, and its inverse, for
    `take_tokens`. The windows keep `window_partition`'s order, so `shifted_window_regions`
    labels them as they come.

    Args:
        padded_size: ``(D, H, W)`` after padding to multiples of ``window``.
        window: effective ``(Wd, Wh, Ww)``.
        shift: effective ``(Sd, Sh, Sw)``.

    Returns:
        ``(gather, scatter)``, int32 ``(D * H * W,)`` each. ``gather`` holds, for each token of
        the windows (window, then token depth-major), its flat position in the padded, not
        rolled feature map; ``scatter``, the inverse permutation, takes the windows' tokens
        back to the feature map's positions (the reverse roll included).
    """
    positions = np.arange(int(np.prod(padded_size)), dtype=np.int32).reshape(padded_size)
    rolled = np.roll(positions, [-s for s in shift], axis=(0, 1, 2))  # as ops.roll does
    nd, nh, nw = (size // win for size, win in zip(padded_size, window, strict=False))
    rolled = rolled.reshape(nd, window[0], nh, window[1], nw, window[2])
    gather = rolled.transpose(0, 2, 4, 1, 3, 5).reshape(-1)  # window_partition's order
    return gather, np.argsort(gather).astype(np.int32)


def take_tokens(x, index, shape: Sequence[int]):
    """``x`` ``(B, ..., C)`` with its middle axes flattened, tokens taken at ``index`` and
    reshaped to ``(-1, *shape, C)``: e.g. ``(B, D, H, W, C)`` to windows ``(B * nWindows, N,
    C)`` with `shifted_window_gather`'s ``gather``, and back with its ``scatter``."""
    channels = x.shape[-1]
    tokens = ops.take(ops.reshape(x, (-1, index.shape[0], channels)), index, axis=1)
    return ops.reshape(tokens, (-1, *shape, channels))


def pad_to_multiple(x, multiples: Sequence[int], axes: Sequence[int] = (1, 2, 3)):
    """Zero-pad the end of ``axes`` of ``x`` up to multiples of ``multiples``.

    Returns ``x`` itself when no padding is needed.
    """
    pad = [[0, 0] for _ in range(len(x.shape))]
    for axis, multiple in zip(axes, multiples, strict=False):
        pad[axis][1] = -x.shape[axis] % multiple
    if not any(after for _, after in pad):
        return x
    return ops.pad(x, pad)
