"""The upstream reference: mmaction2's own ``SwinTransformer3D`` and ``I3DHead``, never a copy.

mmaction2 1.2.0 cannot ``import mmaction.models`` (its wheel lacks ``models/localizers/drn``), so
`load_upstream` registers the ``mmaction.models`` sub-packages as empty namespace modules and
executes the four source files the Video Swin recognizer needs, by path, under their real
dotted names. Everything else here wraps those classes: `ReferenceModel` gives them mmaction2
1.x state-dict keys, `reference_forward` runs them on a channels-last clip, `mmaction2_forward`
is parity for mmaction2's own layouts (see `videoswin_tf.convert.references.registry`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from videoswin_tf.convert.mapping.spec import ModelSpec
from videoswin_tf.convert.sources.checkpoint import LoadedCheckpoint

INSTALL_HINT = "pip install videoswin-tf[convert]"

try:
    import torch
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"videoswin_tf.convert.references.mmaction2 needs torch and mmaction2 ({error}); "
        f"install them with: {INSTALL_HINT}"
    ) from error

# Loaded in this order: each file imports only `mmaction.registry`, `mmaction.utils`,
# `mmaction.evaluation` and the files above it (the head's loss is built from the registry).
UPSTREAM_FILES: tuple[tuple[str, str], ...] = (
    ("mmaction.models.backbones.swin", "models/backbones/swin.py"),
    ("mmaction.models.losses.base", "models/losses/base.py"),
    ("mmaction.models.losses.cross_entropy_loss", "models/losses/cross_entropy_loss.py"),
    ("mmaction.models.heads.i3d_head", "models/heads/i3d_head.py"),
)
STUB_PACKAGES = (
    "mmaction.models",
    "mmaction.models.heads",
    "mmaction.models.backbones",
    "mmaction.models.losses",
)


@functools.cache
def load_upstream() -> tuple[type, type]:
    """The upstream ``(SwinTransformer3D, I3DHead)`` classes of the installed mmaction2.

    Raises:
        ImportError: mmaction2 or one of its dependencies (mmengine, mmcv-lite, einops) is
            missing or broken; the message names the module and the install command.
    """
    try:
        modules = load_mmaction_files(UPSTREAM_FILES, STUB_PACKAGES)
    except ImportError as error:
        raise ImportError(
            f"the upstream reference needs mmaction2 1.2 with mmengine, mmcv-lite<2.2 and einops "
            f"({error}); install them with: {INSTALL_HINT}"
        ) from error
    return (
        modules["mmaction.models.backbones.swin"].SwinTransformer3D,
        modules["mmaction.models.heads.i3d_head"].I3DHead,
    )


def load_mmaction_files(
    files: tuple[tuple[str, str], ...], stub_packages: tuple[str, ...]
) -> dict[str, types.ModuleType]:
    """Execute mmaction2 source files by path under their real dotted names, ``{name: module}``.

    ``stub_packages`` are registered as empty namespace modules pointing at their folders, so
    that a broken package ``__init__`` (``mmaction.models`` on 1.2.0) cannot stop them.

    Raises:
        ImportError: mmaction2, a file or one of its imports is missing.
    """
    with warnings.catch_warnings():
        # torch 2.13 deprecates torch.jit.script, which mmengine's imports still call
        warnings.filterwarnings("ignore", message="`torch.jit.", category=DeprecationWarning)
        import mmaction

        root = os.path.dirname(mmaction.__file__)
        for package in stub_packages:
            if package not in sys.modules:
                stub = types.ModuleType(package)
                stub.__path__ = [os.path.join(root, *package.split(".")[1:])]
                sys.modules[package] = stub
        return {name: _load_file(name, os.path.join(root, relative)) for name, relative in files}


def _load_file(name: str, path: str) -> types.ModuleType:
    """Execute the source file ``path`` as module ``name`` (once; reused if already loaded)."""
    if name in sys.modules:
        return sys.modules[name]
    if not os.path.isfile(path):
        raise ImportError(f"{path} is missing from the installed mmaction2")
    file_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[name] = module
    try:
        file_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


class ReferenceModel(torch.nn.Module):
    """Upstream backbone plus optional I3D head, with mmaction2 1.x state-dict keys.

    ``state_dict()`` keys are ``backbone.*`` (final norm ``backbone.norm3.*``) and
    ``cls_head.fc_cls.*``, exactly as in an mmaction2 1.x ``Recognizer3D`` checkpoint.

    Args:
        spec: the model; ``spec.num_classes`` None builds no head (``cls_head`` is None).
        backbone_overrides: further ``SwinTransformer3D`` arguments, e.g. ``pretrained`` and
            ``pretrained2d``.
    """

    def __init__(self, spec: ModelSpec, **backbone_overrides: Any):
        super().__init__()
        backbone_class, head_class = load_upstream()
        self.spec = spec
        with warnings.catch_warnings():
            # the upstream builds its relative position index with torch.meshgrid's default
            # ("ij") indexing, which torch warns about on every construction
            warnings.filterwarnings("ignore", message="torch.meshgrid: in an upcoming release")
            self.backbone = backbone_class(**{**spec.reference_kwargs(), **backbone_overrides})
        self.cls_head = (
            None
            if spec.num_classes is None
            else head_class(num_classes=spec.num_classes, in_channels=spec.num_features)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, classes)`` from a clip ``(B, 3, T, H, W)``; without a head, the
        backbone output ``(B, C, T', H', W')``."""
        features = self.backbone(x)
        return features if self.cls_head is None else self.cls_head(features)


