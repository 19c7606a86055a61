"""The input pipeline a converted model expects, stored on its weights file.

Saved as the JSON text of the HDF5 root attribute ``preprocessing`` of the ``.weights.h5`` file;
Keras ignores attributes it does not know, so the file still loads with ``load_weights``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import h5py

ATTRIBUTE = "preprocessing"


def write_preprocessing(path: str | os.PathLike, preprocessing: dict[str, Any]) -> None:
    """Store ``preprocessing`` (JSON-serialisable) on the weights file at ``path``."""
    with h5py.File(path, "r+") as file:
        file.attrs[ATTRIBUTE] = json.dumps(preprocessing, sort_keys=True)


def read_preprocessing(path: str | os.PathLike) -> dict[str, Any] | None:
    """The preprocessing stored on the weights file at ``path``, or None if it has none."""
    with h5py.File(path, "r") as file:
        text = file.attrs.get(ATTRIBUTE)
    return None if text is None else json.loads(text)
