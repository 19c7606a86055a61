"""Writing a video's features: one HDF5 or ``.npy`` file per video, written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from videoswin_tf.video.predict import VideoOutput

FORMATS = ("h5", "npy")


def save_features(
    output: VideoOutput, path: str | os.PathLike, attributes: dict[str, Any] | None = None
) -> list[Path]:
    """Write ``output``'s features to ``path`` (``.h5`` or ``.npy``); the files written.

    HDF5: datasets ``features`` ``(C,)`` (mean over views), ``view_features`` ``(V, C)`` and,
    when computed, ``stage_map`` ``(V, D, H, W, C)``; attributes ``video``, ``frames``,
    ``views`` and ``attributes``. ``.npy``: the ``(C,)`` mean, and the stage map beside it as
    ``<stem>.stage_map.npy`` when computed. Each file appears whole or not at all.
    """
    path = Path(path)
    if output.features is None:
        raise ValueError(f"{output.path}: no features were computed")
    if path.suffix == ".h5":
        return [_write_h5(output, path, attributes or {})]
    if path.suffix != ".npy":
        raise ValueError(f"features file {path} must end in .h5 or .npy")
    written = [_atomic(path, lambda tmp: _write_npy(tmp, output.features))]
    if output.stage_map is not None:
        map_path = path.with_name(f"{path.stem}.stage_map.npy")
        written.append(_atomic(map_path, lambda tmp: _write_npy(tmp, output.stage_map)))
    return written


def _write_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a handle: np.save would append .npy to the name
        np.save(handle, array)


def _write_h5(output: VideoOutput, path: Path, attributes: dict[str, Any]) -> Path:
    import h5py

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as file:
            file.create_dataset("features", data=output.features)
            file.create_dataset("view_features", data=output.view_features)
            if output.stage_map is not None:
                file.create_dataset("stage_map", data=output.stage_map)
            file.attrs.update(
                {"video": str(output.path), "frames": output.num_frames, "views": output.views}
            )
            file.attrs.update(attributes)

    return _atomic(path, write)


def _atomic(path: Path, write) -> Path:
    tmp = path.with_name(f".{path.name}.partial")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
