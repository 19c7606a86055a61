"""Keras 3 Video Swin files given as ``--pth``: the Keras 3 rewrite's (innat/VideoSwin v2) and
KerasCV's (keras-cv 0.9) ``model.save_weights`` ``*.weights.h5`` and ``model.save`` ``.keras``
archives, read by one function.

Both codes save the same groups (`videoswin_tf.keras3_h5`); which one wrote a file picks its
`Source` row and so its parity reference: a ``.keras`` archive by the classes its config.json
names, a ``*.weights.h5`` by the name Keras (3.9 and later) records on the patch embedding. A
``*.weights.h5`` of an older Keras records no names and holds the same weights either way: it
is read as the rewrite's (`videoswin_tf.keras3_h5.DEFAULT`), and the ``[load]`` notes say so.
Files are read as data: an archive's weights member with h5py, its config as JSON; no code of
the file's runs. The weights go into the Keras model their shapes give
(`keras3_h5.file_config`; an archive's recorded window is the hint for the window) and leave it
as the canonical state dict (`mapping.rules.extract`). The per-source modules (`keras3_rewrite`,
`kerascv`) hold each row and what each code's config.json records (`Recorded`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from videoswin_tf.convert.errors import CheckpointError
from videoswin_tf.convert.sources.file_kind import Kind
from videoswin_tf.convert.sources.layout import Source

KINDS = (Kind.HDF5, Kind.KERAS_ARCHIVE)


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What a file records of its model beyond the shapes (a ``.keras`` archive's config.json;
    a ``*.weights.h5`` records nothing and gets its code's defaults).

    Attributes:
        window: the window config.json gives (the hint for the shapes), or ``None``.
        activation: the head's activation (``"softmax"``, or ``None`` for logits).
        include_rescaling: the backbone rescales 0-255 input itself.
        input_shape: the clip ``(T, H, W, 3)`` the archive's model was built for, or ``None``.
        notes: what else config.json says, as ``[load]`` notes.
    """

    window: list[int] | None = None
    activation: str | None = "softmax"
    include_rescaling: bool = False
    input_shape: tuple[int, ...] | None = None
    notes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Keras3Row:
    """One code's files as the converter reads them.

    Attributes:
        source: the converter's `Source` row (its name and parity reference).
        recorded: what a ``.keras`` archive of this code records (`Recorded`), read as data.
        names_kind: the layout line names the file's kind (``.weights.h5``/``.keras archive``).
    """

    source: Source
    recorded: Callable[[Path], Recorded]
    names_kind: bool


def rows() -> dict[Any, Keras3Row]:
    """`Keras3Row` for each of `videoswin_tf.keras3_h5.SOURCES`."""
    from videoswin_tf import keras3_h5
    from videoswin_tf.convert.sources import keras3_rewrite, kerascv

    return {keras3_h5.REWRITE: keras3_rewrite.ROW, keras3_h5.KERASCV: kerascv.ROW}


def recognises(path: Path, kind: Kind) -> bool:
    """Whether ``path`` (of ``kind``) is a Keras 3 Video Swin file of the rewrite or KerasCV."""
    from videoswin_tf import keras3_h5

    if kind not in KINDS:
        return False
    with keras3_h5.open_weights(path) as found:
        return found is not None


def recorded(path: Path) -> Recorded:
    """What ``path`` records of its model: an archive's config.json as its code reads it, or
    for a ``*.weights.h5`` the defaults of the code that wrote it."""
    from videoswin_tf import keras3_h5

    archived = keras3_h5.archive_source(path)
    if archived is not None:
        return rows()[archived].recorded(path)
    with keras3_h5.open_weights(path) as found:
        return Recorded(activation=(found.source if found else keras3_h5.DEFAULT).activation)


