"""The Keras 3 rewrite's files given as ``--pth`` (innat/VideoSwin v2: ``model.save_weights``'s
``*.weights.h5`` and ``model.save``'s ``.keras`` archives of ``VideoSwin{T,S,B}`` classifiers
and of ``VideoSwinBackbone``), told apart by structure.

A ``.weights.h5`` is the rewrite's when its groups are the rewrite's layers
(`videoswin_tf.rewrite_h5.detect`); a ``.keras`` archive when its ``config.json`` names the
rewrite's classes (registered as ``swin.transformer.*``, modules ``videoswin.*``). Both are read
as data: the archive's weights member with h5py, its config as JSON; no code of the file's runs.
The weights go into the Keras model their shapes give (`rewrite_h5.file_config`; an archive's
recorded window is the hint for the window) and leave it as the canonical state dict
(`mapping.rules.extract`). Parity then runs the rewrite's own model loading the file
(`references.keras3_rewrite`), with the head activation and input rescaling the archive
records (the rewrite's defaults, softmax and none, for a ``.weights.h5``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from videoswin_tf.convert.errors import CheckpointError
from videoswin_tf.convert.sources.file_kind import Kind
from videoswin_tf.convert.sources.layout import Source

KERAS3_REWRITE = Source(
    name="the Keras 3 rewrite's layout (innat/VideoSwin v2), read by structure",
    detect=lambda state: False,  # found by `recognises` on the file, not on a state dict
    renames=(),
    reference="keras3-rewrite",
)
KINDS = (Kind.HDF5, Kind.KERAS_ARCHIVE)
DEFAULT_ACTIVATION = "softmax"  # the rewrite's VideoSwin{T,S,B}(activation=...) default


@dataclasses.dataclass(frozen=True)
class RewriteModel:
    """What the rewrite's own model needs beyond the shapes, as the file records it.

    Attributes:
        activation: the head's activation (``"softmax"`` or ``None`` for logits).
        include_rescaling: the backbone rescales 0-255 input itself.
        input_shape: the clip ``(T, H, W, 3)`` the archive's model was built for, or ``None``.
    """

    activation: str | None = DEFAULT_ACTIVATION
    include_rescaling: bool = False
    input_shape: tuple[int, ...] | None = None


def recognises(path: Path, kind: Kind) -> bool:
    """Whether ``path`` (of ``kind``) is one of the rewrite's files."""
    from videoswin_tf import rewrite_h5

    if kind not in KINDS:
        return False
    with rewrite_h5.open_weights(path) as found:
        return found is not None


def read_rewrite(path: Path):
    """The rewrite's file ``path`` as a `LoadedCheckpoint` (canonical state, the layout named,
    ``file`` set for the rewrite's own model to load).

    Raises:
        CheckpointError: its shapes fit no model (the message names the difference).
    """
    from videoswin_tf.convert.mapping.rules import extract
    from videoswin_tf.convert.mapping.spec import ModelSpec, build_keras_model
    from videoswin_tf.convert.sources.checkpoint import LoadedCheckpoint

    from videoswin_tf.weights_file import WeightsMismatchError, read_file_config

    window_hint, rewrite = recorded_model(path)
    try:
        config = read_file_config(path, window_hint)
        spec = ModelSpec.from_file_config(config, path.name.split(".")[0])
        model = build_keras_model(spec)
        model.load_weights(str(path))
    except WeightsMismatchError as error:
        raise CheckpointError(str(error)) from None
    window = "x".join(str(size) for size in spec.window_size)
    notes = [
        f"read {len(model.weights)} Keras weights by structure (videoswin_tf.rewrite_h5); "
        f"window {window} from " + ("config.json" if window_hint else "the bias tables' rows")
    ]
    if spec.num_classes is not None:
        notes.append(
            f"the head ends in {rewrite.activation or 'no activation (logits)'} "
            + ("(config.json)" if path.suffix == ".keras" else "(the rewrite's default)")
        )
    if rewrite.include_rescaling:
        notes.append(
            "the file's model rescales 0-255 input itself (include_rescaling=True); the "
            "converted model takes normalised clips, as this package's pipeline gives them"
        )
    return LoadedCheckpoint(
        state=extract(model),
        source_layout=KERAS3_REWRITE.name
        + (" (.keras archive)" if path.suffix == ".keras" else " (.weights.h5)"),
        notes=notes,
        has_head=spec.num_classes is not None,
        source=KERAS3_REWRITE,
        file=path,
    )


def recorded_model(path: Path) -> tuple[list[int] | None, RewriteModel]:
    """What an archive's config.json records of the rewrite's model: the window (a hint for
    the shapes) and the `RewriteModel`; for a ``.weights.h5``, which records nothing, no window
    and the rewrite's defaults."""
    from videoswin_tf import rewrite_h5

    if path.suffix != ".keras":
        return None, RewriteModel()
    config = rewrite_h5.archive_config(path)
    # VideoSwinS is a subclassed model recording its own arguments; T, B and the backbone
    # alone record a VideoSwinBackbone (and a Dense head).
    backbone = _find(config, ("VideoSwinBackbone", "VideoSwinS")) or {}
    head = _find(config, ("Dense", "VideoSwinS")) or {}
    activation = head.get("activation", DEFAULT_ACTIVATION)
    window = backbone.get("window_size")
    shape = backbone.get("input_shape")
    return list(window) if window else None, RewriteModel(
        activation=None if activation in (None, "linear") else str(activation),
        include_rescaling=bool(backbone.get("include_rescaling", False)),
        input_shape=tuple(shape) if shape else None,
    )


def _find(config: Any, class_names: tuple[str, ...]) -> dict | None:
    """The ``config`` entry of the first object of one of ``class_names`` in a Keras config."""
    if isinstance(config, list):
        return next((f for item in config if (f := _find(item, class_names)) is not None), None)
    if not isinstance(config, dict):
        return None
    if config.get("class_name") in class_names and isinstance(config.get("config"), dict):
        return config["config"]
    return next(
        (f for value in config.values() if (f := _find(value, class_names)) is not None), None
    )
