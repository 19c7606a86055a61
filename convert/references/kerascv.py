"""Parity for KerasCV's files: ``keras_cv.models.VideoSwinBackbone`` (and ``VideoClassifier``
over it, as the file holds one), built for the converted model's config on the parity clip's
shape, loads the file with its own ``load_weights`` (keras-cv 0.9, this process's Keras 3).

A classifier ends in softmax unless its ``.keras`` archive says ``activation=None``: then
probabilities are compared (the Keras model's logits through softmax), and the report says so.
The stage maps are KerasCV's own layers run one after another (`references.keras3_stages`,
shared with the rewrite's reference); the last is the whole backbone's output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

INSTALL = "pip install keras-cv==0.9.0"


def kerascv_backbone(spec, input_shape: Sequence[int]):
    """KerasCV's ``VideoSwinBackbone`` for ``spec`` (width, depths, heads, window, patch) on
    clips of ``input_shape`` ``(T, H, W, 3)``, freshly initialised.

    Raises:
        ImportError: keras_cv is not installed (`INSTALL`).
    """
    import keras_cv

    return keras_cv.models.VideoSwinBackbone(
        input_shape=tuple(input_shape),
        embed_dim=spec.embed_dim,
        patch_size=list(spec.patch_size),
        window_size=list(spec.window_size),
        depths=list(spec.depths),
        num_heads=list(spec.num_heads),
    )


def kerascv_forward(spec, checkpoint, clip: np.ndarray) -> dict[str, Any]:
    """KerasCV's model for ``spec`` with ``checkpoint.file`` loaded by its own
    ``load_weights``, on ``clip`` ``(B, T, H, W, 3)``: ``{"stages": [4 maps], "pooled": (B, C),
    "logits": (B, classes) or None, "softmax": whether "logits" holds probabilities}``.

    Raises:
        ConversionError: keras_cv is not installed, or its model does not load the file.
    """
    from videoswin_tf.convert.errors import ConversionError
    from videoswin_tf.convert.references.keras3_stages import keras3_outputs
    from videoswin_tf.convert.sources.keras3 import recorded
    from videoswin_tf.keras3_h5 import KERASCV

    try:
        import keras_cv
    except ImportError as error:
        raise ConversionError(
            f"parity for KerasCV's files runs KerasCV's own model, and keras_cv does not import "
            f"({error}); {INSTALL}, or pass --no-parity"
        ) from None
    backbone = kerascv_backbone(spec, clip.shape[1:])
    activation = recorded(checkpoint.file).activation or "linear"
    model = backbone
    if spec.num_classes is not None:
        model = keras_cv.models.VideoClassifier(
            backbone=backbone, num_classes=spec.num_classes, activation=activation
        )
    try:
        model.load_weights(str(checkpoint.file))
    except Exception as error:  # Keras raises many types for a file that does not fit
        raise ConversionError(f"KerasCV's model does not load {checkpoint.file}: {error}") from None
    outputs = keras3_outputs(backbone, model, clip, KERASCV.embedding_name)
    return outputs | {"softmax": outputs["logits"] is not None and activation == "softmax"}
