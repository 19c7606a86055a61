"""Checkpoint sources other than mmaction2's layouts, each a table of key renames onto the
canonical mmaction2 1.x keys (``backbone.*``, ``backbone.norm3.*``, ``cls_head.*``).

A `Source` says how to recognise its files, how to rename their keys (the `Rename` rows, read top
to bottom, first match wins; a row without a replacement drops the key), which upstream model the
parity check runs (a key of `convert.reference.REFERENCES`), whether the weights are 2D and must
be inflated to 3D (`convert.inflation`), and the input pipeline its weights were scored with.

Replacements are ``str.format`` templates over the pattern's named groups. Index arithmetic is
written as group names: ``twice_i`` (torchvision's ``features.{2i}``), ``twice_i_plus_1``
(``features.{2i+1}``) and ``i_plus_1`` (timm's ``layers.{i+1}.downsample``) each give ``{i}``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

Rename = tuple[str, str | None]

INDEX_GROUPS: dict[str, Callable[[int], int]] = {
    "twice_i": lambda value: value // 2,
    "twice_i_plus_1": lambda value: (value - 1) // 2,
    "i_plus_1": lambda value: value - 1,
}


class SourceError(ValueError):
    """Keys of a recognised source that no rename row covers."""


@dataclasses.dataclass(frozen=True)
class Source:
    """One checkpoint layout and what converting it involves.

    Attributes:
        name: the layout, as `LoadedCheckpoint.source_layout` reports it.
        detect: whether a state dict (after unwrapping and ``module.`` stripping) is this layout.
        renames: ``(pattern, replacement or None)`` rows; patterns match whole keys.
        reference: the upstream model parity runs (`convert.reference.REFERENCES`).
        inflate: the weights are 2D ImageNet Swin and must be inflated to 3D.
        preprocessing: the input pipeline the weights were scored with, stored beside the
            converted weights (`convert.preprocessing`); None when the source does not say.
    """

    name: str
    detect: Callable[[Mapping[str, Any]], bool]
    renames: tuple[Rename, ...]
    reference: str
    inflate: bool = False
    preprocessing: dict[str, Any] | None = None


def _has(*keys: str) -> Callable[[Mapping[str, Any]], bool]:
    return lambda state: all(key in state for key in keys)


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
    renames=_2D_DROPS
    + (
        (
            r"layers\.(?P<i_plus_1>\d+)\.downsample\.(?P<rest>.+)",
            "backbone.layers.{i}.downsample.{rest}",
        ),
    )
    + _2D_COMMON,
    reference="mmaction2-inflate",
    inflate=True,
)

_TV_BLOCK = r"features\.(?P<twice_i>\d*[02468])\.(?P<j>\d+)\."
_WEIGHT = r"(?P<rest>weight|bias)"
_BLOCK_LEAF = (
    r"(?P<leaf>(norm1|norm2|attn\.qkv|attn\.proj)\.(weight|bias)"
    r"|attn\.relative_position_(bias_table|index))"
)
TORCHVISION = Source(
    name="torchvision swin3d layout (features.<2i> stages, features.<2i+1> patch merging)",
    detect=_has("features.0.0.attn.qkv.weight", "patch_embed.proj.weight"),
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

# Read top to bottom: the first source whose `detect` holds claims the file. mmaction2's own
# layouts (``backbone.*`` keys) match none and are read as before.
SOURCES: tuple[Source, ...] = (TORCHVISION, MICROSOFT_2D, TIMM_2D)


def detect_source(state: Mapping[str, Any]) -> Source | None:
    """The first of `SOURCES` that recognises ``state``, or None (an mmaction2 layout)."""
    for source in SOURCES:
        if source.detect(state):
            return source
    return None


def rename(source: Source, state: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``state`` under canonical keys (order kept) and the keys the table dropped.

    Raises:
        SourceError: keys no row matches, or two keys renamed onto one.
    """
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in source.renames]
    renamed: dict[str, Any] = {}
    dropped: list[str] = []
    unmatched: list[str] = []
    for key, value in state.items():
        for pattern, replacement in compiled:
            match = pattern.fullmatch(key)
            if match is None:
                continue
            if replacement is None:
                dropped.append(key)
            else:
                new_key = replacement.format(**_fields(match))
                if new_key in renamed:
                    raise SourceError(f"{key} and another key both become {new_key}")
                renamed[new_key] = value
            break
        else:
            unmatched.append(key)
    if unmatched:
        shown = ", ".join(unmatched[:8]) + (
            f" and {len(unmatched) - 8} more" if len(unmatched) > 8 else ""
        )
        raise SourceError(
            f"{len(unmatched)} key{'s' if len(unmatched) != 1 else ''} of a {source.name} "
            f"checkpoint match no known name: {shown}"
        )
    return renamed, dropped


def _fields(match: re.Match) -> dict[str, Any]:
    """The match's named groups, with the `INDEX_GROUPS` turned into ``i``."""
    fields: dict[str, Any] = dict(match.groupdict())
    for group, to_stage in INDEX_GROUPS.items():
        if fields.get(group) is not None:
            fields["i"] = to_stage(int(fields[group]))
    return fields
