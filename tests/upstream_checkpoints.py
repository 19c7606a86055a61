"""Checkpoints written by the upstream models themselves (timm's 2D Swin, torchvision's swin3d),
their weights stressed by `videoswin_tf.convert.references.synthetic.stressed`, saved in the
layouts people download."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from videoswin_tf.convert.references.synthetic import save_checkpoint, stressed
from videoswin_tf.convert.references.torchvision_shim import import_torchvision

# Small architectures the upstream constructors accept, for the default suite (head_dim 32).
SMALL = {"embed_dim": 32, "depths": (1, 1, 2, 1), "num_heads": (1, 2, 4, 8)}


def timm_swin(name: str, **overrides) -> torch.nn.Module:
    """timm's own model ``name`` with its random initialisation (no download)."""
    import_torchvision()  # timm imports torchvision
    import timm

    return timm.create_model(name, pretrained=False, **overrides)


def timm_layout(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The model's state dict as timm >= 0.9 saves it, every learned tensor stressed."""
    return stressed(model.state_dict(), f"timm:{seed}", head_prefix="head.")


def microsoft_layout(model: torch.nn.Module, timm_state: dict[str, torch.Tensor]) -> dict:
    """``timm_state`` in Microsoft's published layout: the reverse of timm's
    ``checkpoint_filter_fn`` (downsample back to the end of the previous stage, ``head.fc`` to
    ``head``, the ``relative_position_index`` and ``attn_mask`` buffers put back), under
    ``model``."""
    state = {}
    for key, value in timm_state.items():
        key = re.sub(
            r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m[1]) - 1}.downsample.", key
        )
        state[key.replace("head.fc.", "head.")] = value
    for name, buffer in model.named_buffers():
        if name.endswith(("relative_position_index", "attn_mask")):
            state[name] = buffer.clone()
    return {"model": state}


def save_timm_pair(folder: Path, name: str, seed: int = 0, **overrides) -> tuple[Path, Path]:
    """The same stressed timm weights saved twice: ``(microsoft.pth, timm.pth)``."""
    model = timm_swin(name, **overrides)
    timm_state = timm_layout(model, seed)
    microsoft, timm_path = folder / f"{name}.pth", folder / f"{name}_timm.pth"
    save_checkpoint(microsoft_layout(model, timm_state), microsoft)
    save_checkpoint(timm_state, timm_path)
    return microsoft, timm_path


def torchvision_swin3d(builder: str | None = None, **custom) -> torch.nn.Module:
    """torchvision's ``swin3d_t/s/b`` (``builder``) or its ``SwinTransformer3d(**custom)``."""
    video = import_torchvision().models.video
    if builder is not None:
        return getattr(video, builder)()
    return video.swin_transformer.SwinTransformer3d(**custom)


def save_torchvision(path: Path, model: torch.nn.Module, seed: int = 0) -> Path:
    """The model's flat state dict, stressed (head std 0.1), as torchvision publishes it."""
    save_checkpoint(stressed(model.state_dict(), f"torchvision:{seed}", head_prefix="head."), path)
    return path
