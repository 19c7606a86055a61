"""The Keras 3 rewrite's files given as ``--pth`` (innat/VideoSwin v2: ``model.save_weights``'s
``*.weights.h5`` and ``model.save``'s ``.keras`` archives of ``VideoSwin{T,S,B}`` classifiers
and of ``VideoSwinBackbone``): its `Source` row and what its archives record.

They are read by `sources.keras3` (the layout KerasCV's files share); a ``.keras`` archive is
the rewrite's when its ``config.json`` names the rewrite's classes (registered as
``swin.transformer.*``, modules ``videoswin.*``), a ``*.weights.h5`` when its patch embedding is
named ``patching_and_embedding`` or not named at all. Parity runs the rewrite's own model loading
the file (`references.keras3_rewrite`), with the head activation and input rescaling the archive
records (the rewrite's defaults, softmax and none, for a ``.weights.h5``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videoswin_tf.convert.sources.keras3 import Keras3Row, Recorded
from videoswin_tf.convert.sources.layout import Source

KERAS3_REWRITE = Source(
    name="the Keras 3 rewrite's layout (innat/VideoSwin v2), read by structure",
    detect=lambda state: False,  # found by `keras3.recognises` on the file, not a state dict
    renames=(),
    reference="keras3-rewrite",
)


def recorded_model(path: Path) -> Recorded:
    """What a rewrite ``.keras`` archive's config.json records: the window (a hint for the
    shapes), the head's activation, the backbone's rescaling and input shape."""
    from videoswin_tf import keras3_h5

    config = keras3_h5.archive_config(path)
    # VideoSwinS is a subclassed model recording its own arguments; T, B and the backbone
    # alone record a VideoSwinBackbone (and a Dense head).
    backbone = _find(config, ("VideoSwinBackbone", "VideoSwinS")) or {}
    head = _find(config, ("Dense", "VideoSwinS")) or {}
    activation = head.get("activation", keras3_h5.REWRITE.activation)
    window = backbone.get("window_size")
    shape = backbone.get("input_shape")
    return Recorded(
        window=list(window) if window else None,
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


ROW = Keras3Row(KERAS3_REWRITE, recorded_model, names_kind=True)
