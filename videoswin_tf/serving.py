"""A TensorFlow SavedModel for TF Serving: a float clip endpoint and a uint8 frames endpoint."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import ops

# The normalization the models were trained with, on RGB values 0-255.
RGB_MEAN = (123.675, 116.28, 103.53)
RGB_STD = (58.395, 57.12, 57.375)

CLIP_ENDPOINT = "serving_default"
FRAMES_ENDPOINT = "serve_frames"


def normalize_frames(frames):
    """uint8 RGB frames ``(..., 3)`` (0-255) to the normalized float32 clip the model takes."""
    x = ops.cast(frames, "float32")
    return (x - np.array(RGB_MEAN, "float32")) / np.array(RGB_STD, "float32")


def export_saved_model(
    model: keras.Model, path: str | Path, clip_shape: tuple[int | None, int, int, int, int]
) -> None:
    """Write ``model`` as a SavedModel with two signatures, each returning ``{"logits": ...}``.

    - ``serving_default(clip)``: ``clip`` float32 ``clip_shape``, already normalized;
    - ``serve_frames(frames)``: ``frames`` uint8 RGB ``clip_shape``, normalized inside with
      `RGB_MEAN` and `RGB_STD`.

    Needs the TensorFlow backend.

    Args:
        model: a `TFSwinTransformer3D` (with or without its head; without, the output is the
            pooled features, still under the key ``logits``).
        path: folder to write.
        clip_shape: ``(B, T, H, W, 3)``; ``B`` may be ``None`` for any batch. Frames, height
            and width must be given: the model needs them when it is traced.
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"a SavedModel needs the TensorFlow backend, but Keras runs on "
            f"{keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow"
        )
    import tensorflow as tf

    def serve_clip(clip):  # (B, T, H, W, 3) float32
        return {"logits": model(clip, training=False)}

    def serve_frames(frames):  # (B, T, H, W, 3) uint8
        return {"logits": model(normalize_frames(frames), training=False)}

    archive = keras.export.ExportArchive()
    # The endpoints' variables are tracked by add_endpoint. Tracking the model itself would
    # also trace its default signature, whose frames, height and width are unknown.
    archive.add_endpoint(
        CLIP_ENDPOINT,
        tf.function(serve_clip),
        input_signature=[tf.TensorSpec(clip_shape, tf.float32, name="clip")],
    )
    archive.add_endpoint(
        FRAMES_ENDPOINT,
        tf.function(serve_frames),
        input_signature=[tf.TensorSpec(clip_shape, tf.uint8, name="frames")],
    )
    archive.write_out(str(path), verbose=False)
