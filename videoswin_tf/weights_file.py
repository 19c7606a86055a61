"""Keras weight files of this package: two formats picked by the file name, each carrying the
config of the model it fits.

- ``*.weights.h5``: Keras 3's native format (``model.save_weights``).
- any other ``*.h5`` (e.g. the seed's ``TFVideoSwinT_K400_IN1K_P244_W877_32x224.h5``): the Keras 2
  (legacy) HDF5 weights layout, which Keras 3 reads for such names, written in the seed's order
  of groups and weights so that the seed's own tf.keras 2 code loads it (`videoswin_tf.legacy_h5`).
  `load_weights` reads that layout, this package's earlier one and the seed's own files by
  structure, not by Keras' positional loader; writers still check the result by loading it (see
  `variable_differences`).

Both carry the model's config as the root attribute ``videoswin_tf_config`` (JSON; Keras
ignores it), which `check_fits` compares with a model before the file is loaded, so a wrong
window, size or head is named instead of failing deep inside Keras. The seed's files record no
config: theirs is read off their shapes (`legacy_h5.seed_config`).
"""

from __future__ import annotations

import json
import os
import shlex
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from videoswin_tf import keras3_h5, legacy_h5
from videoswin_tf.architectures import ARCHITECTURES, builder_call, find_arch
from videoswin_tf.file_kind import Classified, Kind, classify
from videoswin_tf.presets import presets

NATIVE_SUFFIX = ".weights.h5"
LEGACY_SUFFIX = ".h5"
KERAS_ARCHIVE_SUFFIX = ".keras"  # a whole-model archive (zip); the Keras 3 ports' are read
KERAS_SHARDED_SUFFIX = ".weights.json"  # Keras' index of sharded weights (text), left to Keras
REPORT_SUFFIX = ".parity.json"  # the converter's parity report, beside the weights file
CONFIG_ATTRIBUTE = "videoswin_tf_config"
# Keras 3 names a layer's group in a weights file after its class (`PatchEmbed3D`): a file of
# any model of this package holds one, at any depth (a classifier's is below its backbone).
EMBEDDING_GROUP = "patch_embed3d"
SHOWN = 6  # names listed in a message before "..."
# The model config keys a file records and `check_fits` compares, with how errors name them.
FITTED_KEYS = {
    "embed_dim": "width (embed_dim)",
    "depths": "depth (depths)",
    "num_heads": "heads (num_heads)",
    "window_size": "window (window_size)",
    "patch_size": "patch (patch_size)",
}


class WeightsMismatchError(ValueError):
    """A weights file that does not fit the model; the message names every difference and the
    builder call that fits the file."""


def refuse_saved_model(path: str | os.PathLike | Classified) -> None:
    """A one-line `ValueError` for a folder ``path``: for a SavedModel folder, the
    ``vswin-convert`` command that converts its variables into a weights file last, to copy as
    it is; for any other folder, to pass the file; nothing for any other path."""
    found = classify(path)
    if found.kind is Kind.FOLDER:
        raise ValueError(
            f"{found.path}: is a folder, not a weights file; pass the .weights.h5, .h5 or .keras "
            "file itself (or a SavedModel folder, converted once with vswin-convert --pth FOLDER)"
        )
    if found.kind is not Kind.SAVED_MODEL:
        return
    out = f"{found.path.resolve().name}{NATIVE_SUFFIX}"
    raise ValueError(
        f"{found.path}: is a TensorFlow SavedModel folder, not a weights file; convert its "
        f"variables once, then load {out}: "
        f"vswin-convert --pth {shlex.quote(str(found.path))} --out {shlex.quote(out)}"
    )


