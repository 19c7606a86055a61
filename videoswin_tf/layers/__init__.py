"""The layers of the Video Swin Transformer, one concept per module."""

from videoswin_tf.layers.attention import WindowAttention3D
from videoswin_tf.layers.block import SwinTransformerBlock3D
from videoswin_tf.layers.drop_path import DropPath
from videoswin_tf.layers.head import I3DHead
from videoswin_tf.layers.mlp import Mlp
from videoswin_tf.layers.patch_embed import PatchEmbed3D
from videoswin_tf.layers.patch_merging import PatchMerging
from videoswin_tf.layers.stage import SwinStage

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
