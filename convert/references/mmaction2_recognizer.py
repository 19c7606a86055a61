"""The reference for checkpoints written back to mmaction2: its ``Recognizer3D``, built by
mmaction2's own registry from mmaction2's own config, loading the file as its tools do.

`mmaction2_forward` builds the backbone and head directly; a file going back to mmaction2 must
load into what mmaction2's ``tools/test.py`` builds: ``MODELS.build(cfg.model)`` under the
``mmaction`` default scope, a ``Recognizer3D`` holding ``SwinTransformer3D``, ``I3DHead`` and
an ``ActionDataPreprocessor``. `recognizer_config` is the model dict of the mmaction2 Swin
config of the same size (shipped in the mmaction2 wheel, read as data by
`videoswin_tf.convert.configs.mmaction2_reader`) with the architecture, window, patch and head
of the model at hand. `recognizer_forward` builds it, loads the written file with
``torch.load(weights_only=True)`` and ``load_state_dict(strict=True)``, and runs the recognizer
in eval mode through its own ``forward(mode='tensor')`` on the parity clip. That clip is
already normalised, as for every reference, so the recognizer's data preprocessor (mean and
std from the config, non-persistent buffers, not in the file) is not run.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from videoswin_tf.convert.errors import ConversionError
from videoswin_tf.convert.mapping.spec import ModelSpec
from videoswin_tf.convert.references.mmaction2 import (
    INSTALL_HINT,
    STUB_PACKAGES,
    UPSTREAM_FILES,
    load_mmaction_files,
    traced_forward,
)
from videoswin_tf.convert.sources.checkpoint import LoadedCheckpoint

# The recognizer's files after the backbone's and head's; each imports only files above it.
RECOGNIZER_FILES: tuple[tuple[str, str], ...] = (
    *UPSTREAM_FILES,
    ("mmaction.models.recognizers.base", "models/recognizers/base.py"),
    ("mmaction.models.recognizers.recognizer3d", "models/recognizers/recognizer3d.py"),
    (
        "mmaction.models.data_preprocessors.data_preprocessor",
        "models/data_preprocessors/data_preprocessor.py",
    ),
)
RECOGNIZER_PACKAGES = (
    *STUB_PACKAGES,
    "mmaction.models.recognizers",
    "mmaction.models.data_preprocessors",
)
SCOPE = "mmaction"  # the default scope mmaction2's configs set (default_runtime.py)

# mmaction2's Kinetics-400 Swin config of each size, in the wheel's configs/recognition/swin/;
# a model of no standard size takes the tiny one's model dict.
CONFIGS = {
    "tiny": "swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb.py",
    "small": "swin-small-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb.py",
    "base": "swin-base-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb.py",
    "large": "swin-large-p244-w877_in22k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb.py",
}
FALLBACK_CONFIG = "tiny"


def config_path(spec: ModelSpec) -> Path:
    """The installed mmaction2's Swin config of ``spec``'s size."""
    import mmaction

    folder = Path(mmaction.__file__).parent / ".mim" / "configs" / "recognition" / "swin"
    return folder / CONFIGS[spec.arch if spec.arch in CONFIGS else FALLBACK_CONFIG]


def recognizer_config(spec: ModelSpec) -> dict[str, Any]:
    """``model`` of `config_path`'s config, read as data, with ``spec``'s architecture, window,
    patch and drop path (no pretrained file), and its head's classes and input channels, or no
    head for a backbone-only ``spec``.

    Raises:
        ConversionError: the config is missing from the installed mmaction2 or unreadable.
    """
    from videoswin_tf.convert.configs.mmaction2_reader import UnreadableConfig, read_config

    path = config_path(spec)
    try:
        model = read_config(path)["model"]
    except (UnreadableConfig, KeyError) as error:
        raise ConversionError(
            f"mmaction2's config {path} does not give a model ({error}); reinstall it with: "
            f"{INSTALL_HINT}"
        ) from None
    model["backbone"] |= spec.reference_kwargs()
    if spec.num_classes is None:
        model.pop("cls_head", None)
    else:
        model["cls_head"] |= {"num_classes": spec.num_classes, "in_channels": spec.num_features}
    return model


@functools.cache
def _registry():
    """mmaction2's ``MODELS`` registry with the recognizer's classes registered in it."""
    try:
        load_mmaction_files(RECOGNIZER_FILES, RECOGNIZER_PACKAGES)
        from mmaction.registry import MODELS
        from mmengine.registry import DefaultScope
    except ImportError as error:
        raise ImportError(
            f"the recognizer reference needs mmaction2 1.2 with mmengine, mmcv-lite<2.2 and "
            f"einops ({error}); install them with: {INSTALL_HINT}"
        ) from error
    return MODELS, DefaultScope


def build_recognizer(spec: ModelSpec):
    """mmaction2's ``Recognizer3D`` for ``spec``, built by ``MODELS.build`` from
    `recognizer_config` under the ``mmaction`` scope, in eval mode, weights untrained."""
    models, default_scope = _registry()
    with warnings.catch_warnings(), default_scope.overwrite_default_scope(SCOPE):
        # the upstream builds its relative position index with torch.meshgrid's default
        # ("ij") indexing, which torch warns about on every construction
        warnings.filterwarnings("ignore", message="torch.meshgrid: in an upcoming release")
        recognizer = models.build(recognizer_config(spec))
    recognizer.eval()
    return recognizer


def load_strictly(recognizer, path: str | os.PathLike) -> None:
    """Load the mmaction2 checkpoint ``path`` into ``recognizer`` as mmaction2's tools read it,
    but safely and strictly: ``torch.load(weights_only=True)``, then ``load_state_dict`` of its
    ``state_dict`` with ``strict=True``.

    Raises:
        ConversionError: the file holds no ``state_dict``, or keys are missing, left over or
            of the wrong shape (the first line of torch's message).
    """
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConversionError(
            f"{path}: holds no 'state_dict'; mmaction2's tools read it from there"
        )
    try:
        recognizer.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise ConversionError(
            f"{path}: mmaction2's Recognizer3D does not load it with strict=True ({detail})"
        ) from None


def recognizer_forward(
    spec: ModelSpec, checkpoint: LoadedCheckpoint, clip: np.ndarray
) -> dict[str, Any]:
    """mmaction2's registry-built recognizer holding ``checkpoint.file`` (loaded by
    `load_strictly`), in eval mode on ``clip`` ``(B, T, H, W, 3)``: its ``forward`` with
    ``mode='tensor'`` up to stage ``head`` (``backbone`` without a head), each clip one view.
    Outputs as `traced_forward` gives them."""
    if checkpoint.file is None:
        raise ConversionError("the recognizer reference loads a written file; none was given")
    recognizer = build_recognizer(spec)
    load_strictly(recognizer, checkpoint.file)
    has_head = spec.num_classes is not None
    stage = "head" if has_head else "backbone"
    return traced_forward(
        lambda x: recognizer(x[:, None], mode="tensor", stage=stage),
        recognizer.backbone,
        has_head,
        clip,
    )
