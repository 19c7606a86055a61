"""Spatial transforms of the test pipeline: resize the short side, crop the views, normalise.

They reproduce mmaction2's ``Resize(scale=(-1, S))`` (mmcv's sizing, OpenCV bilinear on the
uint8 RGB frame), ``ThreeCrop(S)`` (left, right, middle; top, bottom, middle for portrait
frames) and ``CenterCrop(S)`` pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from videoswin_tf.presets import TestPipeline
from videoswin_tf.video.extra import import_extra

# Normalisation of every published checkpoint: RGB on 0-255 values.
MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """``(new_width, new_height)`` with the short side at ``short_side``, rounded as mmcv's
    ``rescale_size`` rounds (``int(x * scale + 0.5)``): 1280x720 -> 398x224."""
    scale = short_side / min(width, height)
    return int(width * scale + 0.5), int(height * scale + 0.5)


def resize_short_side(frame: np.ndarray, short_side: int) -> np.ndarray:
    """Resize an ``(H, W, 3)`` uint8 frame so its short side is ``short_side`` (OpenCV
    bilinear, as mmcv's ``imresize``)."""
    cv2 = import_extra("cv2")
    height, width = frame.shape[:2]
    size = resized_size(width, height, short_side)
    return cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)


def crop_offsets(height: int, width: int, crop_size: int, num_crops: int) -> list[tuple[int, int]]:
    """``(top, left)`` of each crop, in the reference's order.

    Three crops (``ThreeCrop``) need the short side equal to ``crop_size``; they slide along
    the long side: left, right, middle (top, bottom, middle for portrait frames). One crop is
    the centre crop (``CenterCrop``).
    """
    if num_crops == 1:
        return [((height - crop_size) // 2, (width - crop_size) // 2)]
    if num_crops != 3:
        raise ValueError(f"num_crops must be 1 (centre) or 3 (ThreeCrop), got {num_crops}")
    if min(height, width) != crop_size:
        raise ValueError(
            f"three crops need the short side equal to the crop size {crop_size}, got frames of "
            f"{width}x{height}"
        )
    if height == crop_size:  # landscape or square: slide along the width
        step = (width - crop_size) // 2
        return [(0, 0), (0, 2 * step), (0, step)]
    step = (height - crop_size) // 2
    return [(0, 0), (2 * step, 0), (step, 0)]


def make_views(
    frames: Sequence[np.ndarray] | Mapping[int, np.ndarray],
    indices: np.ndarray,
    pipeline: TestPipeline,
) -> np.ndarray:
    """Cut the views of a video: ``(crops * clips, clip_len, S, S, 3)`` uint8.

    Args:
        frames: the video's frames already resized (`resize_short_side`), all one size: a
            list of every frame, or ``{index: frame}`` holding at least those in ``indices``.
        indices: ``(clips, clip_len)`` frame indices (`videoswin_tf.video.sampling`).
        pipeline: crop size and number of crops.

    View ``crop * clips + clip`` is crop ``crop`` of clip ``clip``, as in mmaction2.
    """
    clips = np.stack([frames[int(i)] for i in indices.reshape(-1)])  # (clips * clip_len, H, W, 3)
    height, width = clips.shape[1:3]
    size = pipeline.crop_size
    clips = clips.reshape((*indices.shape, height, width, 3))  # (clips, clip_len, H, W, 3)
    views = [
        clips[:, :, top : top + size, left : left + size]
        for top, left in crop_offsets(height, width, size, pipeline.num_crops)
    ]
    return np.concatenate(views)  # (crops * clips, clip_len, S, S, 3)


def normalize(views: np.ndarray) -> np.ndarray:
    """uint8 RGB views to the model's float32 input: ``(x - MEAN) / STD`` per channel,
    computed in place in one float32 copy (no temporaries the size of the views)."""
    out = views.astype(np.float32)
    out -= MEAN
    out /= STD
    return out
