"""Floating-point work of one Video Swin backbone forward pass, counted from the architecture.

Counted as 2 FLOPs per multiply-accumulate, for every matrix product the model runs: the patch
embedding, the qkv and output projections and both attention products (on the zero-padded
windows, as computed), the MLPs and the patch mergings. Element-wise work (norms, softmax, GELU,
bias and mask additions) is left out, as in a matmul peak. Swin-T on a 1x32x224x224 clip:
175.5 GFLOP, Swin-B 562.7 (mmaction2 lists 87.9 G and 281.6 G multiply-accumulates).
"""

from __future__ import annotations

import math

from videoswin_tf.layers.windows import effective_window


def ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def backbone_flops(
    embed_dim: int,
    depths: tuple[int, ...],
    window_size: tuple[int, int, int],
    patch_size: tuple[int, int, int],
    clip_shape: tuple[int, int, int, int, int],
    mlp_ratio: float = 4.0,
) -> float:
    """FLOPs of one backbone forward pass on a clip ``(B, T, H, W, 3)``."""
    batch, frames, height, width, channels_in = clip_shape
    size = [math.ceil(n / p) for n, p in zip((frames, height, width), patch_size, strict=False)]
    flops = 2.0 * math.prod(size) * channels_in * math.prod(patch_size) * embed_dim
    for index, depth in enumerate(depths):
        channels = embed_dim * 2**index
        tokens = math.prod(size)
        shift = tuple(w // 2 for w in window_size)
        for block in range(depth):
            window, _ = effective_window(size, window_size, shift if block % 2 else (0, 0, 0))
            padded = math.prod(ceil_to(n, w) for n, w in zip(size, window, strict=False))
            window_tokens = math.prod(window)
            flops += 2.0 * padded * channels * 4 * channels  # qkv and output projections
            flops += 2.0 * 2 * padded * window_tokens * channels  # q @ k^T and attn @ v
            flops += 2.0 * tokens * channels * int(channels * mlp_ratio) * 2  # fc1 and fc2
        if index < len(depths) - 1:
            size = [size[0], math.ceil(size[1] / 2), math.ceil(size[2] / 2)]
            flops += 2.0 * math.prod(size) * 4 * channels * 2 * channels  # patch merging
    return batch * flops
