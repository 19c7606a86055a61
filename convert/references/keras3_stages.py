"""The outputs parity compares, taken from a Keras 3 Video Swin model of the rewrite's or
KerasCV's code (they share their layers' classes and names, but for the patch embedding's).

Each stage's map is the model's own layers run one after another, as its basic layer's ``call``
runs them: each stage's blocks with the stage's shift mask, then its patch merging; the last
stage's map is the whole backbone's output (after its top norm).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

MASK_WARNING = ".*does not support masking.*"
STAGE = "videoswin_basic_layer_{}"  # the stages' layer names, counted from 1


def keras3_outputs(backbone, model, clip: np.ndarray, embedding: str) -> dict[str, Any]:
    """``{"stages": [maps (B, D, H, W, C)], "pooled": (B, C), "logits": (B, classes) or None}``
    of ``model`` (``backbone`` itself, or a classifier over it) on ``clip`` ``(B, T, H, W, 3)``;
    ``embedding`` is the patch embedding layer's name (`videoswin_tf.keras3_h5.Keras3Source`)."""
    import keras

    def numpy(x) -> np.ndarray:
        return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float32)

    with warnings.catch_warnings():
        # both codes pass the shift mask positionally, which Keras takes for a masking mask
        warnings.filterwarnings("ignore", message=MASK_WARNING, category=UserWarning)
        x = backbone.get_layer(embedding)(clip)
        stages = []
        for index in range(len(backbone.depths) - 1):
            stage = backbone.get_layer(STAGE.format(index + 1))
            for block in stage.blocks:
                x = block(x, stage.attn_mask, training=False)
            stages.append(numpy(x))
            x = stage.downsample(x)
        features = numpy(backbone(clip, training=False))
        logits = None if model is backbone else numpy(model(clip, training=False))
    return {
        "stages": [*stages, features],
        "pooled": features.mean(axis=(1, 2, 3)),
        "logits": logits,
    }
