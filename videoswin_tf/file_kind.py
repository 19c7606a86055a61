"""What a path is, judged before any reader touches it: a folder by its files, a file by its first
bytes, a zip archive by its member names, and whether an HDF5 file or zip archive opens at all.

`classify` is the one classifier of file kinds: the refusals of `videoswin_tf.weights_file` and
the converter's ``--pth`` dispatch (`videoswin_tf.convert.sources.file_kind.identify`) both build
on its `Classified` answer, which is passed along so that a file is classified once per load.
Reads headers and member lists only; imports neither torch nor Keras.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import h5py

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
PICKLE_PROTOCOL = b"\x80"  # a pickle stream of protocol 2 or later (every torch.save)
ARCHIVE_CONFIG = "config.json"  # what makes a zip a Keras model archive (.keras)
TORCH_PICKLE = "data.pkl"  # torch.save's zip holds <name>/data.pkl


class Kind(enum.Enum):
    """What a path is."""

    MISSING = "nothing (no such file or folder)"
    FOLDER = "folder that is no TensorFlow SavedModel"
    SAVED_MODEL = "TensorFlow SavedModel folder (saved_model.pb and variables/)"
    HDF5 = "HDF5 file"
    KERAS_ARCHIVE = "Keras model archive (.keras: a zip holding config.json)"
    TORCH = "PyTorch checkpoint (zip archive with data.pkl, or a pickle stream)"
    ZIP = "zip archive that is neither a PyTorch checkpoint nor a .keras archive"
    OTHER = "file of none of these kinds"


@dataclasses.dataclass(frozen=True)
class Classified:
    """What `classify` found at a path.

    Attributes:
        path: the path classified.
        kind: its `Kind`; a zip archive that cannot be opened is a `Kind.ZIP` (its members are
            unknown).
        head: a file's first 8 bytes (fewer for a shorter file); empty for anything else.
        members: a zip archive's member names; empty for anything else.
        damage: why an HDF5 file or zip archive cannot be opened (the first line of h5py's or
            zipfile's error), most often a file cut short; ``None`` when it opens.
    """

    path: Path
    kind: Kind
    head: bytes = b""
    members: tuple[str, ...] = ()
    damage: str | None = None

    @property
    def found(self) -> str:
        """A file's first bytes as messages quote them (``"it starts with b'hello wo'"``)."""
        return f"it starts with {self.head!r}" if self.head else "it is empty"


def classify(path: str | os.PathLike | Classified) -> Classified:
    """What ``path`` is; a `Classified` is returned as it is (classified once, passed along).

    A path that is neither a file nor a folder (e.g. a pipe) is `Kind.OTHER`, never read.
    """
    if isinstance(path, Classified):
        return path
    path = Path(path)
    if path.is_dir():
        return Classified(path, Kind.SAVED_MODEL if is_saved_model(path) else Kind.FOLDER)
    if not path.exists():
        return Classified(path, Kind.MISSING)
    if not path.is_file():
        return Classified(path, Kind.OTHER)
    with open(path, "rb") as file:
        head = file.read(len(HDF5_SIGNATURE))
    if head == HDF5_SIGNATURE or h5py.is_hdf5(path):  # is_hdf5: also after a user block
        try:
            with h5py.File(path, "r"):
                return Classified(path, Kind.HDF5, head)
        except OSError as error:
            return Classified(path, Kind.HDF5, head, damage=_first_line(error))
    if head.startswith(ZIP_SIGNATURE):
        try:
            with zipfile.ZipFile(path) as archive:
                members = tuple(archive.namelist())
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            return Classified(path, Kind.ZIP, head, damage=_first_line(error))
        return Classified(path, _zip_kind(members), head, members)
    return Classified(path, Kind.TORCH if head.startswith(PICKLE_PROTOCOL) else Kind.OTHER, head)


def is_saved_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TensorFlow SavedModel folder (``saved_model.pb`` and
    ``variables/``), such as the seed's ``model.save(folder)`` wrote."""
    path = Path(path)
    return (path / "saved_model.pb").is_file() and (path / "variables").is_dir()


def is_torch_archive(names: Sequence[str]) -> bool:
    """Whether a zip archive's member ``names`` are ``torch.save``'s (a ``<name>/data.pkl``)."""
    return any(name.rpartition("/")[2] == TORCH_PICKLE for name in names)


def _zip_kind(members: Sequence[str]) -> Kind:
    if ARCHIVE_CONFIG in members:
        return Kind.KERAS_ARCHIVE
    return Kind.TORCH if is_torch_archive(members) else Kind.ZIP


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
