"""What a file given as ``--pth`` is, judged by its first bytes and members before any reader
touches it: torch is only ever handed a zip archive holding ``data.pkl`` or a pickle stream.

`identify` returns the `Kind`; every file no reader takes is a one-line `CheckpointError` saying
what was found (an HDF5 file's root attributes and top-level groups, a zip's members, a file's
first bytes) and what to pass instead.
"""

from __future__ import annotations

import enum
import zipfile
from pathlib import Path

from videoswin_tf.convert.errors import CheckpointError
from videoswin_tf.weights_file import (
    HDF5_SIGNATURE,
    PICKLE_PROTOCOL,
    ZIP_SIGNATURE,
    is_torch_archive,
    refuse_unreadable,
    shown,
)


class Kind(enum.Enum):
    """What a file is: the reader it goes to, or the reason none does."""

    TORCH = "PyTorch checkpoint (zip archive with data.pkl, or a pickle stream)"
    HDF5 = "HDF5 file"
    KERAS_ARCHIVE = "Keras model archive (.keras: a zip holding config.json)"
    SAVED_MODEL = "TensorFlow SavedModel folder (saved_model.pb and variables/)"


# What is said about the kinds no reader takes yet.
NOT_READ = {
    Kind.KERAS_ARCHIVE: "{path}: is a Keras model archive (.keras: a zip holding config.json) "
    "of no Video Swin model vswin-convert reads (it reads the Keras 3 rewrite's and KerasCV's); "
    "pass the PyTorch checkpoint it was made from",
}


def identify(path: Path) -> Kind:
    """The `Kind` of ``path``, from its signature (and a zip's member names).

    Raises:
        CheckpointError: ``path`` is missing, a folder that is no SavedModel, a zip that is
            neither torch's nor Keras', or a file of none of the kinds.
    """
    if not path.exists():
        raise CheckpointError(f"{path}: file not found; check the path of the .pth checkpoint")
    if path.is_dir():
        from videoswin_tf.weights_file import is_saved_model

        if is_saved_model(path):
            return Kind.SAVED_MODEL
        raise CheckpointError(
            f"{path}: is a directory but no TensorFlow SavedModel folder (that holds "
            "saved_model.pb and variables/); pass the .pth checkpoint file itself, or a "
            "SavedModel folder such as the seed's model.save(folder) writes"
        )
    import h5py

    if h5py.is_hdf5(path):  # also finds the signature after a user block
        try:
            refuse_unreadable(path)
        except ValueError as error:
            raise CheckpointError(str(error)) from None
        return Kind.HDF5
    with open(path, "rb") as file:
        head = file.read(len(HDF5_SIGNATURE))
    if head.startswith(ZIP_SIGNATURE):
        return _zip_kind(path)
    if head.startswith(PICKLE_PROTOCOL):
        return Kind.TORCH
    found = "it is empty" if not head else f"it starts with {head!r}"
    raise CheckpointError(
        f"{path}: could not be read as a PyTorch checkpoint ({found}: not a zip archive, a "
        "pickle stream, an HDF5 file or a SavedModel folder); pass a file written by torch.save"
    )


def _zip_kind(path: Path) -> Kind:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return Kind.TORCH  # a damaged torch file: torch's own reader says what is wrong
    if "config.json" in names:
        return Kind.KERAS_ARCHIVE
    if is_torch_archive(names):
        return Kind.TORCH
    raise CheckpointError(
        f"{path}: a zip archive that is neither a PyTorch checkpoint (no data.pkl) nor a .keras "
        f"archive (no config.json); it holds {shown(names)}"
    )
