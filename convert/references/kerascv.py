"""Parity for KerasCV's files: ``keras_cv.models.VideoSwinBackbone`` (and ``VideoClassifier``
over it, as the file holds one), built for the converted model's config on the parity clip's
shape, loads the file with its own ``load_weights`` (keras-cv 0.9, this process's Keras 3).

A classifier ends in softmax unless its ``.keras`` archive says ``activation=None``: then
probabilities are compared (the Keras model's logits through softmax), and the report says so.
The stage maps are KerasCV's own layers run one after another (each stage's blocks, then its
patch merging, as its ``VideoSwinBasicLayer.call`` does); the last is the whole backbone's
output.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

INSTALL = "pip install keras-cv==0.9.0"
MASK_WARNING = ".*does not support masking.*"


def kerascv_forward(spec, checkpoint, clip: np.ndarray) -> dict[str, Any]:
    """KerasCV's model for ``spec`` with ``checkpoint.file`` loaded by its own
    ``load_weights``, on ``clip`` ``(B, T, H, W, 3)``: ``{"stages": [4 maps], "pooled": (B, C),
    "logits": (B, classes) or None, "softmax": whether "logits" holds probabilities}``.

    Raises:
        ConversionError: keras_cv is not installed, or its model does not load the file.
    """
    from videoswin_tf.convert.errors import ConversionError
    from videoswin_tf.convert.sources.kerascv import archive_model

    from videoswin_tf import kerascv_h5

    try:
        import keras_cv
    except ImportError as error:
        raise ConversionError(
            f"parity for KerasCV's files runs KerasCV's own model, and keras_cv does not import "
            f"({error}); {INSTALL}, or pass --no-parity"
        ) from None
    backbone = keras_cv.models.VideoSwinBackbone(
        input_shape=clip.shape[1:],
        embed_dim=spec.embed_dim,
        patch_size=list(spec.patch_size),
        window_size=list(spec.window_size),
        depths=list(spec.depths),
        num_heads=list(spec.num_heads),
    )
    activation = "softmax"
    if kerascv_h5.is_kerascv_archive(checkpoint.file):
        activation = archive_model(checkpoint.file)["activation"] or "linear"
    model = backbone
    if spec.num_classes is not None:
        model = keras_cv.models.VideoClassifier(
            backbone=backbone, num_classes=spec.num_classes, activation=activation
        )
    try:
        model.load_weights(str(checkpoint.file))
    except Exception as error:  # Keras raises many types for a file that does not fit
        raise ConversionError(f"KerasCV's model does not load {checkpoint.file}: {error}") from None
    with warnings.catch_warnings():
        # KerasCV passes the shift mask positionally, which Keras takes for a masking mask
        warnings.filterwarnings("ignore", message=MASK_WARNING, category=UserWarning)
        features = np.asarray(backbone(clip, training=False), dtype=np.float32)
        stages = [*_stage_maps(backbone, clip), features]
        logits = None if model is backbone else np.asarray(model(clip, training=False))
    return {
        "stages": stages,
        "pooled": features.mean(axis=(1, 2, 3)),
        "logits": logits,
        "softmax": logits is not None and activation == "softmax",
    }


def _stage_maps(backbone, clip: np.ndarray) -> list[np.ndarray]:
    """The first three stages' maps before their patch merging, from KerasCV's own layers."""
    x = backbone.get_layer("videoswin_patching_and_embedding")(clip)
    maps = []
    for index in range(len(backbone.depths) - 1):
        stage = backbone.get_layer(f"videoswin_basic_layer_{index + 1}")
        for block in stage.blocks:
            x = block(x, stage.attn_mask, training=False)
        maps.append(np.asarray(x, dtype=np.float32))
        x = stage.downsample(x)
    return maps