def refuse_unreadable(path: str | os.PathLike | Classified) -> None:
    """A one-line `ValueError` for a file ``path`` that cannot be read as Keras weights: an
    HDF5 or zip (``.keras``) file that cannot be opened, most often one cut short by an
    interrupted download or copy (h5py's and zipfile's own errors say neither what happened
    nor what to do); a PyTorch checkpoint (a zip holding ``data.pkl``, or a pickle stream),
    with the ``vswin-convert`` command that converts it; a file that is neither HDF5, zip nor
    pickle (e.g. a video or a text file: saying what it starts with, and for a name ending in
    ``.h5`` that it is no HDF5 file), except Keras' index of sharded weights
    (``*.weights.json``). Nothing for any other path.

    Raises:
        ValueError: ``path`` is such a file.
    """
    found = classify(path)
    if found.damage is not None:
        raise ValueError(cut_short(found.path, found.damage))
    if found.kind is Kind.TORCH:
        refuse_pytorch(found.path)
    if found.kind is not Kind.OTHER or found.path.name.endswith(KERAS_SHARDED_SUFFIX):
        return
    if found.path.name.endswith(LEGACY_SUFFIX):
        what = f"is no HDF5 file ({found.found}) though its name ends in {LEGACY_SUFFIX}"
    else:
        what = f"is not a weights file ({found.found})"
    raise ValueError(
        f"{found.path}: {what}; pass a weights file written by model.save_weights or vswin-convert"
    )


def cut_short(path: str | os.PathLike, damage: str) -> str:
    """What is said about a file ``path`` of a known kind that its reader cannot read
    (``damage``: the reader's error, one line)."""
    return (
        f"{path}: cannot be read ({damage}); it is probably cut short (an interrupted download "
        "or copy): fetch or write the file again"
    )


def load_with_keras(keras_load: Callable[..., None], path: str | os.PathLike, **kwargs) -> None:
    """``keras_load(str(path), **kwargs)``; where Keras cannot load the file and it holds no
    Video Swin model, the one line of `refuse_foreign` instead of Keras' list of every
    variable it could not load.

    Raises:
        ValueError: Keras' own error, or `refuse_foreign`'s.
    """
    try:
        keras_load(str(path), **kwargs)
    except ValueError:
        refuse_foreign(path)
        raise


def refuse_pytorch(path: Path) -> None:
    """The one-line `ValueError` for a PyTorch checkpoint given where Keras weights go: the
    command that converts it comes last, to copy as it is, after the ``--config`` advice that
    keeps its classes' names."""
    out = f"{path.name.partition('.')[0]}{NATIVE_SUFFIX}"
    raise ValueError(
        f"{path}: is a PyTorch checkpoint, not Keras weights; convert it once, then load {out}, "
        "adding --config swin_t_k400 (or the named config it was trained as; vswin-convert --help "
        "lists them) to record its classes' names: "
        f"vswin-convert --pth {shlex.quote(str(path))} --out {shlex.quote(out)}"
    )


def shown(names: Sequence[str]) -> str:
    """The first `SHOWN` names, comma-separated, then how many more."""
    if not names:
        return "nothing"
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def foreign_hdf5(file: h5py.File) -> str:
    """What an open HDF5 file of no Video Swin layout is, as one-line errors say it (with its
    root attributes and top-level groups)."""
    return (
        f"is an HDF5 file of no known Video Swin layout (root attributes: "
        f"{shown(sorted(file.attrs))}; top-level groups: {shown(sorted(file.keys()))})"
    )


# What to load instead of a file of no Video Swin model.
LOADABLE = (
    "load a Video Swin weights file (one written by vswin-convert or model.save_weights, the "
    "seed's .h5, or the Keras 3 rewrite's or KerasCV's file), or convert its PyTorch "
    "checkpoint with vswin-convert --pth CHECKPOINT.pth"
)


