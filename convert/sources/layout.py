"""Checkpoint sources other than mmaction2's layouts, each a table of key renames onto the
canonical mmaction2 1.x keys (``backbone.*``, ``backbone.norm3.*``, ``cls_head.*``).

A `Source` says how to recognise its files, how to rename their keys (the `Rename` rows, read top
to bottom, first match wins; a row without a replacement drops the key), which upstream model the
parity check runs (a key of `references.registry.REFERENCES`), whether the weights are 2D and must
be inflated to 3D (`mapping.inflation`), and the input pipeline its weights were scored with.
One module per source holds its `Source` (`sources.torchvision`, `sources.imagenet_2d`);
`sources.detection` lists them in the order detection tries them.

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


SHOWN_KEYS = 8  # keys listed in an error before "and N more"


class SourceError(ValueError):
    """Keys of a recognised source that no rename row covers."""


@dataclasses.dataclass(frozen=True)
class Source:
    """One checkpoint layout and what converting it involves.

    Attributes:
        name: the layout, as `LoadedCheckpoint.source_layout` reports it.
        detect: whether a state dict (after unwrapping and ``module.`` stripping) is this layout.
        renames: ``(pattern, replacement or None)`` rows; patterns match whole keys.
        reference: the upstream model parity runs (`references.registry.REFERENCES`).
        inflate: the weights are 2D ImageNet Swin and must be inflated to 3D.
        preprocessing: the input pipeline the weights were scored with, stored beside the
            converted weights (`outputs.preprocessing`); None when the source does not say.
    """

    name: str
    detect: Callable[[Mapping[str, Any]], bool]
    renames: tuple[Rename, ...]
    reference: str
    inflate: bool = False
    preprocessing: dict[str, Any] | None = None


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
        raise SourceError(
            f"{len(unmatched)} key{'s' if len(unmatched) != 1 else ''} of a {source.name} "
            f"checkpoint match no known name: {listing(unmatched)}"
        )
    return renamed, dropped


def _fields(match: re.Match) -> dict[str, Any]:
    """The match's named groups, with the `INDEX_GROUPS` turned into ``i``."""
    fields: dict[str, Any] = dict(match.groupdict())
    for group, to_stage in INDEX_GROUPS.items():
        if fields.get(group) is not None:
            fields["i"] = to_stage(int(fields[group]))
    return fields


def listing(keys: list[str]) -> str:
    """The first `SHOWN_KEYS` of ``keys``, comma-separated, then ``and N more``."""
    shown = ", ".join(str(key) for key in keys[:SHOWN_KEYS])
    return shown + (f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else "")