def _chosen(path: Path, found, source: str | None, says: bool):
    """The source a file is read as: ``found`` (what the file says, or the default), or the
    one ``source`` names when the file does not say (a ``*.weights.h5`` without layer names).

    Raises:
        CheckpointError: ``source`` names another code than the one the file records.
    """
    from videoswin_tf import keras3_h5

    chosen = keras3_h5.BY_KEY[source] if source else found
    if says and chosen is not found:
        what = "its config.json names" if path.suffix == ".keras" else "its layer names are"
        raise CheckpointError(
            f"{path}: {what} {found.owner} (written by {found.builder}), not {chosen.owner}; "
            f"leave out --source {source} (it only picks the code for a .weights.h5 that "
            "records no layer names)"
        )
    return chosen


def read_keras3(path: Path, source: str | None = None):
    """The Keras 3 file ``path`` as a `LoadedCheckpoint` (canonical state, the layout named,
    ``file`` set for the upstream model to load).

    Args:
        path: the ``*.weights.h5`` or ``.keras`` file.
        source: the code that wrote it, a key of `videoswin_tf.keras3_h5.BY_KEY`
            (``vswin-convert --source``): what a ``*.weights.h5`` that records no layer names
            (Keras before 3.9) is read as, and so its parity reference; None: the file says,
            or `keras3_h5.DEFAULT`.

    Raises:
        CheckpointError: an archive of a model this package does not compute, a file whose
            shapes fit no model (tables of different windows, a missing part; the message names
            the difference), or a ``source`` other than the one the file records.
    """
    from videoswin_tf import keras3_h5
    from videoswin_tf.convert.mapping.rules import extract
    from videoswin_tf.convert.mapping.spec import ModelSpec, build_keras_model
    from videoswin_tf.convert.sources.checkpoint import LoadedCheckpoint
    from videoswin_tf.legacy_h5 import LayoutError
    from videoswin_tf.weights_file import WeightsMismatchError, read_file_config

    archive = path.suffix == ".keras"
    try:
        with keras3_h5.open_weights(path) as found:
            owner, named = found.source, keras3_h5.records_names(found)
        owner = _chosen(path, owner, source, says=archive or named)
        described = recorded(path)
        config = read_file_config(path, described.window)  # refuses tables of two windows
        spec = ModelSpec.from_file_config(config, path.name.split(".")[0])
        model = build_keras_model(spec)
        model.load_weights(str(path))
    except LayoutError as error:
        raise CheckpointError(f"{path}: {error}") from None
    except WeightsMismatchError as error:
        raise CheckpointError(str(error)) from None
    window = "x".join(str(size) for size in spec.window_size)
    notes = [
        f"read {len(model.weights)} Keras weights by structure (videoswin_tf.keras3_h5); "
        f"window {window} from " + ("config.json" if described.window else "the bias tables' rows")
    ]
    if not archive and not named:
        other = next(s for s in keras3_h5.SOURCES if s is not owner)
        notes.append(
            "the file records no layer names (Keras before 3.9), so the rewrite's and KerasCV's "
            f"files are alike: read as {owner.owner} (the same weights either way; "
            + (f"--source {owner.key}" if source else "the default")
            + f"), with parity against {owner.model}; if {other.builder} wrote it, pass "
            f"--source {other.key}"
        )
    if spec.num_classes is not None:
        notes.append(
            f"the head ends in {described.activation or 'no activation (logits)'} "
            + ("(config.json)" if archive else f"({owner.owner} default)")
        )
    notes += described.notes
    if described.include_rescaling:
        notes.append(
            "the file's model rescales 0-255 input itself (include_rescaling=True); the "
            "converted model takes normalised clips, as this package's pipeline gives them"
        )
    row = rows()[owner]
    kind = " (.keras archive)" if archive else " (.weights.h5)"
    return LoadedCheckpoint(
        state=extract(model),
        source_layout=row.source.name + (kind if row.names_kind else ""),
        notes=notes,
        has_head=spec.num_classes is not None,
        source=row.source,
        file=path,
    )