def refuse_foreign(path: str | os.PathLike | Classified) -> None:
    """A one-line `ValueError` for an HDF5 file or ``.keras`` archive ``path`` that holds no
    model of this package (nor records one, nor is the seed's, the Keras 3 rewrite's or
    KerasCV's), e.g. the weights of another network; nothing for any other path. Keras' own
    error for it lists every variable it could not load.

    Raises:
        ValueError: ``path`` is such a file.
    """
    found = classify(path)
    path = found.path
    if found.kind not in (Kind.HDF5, Kind.KERAS_ARCHIVE, Kind.ZIP) or found.damage is not None:
        return
    with keras3_h5.open_weights(path) as weights:
        if weights is not None:
            return
    if found.kind is not Kind.HDF5:
        if path.name.endswith(KERAS_ARCHIVE_SUFFIX):
            raise ValueError(
                f"{path}: is a .keras archive of no Video Swin model this package reads (it "
                f"reads the Keras 3 rewrite's and KerasCV's); {LOADABLE}"
            )
        return
    with h5py.File(path, "r") as file:
        groups: list[str] = []
        file.visit(lambda name: groups.append(name.rpartition("/")[2]))
        if (
            CONFIG_ATTRIBUTE in file.attrs
            or EMBEDDING_GROUP in groups
            or legacy_h5.detect(file) is not None
        ):
            return
        what = foreign_hdf5(file)
    raise ValueError(f"{path}: {what}; {LOADABLE}") from None


def weights_format(path: str | os.PathLike) -> str:
    """``"native"`` for ``*.weights.h5``, ``"legacy"`` for any other ``*.h5``; a `ValueError`
    otherwise."""
    name = Path(path).name
    if name.endswith(NATIVE_SUFFIX):
        return "native"
    if name.endswith(LEGACY_SUFFIX):
        return "legacy"
    raise ValueError(
        f"{path}: a weights file name ends in {NATIVE_SUFFIX} (Keras 3's format) or "
        f"{LEGACY_SUFFIX} (the Keras 2 layout, e.g. the seed's file names)"
    )


def model_file_config(
    model,
    preset: str | None = None,
    labels: str | None = None,
    class_names: Sequence[str] | None = None,
) -> dict:
    """What a file records about ``model``: the `FITTED_KEYS`, the head, and optionally the
    preset and label map names it was released as and its classes' names (``class_names``,
    recorded only when given; they take precedence over ``labels``)."""
    config = model.get_config()
    recorded = {key: _plain(config[key]) for key in FITTED_KEYS}
    recorded["include_top"] = bool(config["include_top"])
    recorded["num_classes"] = int(config["num_classes"]) if config["include_top"] else None
    recorded["preset"] = preset
    recorded["labels"] = labels
    if class_names is not None:
        recorded["class_names"] = list(class_names)
    return recorded


def save_weights(
    model,
    path: str | os.PathLike,
    preset: str | None = None,
    labels: str | None = None,
    class_names: Sequence[str] | None = None,
) -> None:
    """Write ``model``'s weights to ``path`` in the format its name picks, with its config
    (`model_file_config`: ``preset``, ``labels`` and ``class_names`` are recorded in it).

    Two writes of the same weights give identical bytes (no timestamps in either format).
    """
    path = Path(path)
    if weights_format(path) == "native":
        model.save_weights(str(path))
    else:
        with h5py.File(path, "w", track_order=False) as file:
            legacy_h5.write_seed(model, file)
    with h5py.File(path, "r+") as file:
        file.attrs[CONFIG_ATTRIBUTE] = json.dumps(
            model_file_config(model, preset, labels, class_names), sort_keys=True
        )


def read_file_config(
    path: str | os.PathLike | Classified, window_hint: Sequence[int] | None = None
) -> dict | None:
    """The config a file of ours records or, for a file of the seed's or a Keras 3 one of its
    rewrite or of KerasCV (which record none), the one its shapes give (`legacy_h5.seed_config`,
    `keras3_h5.file_config`, with ``window_hint``), with the preset and
    label map of the release name it carries when they fit; ``None`` for any other file.

    Raises:
        WeightsMismatchError: a seed-layout or Keras 3 file whose shapes fit no model (for a
            Keras 3 one built on a clip smaller than its window, the message says so).
    """
    classified = classify(path)
    path = classified.path
    refuse_unreadable(classified)
    with keras3_h5.open_weights(path) as found:
        if found is not None:
            try:
                keras3_h5.check_one_window(found)
            except legacy_h5.LayoutError as error:  # fits no model: the cause, as the CLI says
                raise WeightsMismatchError(f"{path}: {error}") from None
            try:
                return keras3_h5.file_config(found.file, found.layout, window_hint)
            except legacy_h5.LayoutError as error:
                raise WeightsMismatchError(f"{path} does not fit this model: {error}") from None
    if classified.kind is not Kind.HDF5:
        return None
    with h5py.File(path, "r") as file:
        text = file.attrs.get(CONFIG_ATTRIBUTE)
        if text is None and legacy_h5.detect(file) is legacy_h5.SEED:
            try:
                return _named_by_release(legacy_h5.seed_config(file, window_hint), path)
            except legacy_h5.LayoutError as error:
                raise WeightsMismatchError(f"{path} does not fit this model: {error}") from None
    if text is None:
        return None
    return json.loads(text.decode("utf8") if isinstance(text, bytes) else text)


