"""Presets as keras-hub lays them out, and the weights of `TFSwinTransformer3D` files mapped
onto the backbone/classifier pair.

A preset directory, as `save_to_preset` writes it (keras-hub's file names, so it can be
published on a model hub as it is):

- ``config.json``: the backbone, as ``keras.saving.serialize_keras_object`` writes it;
- ``model.weights.h5``: the backbone's weights (the layout of ``TFSwinTransformer3D`` without
  its head);
- ``metadata.json``: Keras and package versions, parameter count, date saved;
- for a classifier also ``task.json`` (the classifier's config), ``task.weights.h5`` (the
  head's weights) and ``preprocessor.json`` (its `VideoSwinVideoConverter`).

`from_preset` takes such a directory, ``hf://<org>/<name>`` (the same directory on the Hugging
Face Hub, through ``huggingface_hub.snapshot_download``), or a published preset name
(`videoswin_tf.presets`), whose release file is downloaded and checked as the builders do.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import h5py
import keras

from videoswin_tf import keras3_h5, legacy_h5
from videoswin_tf.architectures import ARCHITECTURES
from videoswin_tf.downloads import fetch_preset_weights
from videoswin_tf.presets import Preset, presets
from videoswin_tf.weights_file import load_with_keras, refuse_saved_model

CONFIG_FILE = "config.json"
MODEL_WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
TASK_CONFIG_FILE = "task.json"
TASK_WEIGHTS_FILE = "task.weights.h5"
PREPROCESSOR_CONFIG_FILE = "preprocessor.json"
HF_PREFIX = "hf://"
# Config entries of a saved model that are not constructor arguments of the backbone.
KERAS_ENTRIES = ("name", "trainable")


class PublishedPresets:
    """Class attribute giving the published presets, ``{handle: Preset}``, read when asked."""

    def __get__(self, instance, owner) -> dict[str, Preset]:
        return dict(presets())


def preset_source(handle: str | os.PathLike) -> Path | Preset:
    """The preset directory or published preset that ``handle`` names.

    Raises:
        ValueError: ``handle`` is neither a directory, ``hf://<org>/<name>`` nor a published
            preset name.
        ImportError: ``hf://`` without ``huggingface_hub`` installed.
    """
    text = str(handle)
    if text.startswith(HF_PREFIX):
        return hf_snapshot(text[len(HF_PREFIX) :])
    if Path(text).is_dir():
        return Path(text)
    known = presets()
    if text in known:
        return known[text]
    raise ValueError(
        f"preset {text!r} is neither a preset directory, hf://<org>/<name>, nor a published "
        f"preset ({', '.join(known)})"
    )


def hf_snapshot(repo_id: str) -> Path:
    """The local copy of the Hugging Face Hub model repository ``repo_id`` (downloaded into the
    hub cache; ``HF_HUB_OFFLINE=1`` reads the cache only).

    Raises:
        ImportError: ``huggingface_hub`` is not installed.
        ValueError: the repository is neither in the cache nor reachable.
    """
    try:
        import huggingface_hub
    except ImportError as error:
        raise ImportError(
            f"hf://{repo_id} needs huggingface_hub: pip install 'videoswin-tf[hf]'"
        ) from error
    from huggingface_hub import errors

    try:
        return Path(huggingface_hub.snapshot_download(repo_id=repo_id))
    except (
        errors.LocalEntryNotFoundError,
        errors.HfHubHTTPError,
        errors.HFValidationError,
    ) as error:
        reason = str(error).strip().splitlines()[0]
        raise ValueError(
            f"hf://{repo_id} could not be fetched ({reason}); check the repository name, "
            "the network, and HF_HUB_OFFLINE"
        ) from error


def preset_file(directory: Path, name: str) -> Path:
    """``directory / name``; a one-line `ValueError` naming the missing file otherwise."""
    path = directory / name
    if not path.is_file():
        raise ValueError(
            f"{directory} is not a complete preset: {name} is missing; write the directory "
            "with save_to_preset(...)"
        )
    return path


def read_config(directory: Path, name: str, cls: type) -> dict[str, Any]:
    """The constructor arguments of ``cls`` that ``directory / name`` records (a config
    written by ``keras.saving.serialize_keras_object``); nothing in it is imported or run."""
    path = preset_file(directory, name)
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("class_name") != cls.__name__:
        found = data.get("class_name") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path} describes a {found}, not a {cls.__name__}")
    return dict(data["config"])


def write_preset(preset_dir: str | os.PathLike, write) -> None:
    """Call ``write(folder)`` on a temporary folder beside ``preset_dir``, then move its files
    into ``preset_dir``: a failed write leaves nothing half-written there."""
    directory = Path(preset_dir)
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=directory))
    try:
        write(staging)
        for path in sorted(staging.iterdir()):
            os.replace(path, directory / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_backbone(backbone, folder: Path) -> None:
    """``config.json``, ``model.weights.h5`` and ``metadata.json`` of ``backbone``."""
    from videoswin_tf import __version__

    write_json(folder / CONFIG_FILE, keras.saving.serialize_keras_object(backbone))
    backbone.save_weights(str(folder / MODEL_WEIGHTS_FILE))
    write_json(
        folder / METADATA_FILE,
        {
            "keras_version": keras.version(),
            "videoswin_tf_version": __version__,
            "parameter_count": backbone.count_params(),
            "date_saved": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        },
    )


def save_backbone(backbone, preset_dir: str | os.PathLike) -> None:
    write_preset(preset_dir, lambda folder: write_backbone(backbone, folder))


def preset_backbone_arguments(preset: Preset) -> dict[str, Any]:
    """The `VideoSwinBackbone` arguments of a published preset."""
    sizes = ARCHITECTURES[preset.arch]
    return {
        "embed_dim": sizes.embed_dim,
        "depths": sizes.depths,
        "num_heads": sizes.num_heads,
        "window_size": preset.window_size,
        "patch_size": preset.patch_size,
    }


def backbone_from_preset(cls, handle, overrides: dict[str, Any]):
    source = preset_source(handle)
    if isinstance(source, Preset):
        backbone = cls(**preset_backbone_arguments(source) | overrides)
        backbone.load_weights(fetch_preset_weights(source))
        return backbone
    backbone = cls.from_config(read_config(source, CONFIG_FILE, cls) | overrides)
    backbone.load_weights(preset_file(source, MODEL_WEIGHTS_FILE))
    return backbone


def backbone_arguments(backbone) -> dict[str, Any]:
    """``backbone``'s config without the Keras entries, to build a model of the same sizes."""
    return {key: value for key, value in backbone.get_config().items() if key not in KERAS_ENTRIES}


