"""The converted weights file: its name, where its parity report goes, and writing it checked.

The suffix of the name picks the format (`videoswin_tf.weights_file`): ``*.weights.h5`` is
Keras 3's, any other ``*.h5`` the Keras 2 layout of the seed's files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from videoswin_tf.convert.errors import ConversionError
from videoswin_tf.convert.mapping.spec import ModelSpec
from videoswin_tf.weights_file import (
    LEGACY_SUFFIX,
    NATIVE_SUFFIX,
    REPORT_SUFFIX,
    save_weights,
    value_differences,
    variable_values,
)


def check_weights_name(out: str | os.PathLike) -> None:
    """Raise `ConversionError` unless ``out`` names a weights file (``*.h5``)."""
    if not str(out).endswith(LEGACY_SUFFIX):
        raise ConversionError(
            f"--out must end in {NATIVE_SUFFIX} (Keras 3's format) or {LEGACY_SUFFIX} (the Keras 2 "
            "layout of the seed's files, e.g. TFVideoSwinT_K400_IN1K_P244_W877_32x224.h5), "
            f"got {out}"
        )


def default_output(spec: ModelSpec, pth: Path, out_dir: Path = Path("checkpoints")) -> Path:
    """``<out_dir>/<release name>.weights.h5``, or the source file's name less ``.pth`` or
    ``.h5`` (the seed's files) when the config has no release name; backbone-only files end
    in ``_backbone``."""
    stem = spec.release or pth.name.removesuffix(".pth").removesuffix(LEGACY_SUFFIX)
    if spec.num_classes is None:
        stem += "_backbone"
    return out_dir / (stem + NATIVE_SUFFIX)


def report_path_for(weights_path: Path) -> Path:
    """The parity report beside ``weights_path``: ``<stem>.parity.json``."""
    stem = weights_path.name.removesuffix(NATIVE_SUFFIX).removesuffix(LEGACY_SUFFIX)
    return weights_path.with_name(stem + REPORT_SUFFIX)


def write_checked(
    model, path: Path, spec: ModelSpec, class_names: Sequence[str] | None = None
) -> None:
    """Write ``model``'s weights to ``path`` in the format its name picks, recording the
    preset and label map of a named config and the head's ``class_names`` when given; then
    load the file back into ``model`` and require every variable to be exactly what it held
    (the Keras 2 layout loads by position, so a file can load into the wrong variables without
    complaint). Every variable is overwritten before
    the load, so one the file does not fill is caught too. Afterwards ``model`` holds exactly
    the file's values.

    Raises:
        ConversionError: a variable differs after loading the file back.
    """
    from videoswin_tf.presets import presets

    preset = presets().get(spec.name)
    written = variable_values(model)
    save_weights(
        model,
        path,
        preset=preset.name if preset else None,
        labels=preset.labels if preset and spec.num_classes else None,
        class_names=class_names,
    )
    for variable, (_, value) in zip(model.weights, written, strict=True):
        variable.assign(_scrubbed(value))
    model.load_weights(str(path))
    differing = value_differences(written, model)
    if differing:
        raise ConversionError(
            f"{path.name} does not load back exactly: {len(differing)} variables differ "
            f"(first: {differing[0]}); nothing written"
        )


def _scrubbed(value: np.ndarray) -> np.ndarray:
    """A value that differs from ``value`` everywhere: NaN for floats, the bitwise complement
    for integers and booleans."""
    if np.issubdtype(value.dtype, np.floating):
        return np.full_like(value, np.nan)
    return np.invert(value)
