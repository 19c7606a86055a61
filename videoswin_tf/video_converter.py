"""`VideoSwinVideoConverter`: a checkpoint's input normalisation and test pipeline, as a layer."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from videoswin_tf.presets import TestPipeline
from videoswin_tf.serving import RGB_MEAN, RGB_STD


@keras.saving.register_keras_serializable(package="videoswin_tf")
class VideoSwinVideoConverter(keras.layers.Layer):
    """Turns RGB frames on 0-255 into the clip a Video Swin model takes: ``(x - mean) / std``
    per channel; carries the test pipeline the checkpoint was scored with.

    The frames it takes are already sampled, resized and cropped; ``pipeline`` says how the
    checkpoint's accuracy was measured (clip length, frame interval, clips and crops per video,
    short side and crop size), which `videoswin_tf.video` reproduces from a video file.

    Args:
        pipeline: a `videoswin_tf.presets.TestPipeline`, its fields as a dict (as
            `get_config` stores it), or ``None`` when unknown.
        mean: per-channel mean of RGB on 0-255 (mmaction2's ImageNet values by default).
        std: per-channel standard deviation of RGB on 0-255.

    Call arguments:
        frames: ``(B, T, H, W, 3)`` RGB on 0-255, any real or integer dtype.

    Returns:
        the normalised clip ``(B, T, H, W, 3)`` in the layer's compute dtype.
    """

    def __init__(
        self,
        pipeline: TestPipeline | dict[str, Any] | None = None,
        mean: Sequence[float] = RGB_MEAN,
        std: Sequence[float] = RGB_STD,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.pipeline = TestPipeline(**pipeline) if isinstance(pipeline, dict) else pipeline
        self.mean = tuple(float(value) for value in mean)
        self.std = tuple(float(value) for value in std)

    def call(self, frames):
        frames = ops.cast(frames, self.compute_dtype)
        return (frames - ops.array(self.mean, self.compute_dtype)) / ops.array(
            self.std, self.compute_dtype
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "pipeline": None if self.pipeline is None else dataclasses.asdict(self.pipeline),
            "mean": list(self.mean),
            "std": list(self.std),
        }
