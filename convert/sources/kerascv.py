"""KerasCV's Video Swin files given as ``--pth``: ``keras_cv.models.VideoSwinBackbone`` and
``VideoClassifier`` weights (``*.weights.h5``) and ``.keras`` archives (keras-cv 0.9).

The weights are read by structure (`videoswin_tf.kerascv_h5`) into the Keras model their shapes
give, and leave it as the canonical state dict (`mapping.rules.extract`); parity then runs
KerasCV's own model loading the file (`references.kerascv`). A ``.keras`` archive is opened as
data: its weights member through h5py and its config.json as JSON (which names keras_cv's
classes, and gives the window the model was built with and the classifier's pooling and
activation); no class of the file is ever deserialized. A ``*.weights.h5`` records no config:
it has the structure of the Keras 3 rewrite's files (innat/VideoSwin v2, the code KerasCV
ported), which it cannot be told from; KerasCV's model computes the same as the rewrite's, so
its parity holds for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videoswin_tf.convert.errors import CheckpointError
from videoswin_tf.convert.sources.layout import Source

from videoswin_tf import kerascv_h5

KERASCV = Source(
    name=f"{kerascv_h5.NAME}, read by structure",
    detect=lambda state: False,  # found by `kerascv_h5.is_kerascv` on the file, not a state dict
    renames=(),
    reference="kerascv",
)
# What this package's head does: average over D, H, W, then a dense layer.
POOLING = "avg"
ACTIVATIONS = ("softmax", "linear", None)  # a classifier's outputs: probabilities or logits
ARCHIVED = ("VideoSwinBackbone", "VideoClassifier")  # config.json's top-level class_name


def archive_model(path: Path) -> dict[str, Any]:
    """What a KerasCV ``.keras`` archive's config.json says: ``backbone`` (VideoSwinBackbone's
    config), ``pooling`` and ``activation`` (None for a backbone archive).

    Raises:
        CheckpointError: the archive holds another model than `ARCHIVED`, or a classifier that
            pools by maximum or ends in an activation other than softmax or none, which this
            package's head does not compute.
    """
    archive = kerascv_h5.archive_config(path)
    kind, config = archive.get("class_name"), archive.get("config", {})
    if kind not in ARCHIVED:
        raise CheckpointError(
            f"{path}: a .keras archive of a {kind} model that holds keras_cv's classes; only "
            f"archives of {' and '.join(ARCHIVED)} convert: save the VideoSwinBackbone (or the "
            "VideoClassifier) itself"
        )
    if kind == "VideoSwinBackbone":
        return {"backbone": config, "pooling": None, "activation": None}
    pooling, activation = config.get("pooling", POOLING), config.get("activation", "softmax")
    if pooling != POOLING or activation not in ACTIVATIONS:
        raise CheckpointError(
            f"{path}: a KerasCV VideoClassifier with pooling={pooling!r} and "
            f"activation={activation!r}; this package's head averages and gives logits (or "
            "softmax probabilities), so only pooling='avg' with activation 'softmax' or None "
            "converts"
        )
    return {"backbone": config["backbone"]["config"], "pooling": pooling, "activation": activation}


def read_kerascv(path: Path):
    """KerasCV's ``path`` as a `LoadedCheckpoint` (canonical state, the layout named, ``file``
    set for KerasCV's own model to load).

    Raises:
        CheckpointError: a classifier whose head this package does not compute, or a file
            whose shapes fit no model (tables of different windows, a missing part).
    """
    from videoswin_tf.convert.mapping.rules import extract
    from videoswin_tf.convert.mapping.spec import ModelSpec, build_keras_model
    from videoswin_tf.convert.sources.checkpoint import LoadedCheckpoint

    from videoswin_tf.legacy_h5 import LayoutError
    from videoswin_tf.weights_file import WeightsMismatchError

    archive = kerascv_h5.is_kerascv_archive(path)
    described = archive_model(path) if archive else None
    hint = described["backbone"].get("window_size") if described else None
    try:
        with kerascv_h5.open_weights(path) as file:
            config = kerascv_h5.file_config(file, hint)
        spec = ModelSpec.from_file_config(config, path.name.split(".")[0])
        model = build_keras_model(spec)
        model.load_weights(str(path))
    except (WeightsMismatchError, LayoutError) as error:
        raise CheckpointError(f"{path}: {error}") from None
    window = "x".join(str(size) for size in spec.window_size)
    notes = [
        f"read {len(model.weights)} Keras weights by structure (videoswin_tf.kerascv_h5); "
        f"window {window} from the bias tables' rows"
    ]
    if described is None:
        notes.append(
            "a .weights.h5 records no model config: the Keras 3 rewrite's files have this "
            "structure too; a classifier is compared as KerasCV builds it by default, ending in "
            "softmax"
        )
    else:
        kind = "VideoClassifier" if described["pooling"] else "VideoSwinBackbone"
        shape = "x".join(str(size) for size in described["backbone"]["input_shape"][:3])
        notes.append(f"config.json: keras_cv {kind} built on {shape} clips")
        if described["backbone"].get("include_rescaling"):
            notes.append(
                "include_rescaling=True: KerasCV's model scaled 0-255 clips itself; this "
                "package's model takes normalized clips (mean/std of the ImageNet pipeline)"
            )
    return LoadedCheckpoint(
        state=extract(model),
        source_layout=KERASCV.name,
        notes=notes,
        has_head=spec.num_classes is not None,
        source=KERASCV,
        file=path,
    )
