"""Parity for 2D ImageNet Swin files: mmaction2's own ``SwinTransformer3D`` inflating the file
(``pretrained2d=True``), never our inflation."""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videoswin_tf.convert.mapping.spec import ModelSpec
from videoswin_tf.convert.references.mmaction2 import (
    ReferenceModel,
    quiet_mmengine,
    reference_forward,
)
from videoswin_tf.convert.sources.checkpoint import LoadedCheckpoint
from videoswin_tf.convert.sources.layout import rename


def mmaction2_inflation_forward(
    spec: ModelSpec, checkpoint: LoadedCheckpoint, clip: np.ndarray
) -> dict[str, Any]:
    """mmaction2's ``SwinTransformer3D(pretrained=<file>, pretrained2d=True)`` after
    ``init_weights()``, which inflates the 2D file itself, on ``clip``.

    mmaction2 reads the Microsoft layout (``{"model": ...}``, ``layers.<i>.downsample`` ending
    stage i, ``norm.*``): the file's own tensors, renamed to it when they came in timm's layout.
    """
    state, _ = rename(checkpoint.source, checkpoint.original)
    microsoft = {
        re.sub(r"^backbone\.(norm3\.)?", lambda m: "norm." if m[1] else "", key): torch.from_numpy(
            value
        )
        for key, value in state.items()
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "imagenet_2d.pth"
        torch.save({"model": microsoft}, path)
        model = ReferenceModel(spec, pretrained=str(path), pretrained2d=True)
        # mmengine prints "Loads checkpoint by local backend from path: <temporary file>"
        with quiet_mmengine(), contextlib.redirect_stdout(io.StringIO()):
            model.backbone.init_weights()
    return reference_forward(model, clip)