def build_reference(spec: ModelSpec, seed: int | None = None) -> ReferenceModel:
    """The upstream model for ``spec``, in eval mode.

    Args:
        spec: the model to build.
        seed: with a seed, the weights are the upstream initialisation (the constructors, then
            ``init_weights()`` of backbone and head) drawn from ``torch.manual_seed(seed)``,
            without touching the caller's global RNG state. Without one, the constructors'
            default initialisation from the global RNG, for weights about to be replaced.
    """
    if seed is None:
        model = ReferenceModel(spec)
    else:
        with torch.random.fork_rng(devices=[]), quiet_mmengine():
            torch.manual_seed(seed)
            model = ReferenceModel(spec)
            model.backbone.init_weights()
            if model.cls_head is not None:
                model.cls_head.init_weights()
    model.eval()
    return model


@contextlib.contextmanager
def quiet_mmengine() -> Iterator[None]:
    """Silence mmengine's per-parameter INFO dump that ``init_weights()`` prints."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def load_reference_state(model: ReferenceModel, state: dict[str, np.ndarray]) -> None:
    """Load a canonical state dict (mmaction2 1.x keys, numpy, as `load_checkpoint` gives it)
    into ``model``, strictly.

    ``relative_position_index`` buffers missing from ``state`` keep the model's own values;
    present ones are loaded as the upstream loader would load them.

    Raises:
        ValueError: keys missing from ``state`` or left over, or tensors of the wrong shape;
            the message lists each.
    """
    expected = model.state_dict()
    problems = []
    for key in sorted(expected.keys() - state.keys()):
        if not key.endswith("relative_position_index"):
            problems.append(f"{key}: missing from the state dict")
    for key in sorted(state.keys() - expected.keys()):
        problems.append(
            f"{key} {list(state[key].shape)}: left over, the reference has no place for it"
        )
    for key in sorted(state.keys() & expected.keys()):
        if tuple(state[key].shape) != tuple(expected[key].shape):
            problems.append(
                f"{key}: shape {list(state[key].shape)}, the reference needs "
                f"{list(expected[key].shape)}"
            )
    if problems:
        raise ValueError(
            f"the state dict does not fit the reference model {model.spec.name!r} "
            f"({len(problems)} problem{'s' if len(problems) != 1 else ''}):\n"
            + "\n".join(f"  - {problem}" for problem in problems)
        )
    tensors = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in state.items()}
    model.load_state_dict(tensors, strict=False)


def reference_forward(model: ReferenceModel, clip: np.ndarray) -> dict[str, Any]:
    """Run the upstream model on a channels-last clip, under ``torch.no_grad`` in eval mode.

    Args:
        model: from `build_reference` (switched to eval mode here if it is not).
        clip: ``(B, T, H, W, 3)`` float32, normalised.

    Returns:
        numpy float32 arrays, as `traced_forward` gives them.
    """
    model.eval()
    return traced_forward(model, model.backbone, model.cls_head is not None, clip)


def traced_forward(
    run: Callable[[torch.Tensor], torch.Tensor],
    backbone: torch.nn.Module,
    has_head: bool,
    clip: np.ndarray,
) -> dict[str, Any]:
    """Call ``run`` on a channels-last clip under ``torch.no_grad``, with the stages of the
    upstream ``SwinTransformer3D`` ``backbone`` it runs captured on the way.

    Args:
        run: a model in eval mode holding ``backbone``, or a call of one: clip
            ``(B, 3, T, H, W)`` -> logits, or the backbone output without a head.
        backbone: the upstream ``SwinTransformer3D`` that ``run`` runs.
        has_head: whether ``run`` returns logits.
        clip: ``(B, T, H, W, 3)`` float32, normalised.

    Returns:
        numpy float32 arrays:
        ``"stages"``: the 4 stage feature maps ``(B, D_i, H_i, W_i, C_i)``, each the output of
        the stage's last block before its patch merging, except the last, which is the
        backbone output after the final norm (``norm3``), channels last;
        ``"pooled"``: ``(B, C)``, the backbone output averaged over D, H, W (the head's input);
        ``"logits"``: ``(B, classes)``, or None for a model without a head.
    """
    clip = np.asarray(clip)
    if clip.ndim != 5 or clip.shape[-1] != 3:
        raise ValueError(f"clip must be (batch, frames, height, width, 3), got shape {clip.shape}")
    x = torch.from_numpy(np.ascontiguousarray(clip.transpose(0, 4, 1, 2, 3), dtype=np.float32))
    captured: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []
    hooks = [
        layer.blocks[-1].register_forward_hook(lambda module, args, out: captured.append(out))
        for layer in backbone.layers
    ]
    hooks.append(backbone.register_forward_hook(lambda module, args, out: outputs.append(out)))
    try:
        with torch.no_grad():
            result = run(x)
    finally:
        for hook in hooks:
            hook.remove()
    features = outputs[-1]
    stages = [stage.numpy() for stage in captured[:-1]]
    stages.append(features.permute(0, 2, 3, 4, 1).numpy())
    return {
        "stages": [np.ascontiguousarray(stage, dtype=np.float32) for stage in stages],
        "pooled": features.mean(dim=(2, 3, 4)).numpy().astype(np.float32),
        "logits": result.numpy().astype(np.float32) if has_head else None,
    }


def mmaction2_forward(
    spec: ModelSpec, checkpoint: LoadedCheckpoint, clip: np.ndarray
) -> dict[str, Any]:
    """mmaction2's model with the canonical state loaded, on ``clip``."""
    model = build_reference(spec)
    load_reference_state(model, checkpoint.state)
    return reference_forward(model, clip)