def _named_by_release(config: dict, path: Path) -> dict:
    """``config`` with the preset and labels of the release ``path`` is named after (the seed
    published ``<release name>.h5``), if that preset's model is the one ``config`` describes."""
    for preset in presets().values():
        if path.name == f"{preset.release}{LEGACY_SUFFIX}" and (
            find_arch(config["embed_dim"], config["depths"], config["num_heads"]),
            tuple(config["window_size"]),
            tuple(config["patch_size"]),
            config["num_classes"],
        ) == (preset.arch, preset.window_size, preset.patch_size, preset.num_classes):
            return config | {"preset": preset.name, "labels": preset.labels}
    return config


def mismatches(file_config: dict, model) -> list[str]:
    """How the model of ``file_config`` differs from ``model``, one phrase per difference."""
    model_config = model_file_config(model)
    found = []
    for key, label in FITTED_KEYS.items():
        if _plain(file_config[key]) != model_config[key]:
            found.append(
                f"{label}: the file's is {_show(file_config[key])}, "
                f"the model's {_show(model_config[key])}"
            )
    if file_config["include_top"] and not model_config["include_top"]:
        found.append(
            f"head: the file has a {file_config['num_classes']}-class head, the model has "
            "none (include_top=False)"
        )
    elif model_config["include_top"] and not file_config["include_top"]:
        found.append(
            f"head: the file holds a backbone only, the model has a "
            f"{model_config['num_classes']}-class head"
        )
    elif file_config["include_top"] and file_config["num_classes"] != model_config["num_classes"]:
        found.append(
            f"classes (num_classes): the file's head has {file_config['num_classes']}, "
            f"the model's {model_config['num_classes']}"
        )
    return found


def check_fits(model, path: str | os.PathLike | Classified) -> None:
    """Raise `WeightsMismatchError` when ``path`` records a model config that differs from
    ``model``'s (the seed's files: the config their shapes give); other files are left to
    Keras. ``path`` may be `classify`'s answer for it, which is then not classified again.
    The error names the builder call the file fits, and the file's preset only when its
    weights can be fetched (`videoswin_tf.downloads.can_fetch`).

    Raises:
        ValueError: `refuse_unreadable`'s, for a file that cannot be read.
    """
    classified = classify(path)
    path = classified.path
    file_config = read_file_config(classified, model.window_size)
    if file_config is None:
        return
    found = mismatches(file_config, model)
    if not found:
        return
    from videoswin_tf.downloads import can_fetch  # downloads imports this module

    hint = f"build the model the file fits: {builder_call(file_config)}"
    arch = find_arch(file_config["embed_dim"], file_config["depths"], file_config["num_heads"])
    if arch is not None:
        builder = ARCHITECTURES[arch].builder
        preset = presets().get(file_config["preset"])
        if preset is not None and can_fetch(preset):
            hint += f", or {builder}(weights={preset.name!r})"
        if file_config["include_top"]:
            hint += (
                "; for a new head, load the backbone alone with "
                f"{builder}(weights={str(path)!r}, include_top=False)"
            )
    raise WeightsMismatchError(f"{path} does not fit this model: {'; '.join(found)}; {hint}")


