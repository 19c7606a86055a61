"""Builders for the four published architectures (defaults from docs/reference.md), with
``keras.applications``-style pretrained weights: ``tf_video_swin_tiny(weights="swin_t_k400")``.
"""

from __future__ import annotations

import os

from videoswin_tf import pretrained
from videoswin_tf.architectures import ARCHITECTURES, DEFAULT_PATCH, DEFAULT_WINDOW
from videoswin_tf.model import TFSwinTransformer3D

WEIGHTS_DOC = """
    Args:
        weights: ``None`` (random initialization); a preset name (``"swin_t_k400"``, see
            `videoswin_tf.presets`) or its release name
            (``"TFVideoSwinT_K400_IN1K_P244_W877_32x224"``), downloaded once and checked
            against its published SHA-256; or a local ``.h5`` / ``.weights.h5`` file. Named
            weights fix the window, patch and classes and set ``model.class_names``; an
            argument that contradicts them is an error. With ``include_top=False`` only the
            backbone is loaded.
        **kwargs: `TFSwinTransformer3D` arguments overriding the builder's defaults.
"""


def tf_video_swin_tiny(weights: str | os.PathLike | None = None, **kwargs) -> TFSwinTransformer3D:
    """Swin-T: C = 96, depths (2, 2, 6, 2), heads (3, 6, 12, 24)."""
    return _build("tiny", weights, kwargs)


def tf_video_swin_small(weights: str | os.PathLike | None = None, **kwargs) -> TFSwinTransformer3D:
    """Swin-S: C = 96, depths (2, 2, 18, 2), heads (3, 6, 12, 24)."""
    return _build("small", weights, kwargs)


def tf_video_swin_base(weights: str | os.PathLike | None = None, **kwargs) -> TFSwinTransformer3D:
    """Swin-B: C = 128, depths (2, 2, 18, 2), heads (4, 8, 16, 32)."""
    return _build("base", weights, kwargs)


def tf_video_swin_large(weights: str | os.PathLike | None = None, **kwargs) -> TFSwinTransformer3D:
    """Swin-L: C = 192, depths (2, 2, 18, 2), heads (6, 12, 24, 48)."""
    return _build("large", weights, kwargs)


for _builder in (
    tf_video_swin_tiny,
    tf_video_swin_small,
    tf_video_swin_base,
    tf_video_swin_large,
):
    _builder.__doc__ += "\n" + WEIGHTS_DOC


def _build(arch: str, weights, overrides: dict) -> TFSwinTransformer3D:
    sizes = ARCHITECTURES[arch]
    arguments = {
        "patch_size": DEFAULT_PATCH,
        "embed_dim": sizes.embed_dim,
        "depths": sizes.depths,
        "num_heads": sizes.num_heads,
        "window_size": DEFAULT_WINDOW,
        "mlp_ratio": 4.0,
        "qkv_bias": True,
        "qk_scale": None,
        "drop_rate": 0.0,
        "attn_drop_rate": 0.0,
        "drop_path_rate": 0.2,
        "patch_norm": True,
        "in_channels": sizes.embed_dim * 8,
    }
    if weights is None:
        return TFSwinTransformer3D(**arguments | overrides)
    source = pretrained.resolve(weights)
    model = TFSwinTransformer3D(**arguments | pretrained.model_arguments(source, arch, overrides))
    pretrained.load(model, source)
    return model
