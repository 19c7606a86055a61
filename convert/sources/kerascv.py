"""KerasCV's Video Swin files given as ``--pth``: ``keras_cv.models.VideoSwinBackbone`` and
``VideoClassifier`` weights (``*.weights.h5``) and ``.keras`` archives (keras-cv 0.9): its
`Source` row and what its archives record.

They are read by `sources.keras3` (KerasCV ported the Keras 3 rewrite, and its files have the
same groups); a ``.keras`` archive is KerasCV's when its config.json names keras_cv's classes,
a ``*.weights.h5`` when its patch embedding is named ``videoswin_patching_and_embedding``.
Parity runs KerasCV's own model loading the file (`references.kerascv`). An archive's
config.json gives the window the model was built with and the classifier's pooling and
activation; no class of the file is ever deserialized.
"""

from __future__ import annotations

from pathlib import Path

from videoswin_tf.convert.errors import CheckpointError
from videoswin_tf.convert.sources.keras3 import Keras3Row, Recorded
from videoswin_tf.convert.sources.layout import Source

KERASCV = Source(
    name="KerasCV's VideoSwinBackbone layout (keras-cv 0.9, Keras 3), read by structure",
    detect=lambda state: False,  # found by `keras3.recognises` on the file, not a state dict
    renames=(),
    reference="kerascv",
)
# What this package's head does: average over D, H, W, then a dense layer.
POOLING = "avg"
ACTIVATIONS = ("softmax", "linear", None)  # a classifier's outputs: probabilities or logits
ARCHIVED = ("VideoSwinBackbone", "VideoClassifier")  # config.json's top-level class_name


def archive_model(path: Path) -> Recorded:
    """What a KerasCV ``.keras`` archive's config.json says: the backbone's window, rescaling
    and input shape, the classifier's activation (a backbone archive has none).

    Raises:
        CheckpointError: the archive holds another model than `ARCHIVED`, or a classifier that
            pools by maximum or ends in an activation other than softmax or none, which this
            package's head does not compute.
    """
    from videoswin_tf import keras3_h5

    archive = keras3_h5.archive_config(path)
    kind, config = archive.get("class_name"), archive.get("config", {})
    if kind not in ARCHIVED:
        raise CheckpointError(
            f"{path}: a .keras archive of a {kind} model that holds keras_cv's classes; only "
            f"archives of {' and '.join(ARCHIVED)} convert: save the VideoSwinBackbone (or the "
            "VideoClassifier) itself"
        )
    activation = None
    if kind == "VideoClassifier":
        pooling = config.get("pooling", POOLING)
        activation = config.get("activation", keras3_h5.KERASCV.activation)
        if pooling != POOLING or activation not in ACTIVATIONS:
            raise CheckpointError(
                f"{path}: a KerasCV VideoClassifier with pooling={pooling!r} and "
                f"activation={activation!r}; this package's head averages and gives logits (or "
                "softmax probabilities), so only pooling='avg' with activation 'softmax' or None "
                "converts"
            )
        config = config["backbone"]["config"]
    shape = config["input_shape"]
    return Recorded(
        window=config.get("window_size"),
        activation=None if activation == "linear" else activation,
        include_rescaling=bool(config.get("include_rescaling")),
        input_shape=tuple(shape),
        notes=(f"config.json: keras_cv {kind} built on {'x'.join(map(str, shape[:3]))} clips",),
    )


ROW = Keras3Row(KERASCV, archive_model, names_kind=False)
