"""Temporal sampling: which frames make each clip, as the checkpoints were scored.

Two protocols (docs/reference.md, "Test-time pipeline"):

- ``"vswin"``: the authors' Video-Swin repository (mmaction2 0.x test mode), the protocol the
  published checkpoints were scored with: clips centred in equal segments, wrapping to frame 0
  in short videos; ``frame_uniform`` (SSv2) takes one frame from the middle of each of
  ``clip_len`` segments.
- ``"mmaction2"``: mmaction2 1.x test mode, clips spread from the first to the last frame. Like
  mmaction2 1.x's ``SampleFrames``, it ignores ``frame_uniform``.
"""

from __future__ import annotations

import numpy as np

from videoswin_tf.presets import TestPipeline

PROTOCOLS = ("vswin", "mmaction2")


def clip_indices(num_frames: int, pipeline: TestPipeline, protocol: str = "vswin") -> np.ndarray:
    """Frame indices of every clip: ``(num_clips, clip_len)`` int64, each in ``[0, num_frames)``.

    Args:
        num_frames: frames in the video (as decoded).
        pipeline: clip length, interval, clips and ``frame_uniform``.
        protocol: ``"vswin"`` or ``"mmaction2"`` (see the module docstring).
    """
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown sampling protocol {protocol!r}; expected one of {PROTOCOLS}")
    if protocol == "vswin" and pipeline.frame_uniform:
        if pipeline.num_clips != 1:
            raise ValueError(
                f"frame_uniform sampling (SSv2) makes one clip, not {pipeline.num_clips}: use "
                "1x3 or 1x1 views, or the mmaction2 sampling"
            )
        return uniform_indices(num_frames, pipeline.clip_len)[None, :]
    offsets = (vswin_offsets if protocol == "vswin" else mmaction2_offsets)(num_frames, pipeline)
    steps = np.arange(pipeline.clip_len) * pipeline.frame_interval  # (clip_len,)
    return (offsets[:, None] + steps[None, :]) % num_frames


def vswin_offsets(num_frames: int, pipeline: TestPipeline) -> np.ndarray:
    """First frame of each clip, Video-Swin test mode: ``(num_clips,)``."""
    span = pipeline.clip_len * pipeline.frame_interval
    if num_frames <= span - 1:
        return np.zeros(pipeline.num_clips, dtype=np.int64)
    segment = (num_frames - span + 1) / pipeline.num_clips
    return np.floor(np.arange(pipeline.num_clips) * segment + segment / 2).astype(np.int64)


def mmaction2_offsets(num_frames: int, pipeline: TestPipeline) -> np.ndarray:
    """First frame of each clip, mmaction2 1.x test mode: ``(num_clips,)``."""
    span = (pipeline.clip_len - 1) * pipeline.frame_interval + 1
    max_offset = max(num_frames - span, 0)
    if pipeline.num_clips == 1:
        return np.array([max_offset // 2], dtype=np.int64)
    spacing = max_offset / (pipeline.num_clips - 1)
    return np.round(np.arange(pipeline.num_clips) * spacing).astype(np.int64)


def uniform_indices(num_frames: int, clip_len: int) -> np.ndarray:
    """Video-Swin ``frame_uniform`` test sampling: the middle frame of each of ``clip_len``
    equal segments, ``(clip_len,)``. Rounding is numpy's (half to even)."""
    segment = (num_frames - 1) / clip_len
    bounds = np.round(segment * np.arange(clip_len + 1)).astype(np.int64)  # (clip_len + 1,)
    return (bounds[:-1] + bounds[1:]) // 2
