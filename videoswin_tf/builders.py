"""Builders for the four published architectures (defaults from REFERENCE.md)."""

from __future__ import annotations

from videoswin_tf.model import TFSwinTransformer3D


def tf_video_swin_tiny(**kwargs) -> TFSwinTransformer3D:
    """Swin-T: C = 96, depths (2, 2, 6, 2), heads (3, 6, 12, 24); ``kwargs`` override."""
    return _build(96, (2, 2, 6, 2), (3, 6, 12, 24), kwargs)


def tf_video_swin_small(**kwargs) -> TFSwinTransformer3D:
    """Swin-S: C = 96, depths (2, 2, 18, 2), heads (3, 6, 12, 24); ``kwargs`` override."""
    return _build(96, (2, 2, 18, 2), (3, 6, 12, 24), kwargs)


def tf_video_swin_base(**kwargs) -> TFSwinTransformer3D:
    """Swin-B: C = 128, depths (2, 2, 18, 2), heads (4, 8, 16, 32); ``kwargs`` override."""
    return _build(128, (2, 2, 18, 2), (4, 8, 16, 32), kwargs)


def tf_video_swin_large(**kwargs) -> TFSwinTransformer3D:
    """Swin-L: C = 192, depths (2, 2, 18, 2), heads (6, 12, 24, 48); ``kwargs`` override."""
    return _build(192, (2, 2, 18, 2), (6, 12, 24, 48), kwargs)


def _build(embed_dim, depths, num_heads, overrides) -> TFSwinTransformer3D:
    arguments = {
        "patch_size": (2, 4, 4),
        "embed_dim": embed_dim,
        "depths": depths,
        "num_heads": num_heads,
        "window_size": (8, 7, 7),
        "mlp_ratio": 4.0,
        "qkv_bias": True,
        "qk_scale": None,
        "drop_rate": 0.0,
        "attn_drop_rate": 0.0,
        "drop_path_rate": 0.2,
        "patch_norm": True,
        "in_channels": embed_dim * 8,
    }
    arguments.update(overrides)
    return TFSwinTransformer3D(**arguments)
