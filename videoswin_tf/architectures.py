"""The four published architectures (docs/reference.md): width, depth, heads and builder name."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One standard Video Swin size.

    Attributes:
        builder: name of its builder function, e.g. ``"tf_video_swin_tiny"``.
        embed_dim: channels ``C`` of stage 0.
        depths: blocks per stage.
        num_heads: attention heads per stage.
    """

    builder: str
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]


ARCHITECTURES: dict[str, Architecture] = {
    "tiny": Architecture("tf_video_swin_tiny", 96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "small": Architecture("tf_video_swin_small", 96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "base": Architecture("tf_video_swin_base", 128, (2, 2, 18, 2), (4, 8, 16, 32)),
    "large": Architecture("tf_video_swin_large", 192, (2, 2, 18, 2), (6, 12, 24, 48)),
}
DEFAULT_WINDOW = (8, 7, 7)
DEFAULT_PATCH = (2, 4, 4)


def find_arch(embed_dim: int, depths: Sequence[int], num_heads: Sequence[int]) -> str | None:
    """Name of the standard architecture with these sizes, or ``None`` for a custom one."""
    for name, arch in ARCHITECTURES.items():
        if (arch.embed_dim, arch.depths, arch.num_heads) == (
            embed_dim,
            tuple(depths),
            tuple(num_heads),
        ):
            return name
    return None


def builder_call(config: dict[str, Any], **extra: Any) -> str:
    """The call that builds a model of ``config`` (keys of `TFSwinTransformer3D.get_config`),
    e.g. ``"tf_video_swin_base(window_size=(16, 7, 7), num_classes=174)"``; arguments equal
    to the builder's defaults are left out, ``extra`` ones are appended."""
    arch = find_arch(config["embed_dim"], config["depths"], config["num_heads"])
    arguments: dict[str, Any] = {}
    if arch is None:
        function = "TFSwinTransformer3D"
        arguments |= {key: config[key] for key in ("embed_dim", "depths", "num_heads")}
    else:
        function = ARCHITECTURES[arch].builder
    if tuple(config["window_size"]) != DEFAULT_WINDOW:
        arguments["window_size"] = tuple(config["window_size"])
    if tuple(config["patch_size"]) != DEFAULT_PATCH:
        arguments["patch_size"] = tuple(config["patch_size"])
    if config["include_top"]:
        arguments["num_classes"] = config["num_classes"]
    else:
        arguments["include_top"] = False
    arguments |= extra
    return f"{function}({', '.join(f'{key}={value!r}' for key, value in arguments.items())})"
