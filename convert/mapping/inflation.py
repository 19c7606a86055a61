"""2D ImageNet Swin weights inflated to a 3D Video Swin backbone, as mmaction2's
``SwinTransformer3D.inflate_weights`` (``pretrained2d=True``) does it.

The state is canonical (``backbone.*`` keys, see `videoswin_tf.convert.sources`) but
2D-shaped: the patch embedding is ``[C, 3, Ph, Pw]`` and each bias table
``[(2Wh'-1)(2Ww'-1), heads]`` for the 2D window ``Wh'``. Numpy only: the bicubic resize is our
own, checked against PyTorch's ``F.interpolate`` by the tests.
"""

from __future__ import annotations

import math

import numpy as np

from videoswin_tf.architectures import DEFAULT_PATCH, DEFAULT_WINDOW
from videoswin_tf.convert.mapping.rules import PATCH_KEY

TABLE_SUFFIX = ".attn.relative_position_bias_table"
CUBIC_A = -0.75  # PyTorch's bicubic kernel constant


class InflationError(ValueError):
    """2D weights that cannot be inflated into the requested 3D model."""


def inflate(
    state: dict[str, np.ndarray],
    window_size: tuple[int, int, int] = DEFAULT_WINDOW,
    patch_size: tuple[int, int, int] = DEFAULT_PATCH,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Inflate a 2D-shaped canonical state to the 3D model of ``window_size``/``patch_size``.

    The patch embedding ``[C, 3, Ph, Pw]`` is repeated ``Pd`` times over time and divided by
    ``Pd`` (a static clip gives the 2D response); each bias table is resized with `bicubic_resize`
    when the 2D spatial window differs from ``(Wh, Ww)``, then tiled ``2 * Wd - 1`` times (the
    same bias at every temporal offset). Every other tensor is kept as it is.

    Returns:
        The 3D state (key order kept) and one note per kind of change.

    Raises:
        InflationError: no 2D patch embedding, a spatial patch other than ``(Ph, Pw)``, or a
            bias table that is not square.
    """
    depth, height, width = window_size
    spatial = (2 * height - 1, 2 * width - 1)
    patch = state.get(PATCH_KEY)
    if patch is None or patch.ndim != 4:
        raise InflationError(f"{PATCH_KEY} must be a 2D patch embedding [C, 3, Ph, Pw]")
    if tuple(patch.shape[2:]) != tuple(patch_size[1:]):
        raise InflationError(
            f"{PATCH_KEY} {list(patch.shape)} has a {patch.shape[2]}x{patch.shape[3]} patch; the "
            f"3D patch {tuple(patch_size)} needs {patch_size[1]}x{patch_size[2]}"
        )
    out: dict[str, np.ndarray] = {}
    resized = 0
    for key, tensor in state.items():
        if key == PATCH_KEY:
            tensor = np.repeat(tensor[:, :, None], patch_size[0], axis=2) / np.float32(
                patch_size[0]
            )
        elif key.endswith(TABLE_SUFFIX):
            rows, heads = tensor.shape
            if rows != spatial[0] * spatial[1]:
                side = math.isqrt(rows)
                if side * side != rows:
                    raise InflationError(f"{key} has {rows} rows, not a square 2D window's table")
                image = tensor.T.reshape(heads, side, side)
                tensor = bicubic_resize(image, spatial).reshape(heads, -1).T
                resized += 1
            tensor = np.tile(tensor, (2 * depth - 1, 1))
        out[key] = np.ascontiguousarray(tensor, dtype=np.float32)
    resize_note = f"; {resized} resized bicubically to {spatial[0]}x{spatial[1]} first"
    notes = [
        (
            f"inflated {PATCH_KEY} to {list(out[PATCH_KEY].shape)}: repeated over "
            f"{patch_size[0]} frames, divided by {patch_size[0]}"
        ),
        (
            f"tiled every relative_position_bias_table {2 * depth - 1} times over time for "
            f"window {tuple(window_size)}{resize_note if resized else ''}"
        ),
    ]
    return out, notes


def bicubic_resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``images`` ``(N, H, W)`` to ``(N, *size)`` as PyTorch's
    ``F.interpolate(mode="bicubic", align_corners=False)`` does: source coordinate
    ``(dst + 0.5) * in / out - 0.5``, Keys' cubic kernel with ``A = -0.75``, taps beyond the edge
    clamped to the edge. Computed in float64, returned as float32."""
    rows = _resize_matrix(images.shape[1], size[0])  # (out_h, in_h)
    cols = _resize_matrix(images.shape[2], size[1])  # (out_w, in_w)
    resized = np.einsum("oh,nhw,pw->nop", rows, images.astype(np.float64), cols)
    return resized.astype(np.float32)


def _resize_matrix(size_in: int, size_out: int) -> np.ndarray:
    """The ``(size_out, size_in)`` matrix of one axis of `bicubic_resize`."""
    matrix = np.zeros((size_out, size_in))
    scale = size_in / size_out
    for out_index in range(size_out):
        source = (out_index + 0.5) * scale - 0.5
        base = math.floor(source)
        for offset, weight in zip(range(-1, 3), _cubic_weights(source - base), strict=False):
            matrix[out_index, min(max(base + offset, 0), size_in - 1)] += weight
    return matrix


def _cubic_weights(t: float) -> tuple[float, float, float, float]:
    """Weights of the taps at offsets -1, 0, 1, 2 for a point ``t`` in [0, 1) past tap 0."""

    def near(x: float) -> float:  # |x| <= 1
        return ((CUBIC_A + 2) * x - (CUBIC_A + 3)) * x * x + 1

    def far(x: float) -> float:  # 1 < |x| < 2
        return ((CUBIC_A * x - 5 * CUBIC_A) * x + 8 * CUBIC_A) * x - 4 * CUBIC_A

    return far(t + 1), near(t), near(1 - t), far(2 - t)