def load_weights(
    model,
    path: str | os.PathLike,
    keras_load: Callable[..., None],
    skip_mismatch: bool = False,
    **kwargs,
) -> None:
    """Load ``path`` into ``model`` after `check_fits`: a Keras 2 layout file of this model
    (the seed's, this package's, or its earlier one: `legacy_h5.LAYOUTS`) and the Keras 3
    rewrite's and KerasCV's ``*.weights.h5`` / ``.keras`` files (`keras3_h5`) by structure,
    every other file with ``keras_load`` (Keras' own ``load_weights``).

    A structural read checks every weight's kind and shape before assigning any; a difference
    raises `WeightsMismatchError` naming the first, or with ``skip_mismatch`` warns and leaves
    those variables as they are.

    Raises:
        ValueError: ``path`` is a SavedModel folder (`refuse_saved_model`), cannot be read
            (`refuse_unreadable`), or (when Keras cannot load it) holds no Video Swin model
            (`refuse_foreign`).
    """
    found = classify(path)  # once: each check below is handed the answer
    refuse_saved_model(found)
    if found.kind is Kind.MISSING:
        raise FileNotFoundError(f"{path}: no such file")
    refuse_unreadable(found)
    check_fits(model, found)
    read = _read_by_structure(model, found)
    if read is None:
        load_with_keras(keras_load, path, skip_mismatch=skip_mismatch, **kwargs)
        return
    name, pairs, problems = read
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        message = f"{path} ({name}) does not fit this model: {problems[0]}{more}"
        if not skip_mismatch:
            raise WeightsMismatchError(
                f"{message}; load_weights(..., skip_mismatch=True) keeps the model's own values "
                "for those"
            )
        warnings.warn(f"{message}; kept the model's own values for those", stacklevel=3)
    for variable, value in pairs:
        variable.assign(value)


def _read_by_structure(model, found: Classified) -> tuple[str, list, list[str]] | None:
    """``(layout name, (variable, value) pairs, problems)`` for a file read by structure (a
    Keras 2 layout, or a Keras 3 one of `keras3_h5.SOURCES`), ``None`` for any other file."""
    layout = _legacy_layout(found)
    if layout is not None:
        with h5py.File(found.path, "r") as file:
            return (layout.name, *legacy_h5.assignments(model, file, layout))
    with keras3_h5.open_weights(found.path) as weights:
        if weights is not None:
            return (
                weights.source.name,
                *keras3_h5.assignments(model, weights.file, weights.layout),
            )
    return None


def _legacy_layout(found: Classified) -> legacy_h5.Layout | None:
    name = found.path.name
    if name.endswith(NATIVE_SUFFIX) or not name.endswith(LEGACY_SUFFIX):
        return None
    if found.kind is not Kind.HDF5:
        return None
    with h5py.File(found.path, "r") as file:
        return legacy_h5.detect(file)


def variable_values(model) -> list[tuple[str, np.ndarray]]:
    """Every variable of ``model`` as ``(path below the model, a copy of its value)``."""
    return [
        (variable.path.split("/", 1)[-1], np.array(variable.numpy())) for variable in model.weights
    ]


def value_differences(expected: list[tuple[str, np.ndarray]], actual) -> list[str]:
    """Paths of the variables of ``actual`` that are not exactly ``expected``'s (as
    `variable_values` gives them): same path, shape, dtype and every value."""
    differing = []
    for (path, want_value), got in zip(expected, actual.weights, strict=True):
        got_value = np.asarray(got.numpy())
        if (
            path != got.path.split("/", 1)[-1]
            or want_value.dtype != got_value.dtype
            or want_value.shape != got_value.shape
            or not np.array_equal(want_value, got_value)
        ):
            differing.append(path)
    return differing


def variable_differences(expected, actual) -> list[str]:
    """Paths (below the model) of the variables of ``actual`` that are not exactly
    ``expected``'s: same path, shape, dtype and every value; both models built alike."""
    return value_differences(variable_values(expected), actual)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _show(value: Any) -> str:
    return str(tuple(value)) if isinstance(value, (list, tuple)) else str(value)
