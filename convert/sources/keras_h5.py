"""HDF5 files given as ``--pth``: Keras weights, which need no conversion, told apart by structure.

A file this package wrote records its model (`videoswin_tf.weights_file.CONFIG_ATTRIBUTE`); the
seed's files (and this package's Keras 2 layout) are recognised by `videoswin_tf.legacy_h5.detect`.
Both already load into the Keras model, so the error says how, and how to get a PyTorch file from
them (``vswin-convert to-torch``). Any other HDF5 file is named by what it holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

from videoswin_tf.convert.errors import CheckpointError
from videoswin_tf.convert.sources.file_kind import shown


def read_h5(path: Path) -> NoReturn:
    """Refuse the HDF5 file ``path`` with a one-line message saying what it is.

    Raises:
        CheckpointError: always; the message names the layout found (ours, the seed's) and the
            command that uses the file, or lists the root attributes and top-level groups of an
            unknown file.
    """
    import h5py

    from videoswin_tf import legacy_h5
    from videoswin_tf.weights_file import CONFIG_ATTRIBUTE

    back = (
        f"to write a PyTorch checkpoint from it: vswin-convert to-torch --weights {path} "
        f"--format mmaction2 --out {path.name.split('.')[0]}.pth"
    )
    with h5py.File(path, "r") as file:
        layout = legacy_h5.detect(file)
        if CONFIG_ATTRIBUTE in file.attrs or layout is not None:
            what = (
                "a Keras weights file written by videoswin-tf"
                if CONFIG_ATTRIBUTE in file.attrs
                else f"a Keras 2 weights file in {layout.name}"
            )
            raise CheckpointError(
                f"{path}: is {what}, which needs no conversion: model.load_weights({str(path)!r})"
                f" reads it; {back}"
            )
        attributes, groups = sorted(file.attrs), sorted(file.keys())
    raise CheckpointError(
        f"{path}: is an HDF5 file of no known Video Swin layout (root attributes: "
        f"{shown(attributes)}; top-level groups: {shown(groups)}); pass a PyTorch checkpoint "
        "(.pth) or a weights file written by vswin-convert or the seed"
    )
