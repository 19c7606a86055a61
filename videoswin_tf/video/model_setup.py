"""Which model `vswin-predict` builds for a weights file, and how it scores videos with it.

The weights file is the authority on the model: every file `vswin-convert` or this package
writes records its architecture, window, patch, head and, when it has them, its preset and label
map or its class names (`videoswin_tf.weights_file.read_file_config`). ``--config`` may name a
preset or give any config file `vswin-convert` takes (one of our JSON files, an mmaction2
``.py``); it must then describe the same model as the file. Without ``--config`` the file's own
record is used: its preset's test protocol when it names one, else the Kinetics protocol of
`DEFAULT_PROTOCOL` at the clip size the config gives.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from videoswin_tf.architectures import ARCHITECTURES
from videoswin_tf.file_kind import classify
from videoswin_tf.presets import Preset, TestPipeline, presets
from videoswin_tf.weights_file import (
    FITTED_KEYS,
    read_file_config,
    refuse_foreign,
    refuse_saved_model,
)

# The preset whose test protocol (frame interval, clips, crops) scores a model that names none:
# the authors' Kinetics-400 protocol, 4 clips x 3 crops.
DEFAULT_PROTOCOL = "swin_t_k400"
CONFIG_FILE_SUFFIXES = (".json", ".py")


class SetupError(ValueError):
    """No model can be built for the weights and config given; the message names the cause
    and what to pass instead."""


@dataclasses.dataclass(frozen=True)
class PredictSetup:
    """The model to build and how to score videos with it.

    Attributes:
        source: what the model was taken from, for messages and feature files: a preset
            name (given, or recorded by a file whose model fits it), a config file's path, or
            ``"<weights> (its recorded config)"``.
        model: `videoswin_tf.TFSwinTransformer3D` arguments: ``patch_size``, ``embed_dim``,
            ``depths``, ``num_heads``, ``window_size``, ``num_classes``, ``include_top``.
        pipeline: the test-time pipeline (clip length, views, crop size in pixels).
        labels: a shipped label map name or a label file, or None (class numbers as names).
        class_names: the class names the weights file records (a converted checkpoint's
            ``meta.dataset_meta``), which take precedence over ``labels``; or None.
    """

    source: str
    model: dict[str, Any]
    pipeline: TestPipeline
    labels: str | None
    class_names: tuple[str, ...] | None = None

    @property
    def num_classes(self) -> int | None:
        """Classes of the head, or None for a backbone-only model."""
        return self.model["num_classes"] if self.model["include_top"] else None


def predict_setup(weights: Path, config: str | None = None) -> PredictSetup:
    """The model ``weights`` holds and its test protocol, checked against ``config``.

    Args:
        weights: a Keras weights file (``.weights.h5`` or ``.h5``).
        config: None (the file's recorded config), a preset name, or the path of a JSON or
            mmaction2 ``.py`` config (read by the converter's config reader; the ``convert``
            extra).

    Raises:
        ValueError: ``weights`` is a folder (`refuse_saved_model`) or holds another network's
            weights (`refuse_foreign`).
        SetupError: no config recorded and none given; an unknown preset or missing config
            file; a config file that cannot be read; a config that describes another model than
            the file records (each difference named).
    """
    found = classify(weights)  # once: each check below is handed the answer
    refuse_saved_model(found)  # a folder, with what to pass instead
    recorded = read_file_config(found)
    if recorded is None:
        refuse_foreign(found)  # another network's weights: --config would not help
    if config is None:
        if recorded is None:
            raise SetupError(
                f"{weights} records no model config (it was not written by vswin-convert); "
                f"pass --config: a preset ({', '.join(presets())}) or the config file it was "
                f"converted with"
            )
        return _from_record(weights, recorded)
    setup = _from_preset(presets()[config]) if config in presets() else _from_file(config)
    if recorded is not None:
        differences = _differences(recorded, setup.model)
        if differences:
            raise SetupError(
                f"{weights} holds another model than --config {config} describes: "
                f"{'; '.join(differences)}; leave --config out to build the model the file "
                f"records, or pass the config it was converted with"
            )
        setup = dataclasses.replace(setup, class_names=_recorded_names(recorded))
    return setup


def _from_record(weights: Path, recorded: dict[str, Any]) -> PredictSetup:
    """The recorded model; named after its preset, with that preset's protocol, when it
    names a preset that fits it (so a rerun can pass the name as ``--config``)."""
    model = {key: _plain(recorded[key]) for key in FITTED_KEYS}
    model |= {"include_top": bool(recorded["include_top"])}
    model["num_classes"] = recorded["num_classes"] if model["include_top"] else None
    preset = presets().get(recorded.get("preset") or "")
    if preset is not None and not _differences(recorded, _from_preset(preset).model):
        source, pipeline = recorded["preset"], preset.pipeline
    else:
        source = f"{weights} (its recorded config)"
        pipeline = presets()[DEFAULT_PROTOCOL].pipeline
    return PredictSetup(
        source,
        _with_head(model),
        pipeline,
        recorded.get("labels"),
        _recorded_names(recorded),
    )


def _recorded_names(recorded: dict[str, Any]) -> tuple[str, ...] | None:
    names = recorded.get("class_names")
    return None if names is None else tuple(names)


def _from_preset(preset: Preset) -> PredictSetup:
    architecture = ARCHITECTURES[preset.arch]
    model = {
        "patch_size": list(preset.patch_size),
        "embed_dim": architecture.embed_dim,
        "depths": list(architecture.depths),
        "num_heads": list(architecture.num_heads),
        "window_size": list(preset.window_size),
        "include_top": True,
        "num_classes": preset.num_classes,
    }
    return PredictSetup(preset.name, model, preset.pipeline, preset.labels)


def _from_file(config: str) -> PredictSetup:
    """A JSON or mmaction2 ``.py`` config, read by the converter's reader (never run)."""
    path = Path(config)
    if path.suffix not in CONFIG_FILE_SUFFIXES or not path.is_file():
        raise SetupError(
            f"unknown preset {config!r} and no config file of that name (.json, or an mmaction2 "
            f".py); presets: {', '.join(presets())}"
        )
    try:
        from videoswin_tf.convert.configs.resolve import ConfigError, resolve_config
    except ImportError as error:
        raise SetupError(
            f"reading the config file {config} needs the converter's config reader ({error}); "
            f"install it with: pip install videoswin-tf[convert]"
        ) from error
    try:
        spec = resolve_config(config)
    except ConfigError as error:
        raise SetupError(str(error)) from error
    model = {
        "patch_size": list(spec.patch_size),
        "embed_dim": spec.embed_dim,
        "depths": list(spec.depths),
        "num_heads": list(spec.num_heads),
        "window_size": list(spec.window_size),
        "include_top": spec.num_classes is not None,
        "num_classes": spec.num_classes,
    }
    extra = _json_fields(path)
    pipeline = dataclasses.replace(
        presets()[DEFAULT_PROTOCOL].pipeline,
        clip_len=spec.clip_frames,
        short_side=spec.clip_size,
        crop_size=spec.clip_size,
        **extra.get("test_pipeline", {}),
    )
    return PredictSetup(str(path), _with_head(model), pipeline, extra.get("labels"))


def _json_fields(path: Path) -> dict[str, Any]:
    """The optional ``labels`` and ``test_pipeline`` of one of our JSON configs."""
    if path.suffix != ".json":
        return {}
    from videoswin_tf.named_configs import read_config_json

    data = read_config_json(path)
    fields = {"test_pipeline", "labels"}
    found = {key: data[key] for key in fields if data.get(key) is not None}
    steps = found.get("test_pipeline")
    if isinstance(steps, dict):
        kinds = {"frame_interval": int, "num_clips": int, "frame_uniform": bool, "num_crops": int}
        found["test_pipeline"] = {
            key: steps[key] for key, kind in kinds.items() if isinstance(steps.get(key), kind)
        }
    else:
        found.pop("test_pipeline", None)
    return found


def _with_head(model: dict[str, Any]) -> dict[str, Any]:
    """Builder arguments: a backbone-only model still passes an int ``num_classes``."""
    return model | {"num_classes": model["num_classes"] or 0}


def _differences(recorded: dict[str, Any], model: dict[str, Any]) -> list[str]:
    """How the recorded model differs from ``model``, one phrase each."""
    found = [
        f"{label}: the file's is {_plain(recorded[key])}, the config's {_plain(model[key])}"
        for key, label in FITTED_KEYS.items()
        if _plain(recorded[key]) != _plain(model[key])
    ]
    recorded_classes = recorded["num_classes"] if recorded["include_top"] else None
    config_classes = model["num_classes"] if model["include_top"] else None
    if recorded_classes != config_classes:
        found.append(
            f"classes: the file's head has {recorded_classes or 'none'}, the config's "
            f"{config_classes or 'none'}"
        )
    return found


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value
