"""Test and demo checkpoints made by the upstream reference model, in the published layouts.

The reference's own initialisation is too gentle to test a port (bias tables near zero,
LayerNorms at exactly 1 and 0), so `distinctive_state` re-draws every learned tensor to a
distinct, non-trivial value with a fixed seed. `make_checkpoint` then saves those values in the
exact container and key layout of a published file; the values are the same in every layout
for a given ``(spec, seed)`` (the ``half`` layout rounds them to float16).
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path
from typing import Any

import torch

from videoswin_tf.convert.mapping.spec import ModelSpec
from videoswin_tf.convert.references.mmaction2 import build_reference

LAYOUTS: tuple[str, ...] = ("authors", "mmaction", "module", "bare", "backbone_only", "half")

# mmaction2 1.x's ActionDataPreprocessor buffers for RGB 0-255 input, shaped [3, 1, 1, 1].
PREPROCESSOR_MEAN = (123.675, 116.28, 103.53)
PREPROCESSOR_STD = (58.395, 57.12, 57.375)

# Scales of the re-drawn tensors (see docs/reference.md, "Test checkpoints that can catch bugs").
BIAS_TABLE_STD = 1.5
NORM_WEIGHT_SPREAD = 0.5  # LayerNorm weights uniform in 1 +/- this
NORM_BIAS_SPREAD = 0.5  # LayerNorm biases uniform in +/- this
LINEAR_BIAS_STD = 0.2
HEAD_WEIGHT_STD = 0.1


def distinctive_state(spec: ModelSpec, seed: int) -> dict[str, torch.Tensor]:
    """The reference model's state dict (mmaction2 1.x keys) with every learned tensor re-drawn.

    Draws, in state-dict order from one generator seeded with ``seed`` and the config name (so
    two configs of one architecture, such as the IN-1K and IN-22K Swin-B, differ):
    relative position bias tables ``N(0, 1.5)``; LayerNorm weights ``U(0.5, 1.5)`` and biases
    ``U(-0.5, 0.5)``; Linear and Conv3d weights ``N(0, 1 / fan_in)`` (keeps activations O(1):
    each residual branch adds about unit variance and every stage starts from a LayerNorm);
    their biases ``N(0, 0.2)``; the head ``N(0, 0.1)`` with bias ``N(0, 0.2)``.
    The int64 ``relative_position_index`` buffers are kept exactly as the model has them.

    Args:
        spec: the model.
        seed: seed of the values.

    Returns:
        ``{key: tensor}``, float32 except the int64 index buffers.
    """
    return stressed(build_reference(spec).state_dict(), f"{spec.name}:{seed}")


def stressed(
    state: dict[str, torch.Tensor], seed_text: str, head_prefix: str = "cls_head."
) -> dict[str, torch.Tensor]:
    """Any Swin state dict (mmaction2's, timm's, torchvision's keys) with every learned tensor
    re-drawn as `distinctive_state` describes, in order, from a generator seeded with
    ``crc32(seed_text)``; ``relative_position_index`` and ``attn_mask`` buffers are kept.
    Keys starting with ``head_prefix`` are the classifier."""
    generator = torch.Generator().manual_seed(zlib.crc32(seed_text.encode()))
    return {
        key: tensor.clone()
        if key.endswith(("relative_position_index", "attn_mask"))
        else _draw(key, tuple(tensor.shape), generator, head_prefix)
        for key, tensor in state.items()
    }


def _draw(
    key: str, shape: tuple[int, ...], generator: torch.Generator, head_prefix: str
) -> torch.Tensor:
    """A fresh float32 tensor for the learned tensor ``key`` (see `distinctive_state`)."""

    def normal(std: float) -> torch.Tensor:
        return torch.randn(shape, generator=generator) * std

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(shape, generator=generator) * (high - low) + low

    module, _, kind = key.rpartition(".")
    leaf = module.rpartition(".")[2]
    if kind == "relative_position_bias_table":
        return normal(BIAS_TABLE_STD)
    if leaf.startswith("norm"):
        if kind == "weight":
            return uniform(1 - NORM_WEIGHT_SPREAD, 1 + NORM_WEIGHT_SPREAD)
        return uniform(-NORM_BIAS_SPREAD, NORM_BIAS_SPREAD)
    if kind == "bias":
        return normal(LINEAR_BIAS_STD)
    if key.startswith(head_prefix):
        return normal(HEAD_WEIGHT_STD)
    if kind == "weight":
        return normal(1 / math.sqrt(math.prod(shape[1:])))
    raise ValueError(
        f"no rule to re-draw {key} {list(shape)}; add one to "
        "videoswin_tf.convert.references.synthetic._draw"
    )


def make_checkpoint(spec: ModelSpec, layout: str = "authors", seed: int = 0) -> dict[str, Any]:
    """A checkpoint of `distinctive_state` values in one published layout.

    Args:
        spec: the model (``num_classes`` None gives no ``cls_head.*`` in any layout).
        layout: one of `LAYOUTS`:
            ``"authors"``: ``{"meta", "state_dict"}``, final norm ``backbone.norm.*``, as the
            authors' Video-Swin files; ``"mmaction"``: mmaction2 1.x, ``backbone.norm3.*``,
            plus ``data_preprocessor.mean``/``.std`` [3, 1, 1, 1] buffers in the state dict and
            top-level ``meta`` and ``message_hub``; ``"module"``: authors' layout with every
            state-dict key prefixed ``module.`` (DDP); ``"bare"``: the authors' state dict
            itself; ``"backbone_only"``: authors' layout without ``cls_head.*``; ``"half"``:
            authors' layout with the float tensors in float16.
        seed: seed of the values.

    Returns:
        A dict for `save_checkpoint`; everything outside the tensors is plain dicts, strings,
        numbers and booleans, except the ``"mmaction"`` layout's ``message_hub``, which holds
        mmengine ``HistoryBuffer`` objects as a real run's does (the converter's loader reads
        them through `sources.training_objects`; torch's ``weights_only`` alone refuses them).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    state = distinctive_state(spec, seed)
    meta = _meta(spec, layout, seed)
    if layout == "mmaction":
        state["data_preprocessor.mean"] = torch.tensor(PREPROCESSOR_MEAN).view(3, 1, 1, 1)
        state["data_preprocessor.std"] = torch.tensor(PREPROCESSOR_STD).view(3, 1, 1, 1)
        return {"meta": meta, "state_dict": state, "message_hub": _message_hub()}
    state = {_authors_key(key): tensor for key, tensor in state.items()}
    if layout == "bare":
        return state
    if layout == "module":
        state = {f"module.{key}": tensor for key, tensor in state.items()}
    elif layout == "backbone_only":
        state = {key: tensor for key, tensor in state.items() if not key.startswith("cls_head.")}
    elif layout == "half":
        state = {
            key: tensor.half() if tensor.is_floating_point() else tensor
            for key, tensor in state.items()
        }
    return {"meta": meta, "state_dict": state}


def _authors_key(key: str) -> str:
    """mmaction2 1.x key to the authors' name (the final norm is ``norm``, not ``norm3``)."""
    return (
        "backbone.norm." + key[len("backbone.norm3.") :]
        if key.startswith("backbone.norm3.")
        else key
    )


def _meta(spec: ModelSpec, layout: str, seed: int) -> dict[str, Any]:
    """Top-level ``meta``: what the file is, saying plainly that it holds no trained weights."""
    return {
        "note": "synthetic test checkpoint written by videoswin-tf "
        "(videoswin_tf.convert.references.synthetic): "
        "upstream mmaction2 reference model, every tensor re-drawn from a fixed seed; "
        "not trained weights",
        "config": spec.name,
        "source": spec.source or "",
        "layout": layout,
        "seed": seed,
        "epoch": 0,
        "iter": 0,
    }


def _message_hub() -> dict[str, Any]:
    """mmengine's own ``MessageHub`` state after three logged iterations, as a Runner saves
    it: ``log_scalars`` holds ``HistoryBuffer`` objects (numpy arrays inside),
    ``runtime_info`` the epoch and iteration."""
    from mmengine.logging import MessageHub

    hub = MessageHub("videoswin-tf-synthetic")
    for step in range(1, 4):
        hub.update_scalar("train/loss", 1.0 / step)
        hub.update_scalar("train/lr", 1e-3, count=8)
    hub.update_info("epoch", 0)
    hub.update_info("iter", 3)
    return hub.state_dict()


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` ``checkpoint`` to ``path`` atomically (a temporary file in the same
    folder, then a rename), so ``path`` never holds half a file. The folder must exist."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        torch.save(checkpoint, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
