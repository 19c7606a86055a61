"""Floating-point work of one Video Swin backbone forward pass, counted from the architecture.

Counted as 2 FLOPs per multiply-accumulate, for every matrix product the model runs: the patch
embedding, the qkv and output projections and both attention products (on the zero-padded
windows, as computed), the MLPs and the patch mergings. Element-wise work (norms, softmax, GELU,
bias and mask additions) is left out, as in a matmul peak. Swin-T on a 1x32x224x224 clip:
175.5 GFLOP, Swin-B 562.7 (mmaction2 lists 87.9 G and 281.6 G multiply-accumulates).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import NamedTuple

from videoswin_tf.convert.mapping.spec import ModelSpec
from videoswin_tf.layers.windows import effective_window

MLP_RATIO = 4.0  # hidden channels of each block's MLP per input channel, in every Video Swin


class Product(NamedTuple):
    """One kind of matrix product, ``(m, k) @ (k, n)``, run ``count`` times a forward pass.

    ``kind`` is "dense" (a ``keras.layers.Dense``: the projections, MLPs and patch mergings, m =
    tokens), "attention" (both products of a block, as one product of the same work) or "embed".
    """

    kind: str
    m: int
    k: int
    n: int
    count: int

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.k * self.n * self.count


def ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def matrix_products(spec: ModelSpec, clip_shape: tuple[int, int, int, int, int]) -> list[Product]:
    """Every matrix product of one backbone forward pass of ``spec`` (its embed_dim, depths,
    window_size and patch_size) on a clip ``(B, T, H, W, 3)``, those of the same kind and shape
    merged into one `Product` with their count, in the order run."""
    batch, frames, height, width, channels_in = clip_shape
    size = [math.ceil(n / p) for n, p in zip((frames, height, width), spec.patch_size, strict=True)]
    embed = (
        "embed",
        batch * math.prod(size),
        channels_in * math.prod(spec.patch_size),
        spec.embed_dim,
    )
    products = [embed]
    for index, depth in enumerate(spec.depths):
        channels = spec.embed_dim * 2**index
        tokens = batch * math.prod(size)
        hidden = int(channels * MLP_RATIO)
        shift = tuple(w // 2 for w in spec.window_size)
        for block in range(depth):
            window, _ = effective_window(size, spec.window_size, shift if block % 2 else (0, 0, 0))
            padded = batch * math.prod(ceil_to(n, w) for n, w in zip(size, window, strict=False))
            products += [
                ("dense", padded, channels, 3 * channels),  # qkv
                ("attention", padded, 2 * math.prod(window), channels),  # q @ k^T and attn @ v
                ("dense", padded, channels, channels),  # output projection
                ("dense", tokens, channels, hidden),  # fc1
                ("dense", tokens, hidden, channels),  # fc2
            ]
        if index < len(spec.depths) - 1:
            size = [size[0], math.ceil(size[1] / 2), math.ceil(size[2] / 2)]
            products.append(("dense", batch * math.prod(size), 4 * channels, 2 * channels))
    return [Product(*shape, count) for shape, count in Counter(products).items()]


def backbone_flops(spec: ModelSpec, clip_shape: tuple[int, int, int, int, int]) -> float:
    """FLOPs of one backbone forward pass of ``spec`` on a clip ``(B, T, H, W, 3)``."""
    return sum(product.flops for product in matrix_products(spec, clip_shape))
