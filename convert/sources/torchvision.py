"""torchvision's ``swin3d_t/s/b`` files: stages at ``features.<2i>``, patch merging at
``features.<2i+1>``, the head at ``head``; parity runs torchvision's own model."""

from __future__ import annotations

from videoswin_tf.convert.sources.layout import Source

_MARKERS = {"features.0.0.attn.qkv.weight", "patch_embed.proj.weight"}
_TV_BLOCK = r"features\.(?P<twice_i>\d*[02468])\.(?P<j>\d+)\."
_WEIGHT = r"(?P<rest>weight|bias)"
_BLOCK_LEAF = (
    r"(?P<leaf>(norm1|norm2|attn\.qkv|attn\.proj)\.(weight|bias)"
    r"|attn\.relative_position_(bias_table|index))"
)
TORCHVISION = Source(
    name="torchvision swin3d layout (features.<2i> stages, features.<2i+1> patch merging)",
    detect=lambda state: _MARKERS <= state.keys(),
    renames=(
        (r"patch_embed\.(?P<rest>.+)", "backbone.patch_embed.{rest}"),
        (_TV_BLOCK + r"mlp\.0\." + _WEIGHT, "backbone.layers.{i}.blocks.{j}.mlp.fc1.{rest}"),
        (_TV_BLOCK + r"mlp\.3\." + _WEIGHT, "backbone.layers.{i}.blocks.{j}.mlp.fc2.{rest}"),
        (_TV_BLOCK + _BLOCK_LEAF, "backbone.layers.{i}.blocks.{j}.{leaf}"),
        (
            r"features\.(?P<twice_i_plus_1>\d*[13579])\.(?P<rest>(reduction|norm)\..+)",
            "backbone.layers.{i}.downsample.{rest}",
        ),
        (r"norm\.(?P<rest>.+)", "backbone.norm3.{rest}"),
        (r"head\.(?P<rest>.+)", "cls_head.fc_cls.{rest}"),
    ),
    reference="torchvision",
    # torchvision's Swin3D_*_Weights transforms (VideoClassification) and their documented
    # evaluation: frames resampled to 15 fps, 12 clips of 32 frames, one centre crop.
    preprocessing={
        "source": "torchvision Swin3D_T/S/B_Weights.KINETICS400_V1",
        "resize_short_side": 256,
        "interpolation": "bilinear",
        "antialias": False,
        "center_crop": [224, 224],
        "frame_rate": 15,
        "clip_len": 32,
        "clips_per_video": 12,
        "value_range": [0.0, 1.0],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    },
)