def head_classes(path: str | os.PathLike) -> int | None:
    """Classes of the I3D head that a ``TFSwinTransformer3D`` weights file holds (either
    format, or a Keras 3 one of the rewrite's or KerasCV's), or ``None`` for a backbone-only
    file (or one that is not HDF5)."""
    with keras3_h5.open_weights(path) as found:
        if found is not None:
            return keras3_h5.head_classes(found.file, found.layout)
    if not Path(path).is_file() or not h5py.is_hdf5(path):
        return None
    with h5py.File(path, "r") as file:
        layout = legacy_h5.detect(file)
        if layout is not None:  # a Keras 2 layout: one group per layer
            if layout.head_group not in file:
                return None
            group = file[layout.head_group]
            shapes = [group[name].shape for name in legacy_h5.attribute_list(group, "weight_names")]
            return next((shape[0] for shape in shapes if len(shape) == 1), None)
        bias = file.get("head/fc_cls/vars/1")
        return None if bias is None else bias.shape[0]


def is_single_model_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a weights file in ``TFSwinTransformer3D``'s layout (either format) or
    a Keras 3 one of the rewrite's or KerasCV's, which its `load_weights` reads."""
    with keras3_h5.open_weights(path) as found:
        if found is not None:
            return True
    if not Path(path).is_file() or not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as file:
        if "layer_names" in file.attrs:
            return legacy_h5.detect(file) is not None
        return "layers/patch_embed3d" in file


def single_model_weights(backbone, path, num_classes: int | None, **kwargs):
    """A ``TFSwinTransformer3D`` of ``backbone``'s sizes, with the head of ``num_classes``
    (none for ``None``), holding the weights of ``path`` (checked by its `load_weights`)."""
    from videoswin_tf.model import TFSwinTransformer3D  # a subclass of the backbone

    model = TFSwinTransformer3D(
        **backbone_arguments(backbone),
        include_top=num_classes is not None,
        num_classes=num_classes or 1,
    )
    model.load_weights(path, **kwargs)
    return model


def copy_variables(source: list, target: list) -> None:
    for want, got in zip(source, target, strict=True):
        got.assign(want)


def load_backbone_weights(backbone, path, **kwargs) -> None:
    """Load the backbone part of a ``TFSwinTransformer3D`` file (with or without a head)."""
    donor = single_model_weights(backbone, path, head_classes(path), **kwargs)
    copy_variables(donor.weights[: len(backbone.weights)], backbone.weights)


class HeadWeights(keras.Model):
    """The head of a classifier alone, to save and load it as ``task.weights.h5``.

    Args:
        head: the classifier's `I3DHead`.
    """

    def __init__(self, head, **kwargs):
        super().__init__(**kwargs)
        self.head = head
        self.built = head.built


def load_classifier_weights(classifier, path, **kwargs) -> None:
    """Load a classifier's own weights file, or a ``TFSwinTransformer3D`` file with a head
    of ``classifier.num_classes`` classes, into ``classifier``."""
    refuse_saved_model(path)
    if not is_single_model_file(path):
        load_with_keras(functools.partial(keras.Model.load_weights, classifier), path, **kwargs)
        return
    donor = single_model_weights(classifier.backbone, path, classifier.num_classes, **kwargs)
    copy_variables(donor.weights[: len(classifier.backbone.weights)], classifier.backbone.weights)
    copy_variables(donor.head.weights, classifier.head.weights)


def save_classifier(classifier, preset_dir: str | os.PathLike) -> None:
    def write(folder: Path) -> None:
        write_backbone(classifier.backbone, folder)
        write_json(folder / TASK_CONFIG_FILE, keras.saving.serialize_keras_object(classifier))
        HeadWeights(classifier.head).save_weights(str(folder / TASK_WEIGHTS_FILE))
        write_json(
            folder / PREPROCESSOR_CONFIG_FILE,
            keras.saving.serialize_keras_object(classifier.preprocessor),
        )

    write_preset(preset_dir, write)


def classifier_from_preset(cls, handle, overrides: dict[str, Any]):
    from videoswin_tf.backbone import VideoSwinBackbone
    from videoswin_tf.labels import load_labels
    from videoswin_tf.video_converter import VideoSwinVideoConverter

    source = preset_source(handle)
    if isinstance(source, Preset):
        backbone = VideoSwinBackbone(**preset_backbone_arguments(source))
        arguments = {
            "num_classes": source.num_classes,
            "class_names": load_labels(source.labels, source.num_classes),
            "preprocessor": VideoSwinVideoConverter(pipeline=source.pipeline),
        }
        if overrides.get("num_classes", source.num_classes) != source.num_classes:
            arguments["class_names"] = None  # a new head: the preset's names don't fit it
        classifier = cls(backbone, **arguments | overrides)
        weights = fetch_preset_weights(source)
        new_head = classifier.num_classes != source.num_classes
        (classifier.backbone if new_head else classifier).load_weights(weights)
        return classifier
    config = read_config(source, TASK_CONFIG_FILE, cls)
    preprocessor = VideoSwinVideoConverter.from_config(
        read_config(source, PREPROCESSOR_CONFIG_FILE, VideoSwinVideoConverter)
    )
    arguments = {key: config[key] for key in ("num_classes", "class_names", "head_dropout")}
    if overrides.get("num_classes", config["num_classes"]) != config["num_classes"]:
        arguments["class_names"] = None  # a new head: the preset's names don't fit it
    classifier = cls(
        backbone_from_preset(VideoSwinBackbone, source, {}),
        preprocessor=preprocessor,
        **arguments | overrides,
    )
    if classifier.num_classes == config["num_classes"]:
        HeadWeights(classifier.head).load_weights(str(preset_file(source, TASK_WEIGHTS_FILE)))
    return classifier
