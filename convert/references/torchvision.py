"""Parity for torchvision's files: torchvision's own ``SwinTransformer3d``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from videoswin_tf.convert.errors import ConversionError
from videoswin_tf.convert.mapping.spec import ModelSpec
from videoswin_tf.convert.references.torchvision_shim import import_torchvision
from videoswin_tf.convert.sources.checkpoint import LoadedCheckpoint


def build_torchvision(spec: ModelSpec) -> torch.nn.Module:
    """torchvision's ``SwinTransformer3d`` for ``spec``, with its own random initialisation.

    Raises:
        ConversionError: ``spec`` has no head; torchvision's model always has one.
    """
    if spec.num_classes is None:
        raise ConversionError(
            "torchvision's SwinTransformer3d always has a classifier head and this model has "
            "none; use --format mmaction2 for a backbone"
        )
    video = import_torchvision().models.video
    return video.swin_transformer.SwinTransformer3d(
        patch_size=list(spec.patch_size),
        embed_dim=spec.embed_dim,
        depths=list(spec.depths),
        num_heads=list(spec.num_heads),
        window_size=list(spec.window_size),
        stochastic_depth_prob=spec.drop_path_rate,
        num_classes=spec.num_classes,
    )


def torchvision_forward(
    spec: ModelSpec, checkpoint: LoadedCheckpoint, clip: np.ndarray
) -> dict[str, Any]:
    """torchvision's ``SwinTransformer3d`` (what ``swin3d_t/s/b`` build) for ``spec``, with the
    file's own tensors loaded strictly, on ``clip``.

    Stage maps are the outputs of ``features[0]``, ``features[2]``, ``features[4]`` (before
    their patch merging) and of the final ``norm``, all channels last.
    """
    model = build_torchvision(spec)
    model.load_state_dict(
        {key: torch.from_numpy(value) for key, value in checkpoint.original.items()}, strict=True
    )
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(clip.transpose(0, 4, 1, 2, 3), dtype=np.float32))
    captured: list[torch.Tensor] = []
    stage_outputs = [model.features[2 * i] for i in range(len(spec.depths) - 1)] + [model.norm]
    hooks = [
        module.register_forward_hook(lambda module, args, out: captured.append(out))
        for module in stage_outputs
    ]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return {
        "stages": [np.ascontiguousarray(stage.numpy(), dtype=np.float32) for stage in captured],
        "pooled": captured[-1].mean(dim=(1, 2, 3)).numpy().astype(np.float32),
        "logits": logits.numpy().astype(np.float32),
    }
