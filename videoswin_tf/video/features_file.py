"""Writing a video's features: one HDF5 or ``.npy`` file per video, written atomically."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from videoswin_tf.video.predict import VideoOutput
from videoswin_tf.video.snippets import SnippetFeatures

FORMATS = ("h5", "npy")


def save_features(
    output: VideoOutput,
    path: str | os.PathLike,
    attributes: dict[str, Any] | None = None,
    snippets: SnippetFeatures | None = None,
) -> list[Path]:
    """Write ``output``'s features to ``path`` (``.h5`` or ``.npy``); the files written.

    HDF5: datasets ``features`` ``(C,)`` (mean over views), ``view_features`` ``(V, C)`` and,
    when computed, ``stage_map`` ``(V, D, H, W, C)``; attributes ``video``, ``frames``,
    ``views`` and ``attributes``. With ``snippets``: datasets ``snippet_features`` ``(S, C)``
    float32, ``snippet_times`` ``(S, 2)`` float64 (start, end in seconds) and
    ``snippet_starts`` ``(S,)`` (first source frame), attributes ``snippets``
    (``"CLIP:STRIDE"``) and ``snippet_crops``. ``.npy``: the ``(C,)`` mean, and beside it the
    stage map as ``<stem>.stage_map.npy`` and the snippets as ``<stem>.snippets.npy`` and
    ``<stem>.snippet_times.npy`` when computed. Each file appears whole or not at all.
    """
    path = Path(path)
    if output.features is None:
        raise ValueError(f"{output.path}: no features were computed")
    if path.suffix == ".h5":
        return [_write_h5(output, path, attributes or {}, snippets)]
    if path.suffix != ".npy":
        raise ValueError(f"features file {path} must end in .h5 or .npy")
    arrays = {"": output.features, ".stage_map": output.stage_map}
    if snippets is not None:
        arrays.update({".snippets": snippets.features, ".snippet_times": snippets.times})
    return [
        _atomic(path.with_name(f"{path.stem}{tail}.npy"), functools.partial(_write_npy, array=a))
        for tail, a in arrays.items()
        if a is not None
    ]


def _write_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a handle: np.save would append .npy to the name
        np.save(handle, array)


def _write_h5(
    output: VideoOutput,
    path: Path,
    attributes: dict[str, Any],
    snippets: SnippetFeatures | None,
) -> Path:
    import h5py

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as file:
            file.create_dataset("features", data=output.features)
            file.create_dataset("view_features", data=output.view_features)
            if output.stage_map is not None:
                file.create_dataset("stage_map", data=output.stage_map)
            if snippets is not None:
                file.create_dataset("snippet_features", data=snippets.features)
                file.create_dataset("snippet_times", data=snippets.times)
                file.create_dataset("snippet_starts", data=snippets.starts)
                spec = snippets.spec
                file.attrs.update(
                    {"snippets": f"{spec.clip}:{spec.stride}", "snippet_crops": spec.crops}
                )
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
