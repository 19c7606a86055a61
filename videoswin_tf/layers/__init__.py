"""The layers of the Video Swin Transformer, one concept per module.

The names below are imported from their modules on first use (`videoswin_tf.lazy`), so
importing this package does not import Keras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from videoswin_tf.lazy import exports

if TYPE_CHECKING:  # for type checkers and IDEs; tests/test_import_time.py keeps it, _LAZY
    # and __all__ naming the same names
    from videoswin_tf.layers.attention import WindowAttention3D
    from videoswin_tf.layers.block import SwinTransformerBlock3D
    from videoswin_tf.layers.drop_path import DropPath
    from videoswin_tf.layers.head import I3DHead
    from videoswin_tf.layers.mlp import Mlp
    from videoswin_tf.layers.patch_embed import PatchEmbed3D
    from videoswin_tf.layers.patch_merging import PatchMerging
    from videoswin_tf.layers.stage import SwinStage

# Module -> the public names it defines, imported on first use.
_LAZY = {
    "videoswin_tf.layers.attention": ("WindowAttention3D",),
    "videoswin_tf.layers.block": ("SwinTransformerBlock3D",),
    "videoswin_tf.layers.drop_path": ("DropPath",),
    "videoswin_tf.layers.head": ("I3DHead",),
    "videoswin_tf.layers.mlp": ("Mlp",),
    "videoswin_tf.layers.patch_embed": ("PatchEmbed3D",),
    "videoswin_tf.layers.patch_merging": ("PatchMerging",),
    "videoswin_tf.layers.stage": ("SwinStage",),
}

__all__ = [
    "DropPath",
    "I3DHead",
    "Mlp",
    "PatchEmbed3D",
    "PatchMerging",
    "SwinStage",
    "SwinTransformerBlock3D",
    "WindowAttention3D",
]
__getattr__, __dir__ = exports(__name__, _LAZY)
