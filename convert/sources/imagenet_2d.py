"""2D ImageNet Swin files (Microsoft's layout and timm's), read as a 2D-shaped canonical state
that `videoswin_tf.convert.mapping.inflation` inflates to 3D; parity runs mmaction2 inflating the
file itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from videoswin_tf.convert.sources.layout import Rename, Source


def _is_2d(state: Mapping[str, Any]) -> bool:
    """A Swin backbone without prefixes whose patch embedding is a Conv2d ``[C, 3, Ph, Pw]``."""
    patch = state.get("patch_embed.proj.weight")
    return patch is not None and patch.ndim == 4 and "layers.0.blocks.0.attn.qkv.weight" in state


# 2D files keep derived buffers (dropped, as mmaction2's inflation drops them) and an ImageNet
# classifier (dropped: the output is a backbone, the video head is trained afresh).
_2D_DROPS: tuple[Rename, ...] = (
    (r".+\.(relative_position_index|attn_mask)", None),
    (r"head\..+", None),
)
_2D_COMMON: tuple[Rename, ...] = (
    (r"norm\.(?P<rest>.+)", "backbone.norm3.{rest}"),
    (r"(?P<rest>(patch_embed|layers)\..+)", "backbone.{rest}"),
)

MICROSOFT_2D = Source(
    name="2D ImageNet Swin, Microsoft layout (layers.<i>.downsample ends stage i)",
    detect=lambda state: _is_2d(state) and "layers.0.downsample.reduction.weight" in state,
    renames=_2D_DROPS + _2D_COMMON,
    reference="mmaction2-inflate",
    inflate=True,
)

TIMM_2D = Source(
    name="2D ImageNet Swin, timm >= 0.9 layout (layers.<i+1>.downsample ends stage i)",
    detect=_is_2d,
    renames=(
        *_2D_DROPS,
        (
            r"layers\.(?P<i_plus_1>\d+)\.downsample\.(?P<rest>.+)",
            "backbone.layers.{i}.downsample.{rest}",
        ),
        *_2D_COMMON,
    ),
    reference="mmaction2-inflate",
    inflate=True,
)
