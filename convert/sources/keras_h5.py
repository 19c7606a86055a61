"""HDF5 files given as ``--pth``, told apart by structure: the seed's ``.h5`` files convert, the
files this package wrote need no conversion, any other is named by what it holds.

The seed's files (`videoswin_tf.legacy_h5.SEED`, recognised by `legacy_h5.detect`; they record no
config) are read by structure into the Keras model their shapes give (`legacy_h5.seed_config`)
and leave it as the canonical state dict (`mapping.rules.extract`); parity then runs the seed's
own model loading the file (`references.seed_keras2`). A file this package wrote records its model
(`videoswin_tf.weights_file.CONFIG_ATTRIBUTE`) and already loads: the error says how, and how to
get a PyTorch file from it (``vswin-convert to-torch``).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from videoswin_tf.convert.errors import CheckpointError
from videoswin_tf.convert.sources.layout import Source

# What --pth converts, as advice to a file it does not (a file written by vswin-convert loads as
# it is, and --pth refuses it as needing no conversion).
CONVERTED = (
    "pass what vswin-convert --pth converts: a PyTorch checkpoint (.pth), the seed's .h5 file or "
    "SavedModel folder, or the Keras 3 rewrite's or KerasCV's .weights.h5 or .keras file"
)

SEED_H5 = Source(
    name="the seed's Keras 2 .h5 layout (innat/VideoSwin v1), read by structure",
    detect=lambda state: False,  # found by `legacy_h5.detect` on the file, not on a state dict
    renames=(),
    reference="seed-keras2",
)


def read_h5(path: Path):
    """The seed's ``.h5`` file ``path`` as a `LoadedCheckpoint` (canonical state, the layout
    named, ``file`` set for the seed's own model to load).

    Raises:
        CheckpointError: the file is not the seed's: ours (the message gives the call that
            loads it and the command that writes a ``.pth`` from it), or an unknown HDF5 file
            (its root attributes and top-level groups listed), or a seed file whose shapes fit
            no model.
    """
    import h5py

    from videoswin_tf import legacy_h5
    from videoswin_tf.weights_file import CONFIG_ATTRIBUTE, foreign_hdf5

    back = (
        f"to write a PyTorch checkpoint from it: vswin-convert to-torch --weights "
        f"{shlex.quote(str(path))} --format mmaction2 --out "
        f"{shlex.quote(path.name.split('.')[0] + '.pth')}"
    )
    with h5py.File(path, "r") as file:
        layout = legacy_h5.detect(file)
        if layout is legacy_h5.SEED and CONFIG_ATTRIBUTE not in file.attrs:
            return _read_seed(path)
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
        what = foreign_hdf5(file)
    raise CheckpointError(f"{path}: {what}; {CONVERTED}")


def _read_seed(path: Path):
    from videoswin_tf.convert.mapping.rules import extract
    from videoswin_tf.convert.mapping.spec import ModelSpec, build_keras_model
    from videoswin_tf.convert.sources.checkpoint import LoadedCheckpoint
    from videoswin_tf.weights_file import WeightsMismatchError, read_file_config

    try:
        config = read_file_config(path)
        spec = ModelSpec.from_file_config(config, path.name.split(".")[0])
        model = build_keras_model(spec)
        model.load_weights(str(path))
    except WeightsMismatchError as error:
        raise CheckpointError(str(error)) from None
    state = extract(model)
    window = "x".join(str(size) for size in spec.window_size)
    return LoadedCheckpoint(
        state=state,
        source_layout=SEED_H5.name,
        notes=[
            f"read {len(model.weights)} Keras weights by structure (videoswin_tf.legacy_h5); "
            f"window {window} from the bias tables' rows"
        ],
        has_head=spec.num_classes is not None,
        source=SEED_H5,
        file=path,
    )
