"""What a builder's ``weights=`` names (a preset, a release name, a local file) fixes of the
model, and loading it: the file's whole model, or its backbone under ``include_top=False``."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from videoswin_tf.architectures import ARCHITECTURES, find_arch
from videoswin_tf.downloads import fetch_preset_weights
from videoswin_tf.file_kind import Kind, classify
from videoswin_tf.keras3_h5 import archive_source
from videoswin_tf.labels import load_labels
from videoswin_tf.presets import Preset, lookup, presets
from videoswin_tf.weights_file import (
    KERAS_ARCHIVE_SUFFIX,
    read_file_config,
    refuse_foreign,
    refuse_saved_model,
    refuse_unreadable,
    weights_format,
)

# Builder arguments that a source of weights fixes and a caller may only repeat.
SHAPE_ARGUMENTS = ("window_size", "patch_size")
ARCHITECTURE_ARGUMENTS = ("embed_dim", "depths", "num_heads", "in_channels")


@dataclasses.dataclass(frozen=True)
class WeightsSource:
    """Pretrained weights as ``weights=`` named them.

    Attributes:
        described: how errors name it, e.g. ``"weights='swin_b_ssv2'"``.
        arch: its architecture (``"tiny"`` ...), or ``None`` when unknown or custom.
        fixed: the model arguments it fixes: ``window_size``, ``patch_size``, and
            ``num_classes`` (``None`` for a backbone-only file); empty when unknown.
        labels: its label map name, or ``None``.
        preset: the preset to download, or ``None`` for a local file.
        path: the local file, or ``None`` for a preset.
        backbone: the name means the backbone alone (the Keras 3 rewrite's backbone names),
            so the model is built without a head.
        class_names: the class names a local file records, which take precedence over
            ``labels``; or ``None``.
    """

    described: str
    arch: str | None
    fixed: dict[str, Any]
    labels: str | None
    preset: Preset | None = None
    path: Path | None = None
    backbone: bool = False
    class_names: tuple[str, ...] | None = None


def resolve(weights: str | os.PathLike) -> WeightsSource:
    """The source that ``weights`` names: a preset (``"swin_t_k400"``), another name of it
    (`Preset.names`: ``"TFVideoSwinT_K400_IN1K_P244_W877_32x224"``,
    ``"videoswin_tiny_kinetics400_classifier"``, ``"videoswin_tiny_kinetics400"``) or a
    ``.h5`` / ``.weights.h5`` file (or a ``.keras`` archive of the rewrite's or KerasCV's)."""
    known = presets()
    found = lookup(str(weights))
    if found is not None:
        preset, backbone = found
        return WeightsSource(
            f"weights={str(weights)!r}",
            preset.arch,
            {
                "window_size": preset.window_size,
                "patch_size": preset.patch_size,
                "num_classes": preset.num_classes,
            },
            preset.labels,
            preset=preset,
            backbone=backbone,
        )
    path = Path(weights)
    found = classify(path)  # once: each check below is handed the answer
    refuse_saved_model(found)
    if found.kind is Kind.MISSING:
        example = next(iter(known.values()))
        raise ValueError(
            f"weights={str(weights)!r} is neither a preset ({', '.join(known)}), another name "
            f"of one (e.g. {example.release!r} or {example.names[-2]!r}), nor an existing .h5, "
            ".weights.h5 or .keras file"
        )
    refuse_unreadable(found)
    if archive_source(path) is None:  # their .keras archives are read by structure too
        if path.name.endswith(KERAS_ARCHIVE_SUFFIX):
            refuse_foreign(found)  # a .keras archive of another model
        weights_format(path)
    config = read_file_config(found)
    if config is None:
        return WeightsSource(f"weights={str(weights)!r}", None, {}, None, path=path)
    return WeightsSource(
        f"weights={str(weights)!r}",
        find_arch(config["embed_dim"], config["depths"], config["num_heads"]),
        {
            "window_size": tuple(config["window_size"]),
            "patch_size": tuple(config["patch_size"]),
            "num_classes": config["num_classes"],
        },
        config["labels"],
        path=path,
        class_names=None if config.get("class_names") is None else tuple(config["class_names"]),
    )


def model_arguments(source: WeightsSource, arch: str, overrides: dict[str, Any]) -> dict:
    """The builder's ``overrides`` completed with what ``source`` fixes (and its class names);
    a `ValueError` naming the argument when one contradicts it."""
    builder = ARCHITECTURES[arch].builder
    if source.fixed and source.arch != arch:
        right = (
            f"build it with {ARCHITECTURES[source.arch].builder}({source.described})"
            if source.arch
            else "build TFSwinTransformer3D with its sizes and call load_weights"
        )
        kind = f"a Swin-{source.arch[0].upper()}" if source.arch else "a custom-size"
        raise ValueError(f"{source.described} is {kind} model, not {builder}'s; {right}")
    if not source.fixed:  # a file that records nothing: Keras' own checks only
        return dict(overrides)
    for key in ARCHITECTURE_ARGUMENTS:
        if key in overrides:
            raise ValueError(
                f"{key} is fixed by {source.described} ({builder}); leave it out, or build "
                "without weights="
            )
    arguments = dict(overrides)
    if source.backbone:
        if overrides.get("include_top", False):
            raise ValueError(
                f"{source.described} names the backbone alone (the Keras 3 rewrite's name); "
                f"leave include_top out, or use weights={source.preset.name!r} for the classifier"
            )
        arguments["include_top"] = False
    for key in SHAPE_ARGUMENTS:
        wanted = source.fixed[key]
        if key in overrides and tuple(overrides[key]) != tuple(wanted):
            raise ValueError(
                f"{key}={tuple(overrides[key])} contradicts {source.described}, whose "
                f"{key} is {tuple(wanted)}; leave {key} out"
            )
        arguments[key] = tuple(wanted)
    classes = source.fixed["num_classes"]
    if not arguments.get("include_top", True):
        return arguments
    if classes is None:
        raise ValueError(
            f"{source.described} holds a backbone only (no classifier); pass include_top=False"
        )
    if "num_classes" in overrides and overrides["num_classes"] != classes:
        raise ValueError(
            f"num_classes={overrides['num_classes']} contradicts {source.described}, whose head "
            f"has {classes} classes; leave num_classes out, or pass include_top=False to load "
            "the backbone and put a new head on it"
        )
    arguments["num_classes"] = classes
    if "class_names" not in overrides:
        if source.class_names is not None:
            arguments["class_names"] = list(source.class_names)
        elif source.labels:
            arguments["class_names"] = load_labels(source.labels, classes)
    return arguments


def load(model, source: WeightsSource) -> None:
    """Load ``source`` into ``model``: the whole file, or, for a model without a head and a
    file with one, its backbone alone."""
    path = source.path or fetch_preset_weights(source.preset)
    if model.include_top or source.fixed.get("num_classes") is None:
        model.load_weights(path)
        return
    config = model.get_config() | {
        "include_top": True,
        "num_classes": source.fixed["num_classes"],
        "class_names": None,
        "name": None,
    }
    full = type(model).from_config(config)
    full.load_weights(path)
    donors = {layer.name: layer for layer in full.layers}
    for layer in model.layers:  # every layer but the head, which the model lacks
        layer.set_weights(donors[layer.name].get_weights())
