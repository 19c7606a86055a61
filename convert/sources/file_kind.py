"""What a file given as ``--pth`` is, judged by its first bytes and members before any reader
touches it (`videoswin_tf.file_kind.classify`): torch is only ever handed a zip archive holding
``data.pkl`` or a pickle stream.

`identify` returns the `Kind` a reader takes; every other kind is a one-line `CheckpointError`
saying what was found (a zip's members, a file's first bytes) and what to pass instead.
"""

from __future__ import annotations

from pathlib import Path

from videoswin_tf.convert.errors import CheckpointError
from videoswin_tf.file_kind import Kind, classify
from videoswin_tf.weights_file import refuse_unreadable, shown

# What is said about the kinds no reader takes, formatted with the path, what the file starts
# with (`Classified.found`) and a zip's members.
REFUSED = {
    Kind.MISSING: "{path}: file not found; check the path of the .pth checkpoint",
    Kind.FOLDER: "{path}: is a directory but not a TensorFlow SavedModel folder (that holds "
    "saved_model.pb and variables/); pass the .pth checkpoint file itself, or a SavedModel "
    "folder such as the seed's model.save(folder) writes",
    Kind.ZIP: "{path}: a zip archive that is neither a PyTorch checkpoint (no data.pkl) nor a "
    ".keras archive (no config.json); it holds {members}",
    Kind.OTHER: "{path}: could not be read as a PyTorch checkpoint ({found}: not a zip archive, "
    "a pickle stream, an HDF5 file or a SavedModel folder); pass a file written by torch.save",
}
# What is said about the kinds no reader takes yet.
NOT_READ = {
    Kind.KERAS_ARCHIVE: "{path}: is a Keras model archive (.keras: a zip holding config.json) "
    "of no Video Swin model vswin-convert reads (it reads the Keras 3 rewrite's and KerasCV's); "
    "pass the PyTorch checkpoint it was made from",
}


def identify(path: Path) -> Kind:
    """The `Kind` of ``path``: `Kind.TORCH`, `Kind.HDF5`, `Kind.KERAS_ARCHIVE` or
    `Kind.SAVED_MODEL`. A zip archive that cannot be opened is `Kind.TORCH`: torch's own reader
    says what is wrong with it.

    Raises:
        CheckpointError: ``path`` is missing, a folder that is no SavedModel, an HDF5 file that
            cannot be opened, a zip that is neither torch's nor Keras', or a file of none of the
            kinds.
    """
    found = classify(path)
    if found.kind is Kind.ZIP and found.damage is not None:
        return Kind.TORCH
    if found.kind in REFUSED:
        raise CheckpointError(
            REFUSED[found.kind].format(path=path, found=found.found, members=shown(found.members))
        )
    if found.kind is Kind.HDF5:
        try:
            refuse_unreadable(found)
        except ValueError as error:
            raise CheckpointError(str(error)) from None
    return found.kind
