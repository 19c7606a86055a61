"""Which upstream model parity runs for a checkpoint: `REFERENCES`, keyed by
`videoswin_tf.convert.sources.layout.Source.reference`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from videoswin_tf.convert.mapping.spec import ModelSpec
from videoswin_tf.convert.references.keras3_rewrite import rewrite_forward
from videoswin_tf.convert.references.kerascv import kerascv_forward
from videoswin_tf.convert.references.mmaction2 import mmaction2_forward
from videoswin_tf.convert.references.mmaction2_inflation import mmaction2_inflation_forward
from videoswin_tf.convert.references.mmaction2_recognizer import recognizer_forward
from videoswin_tf.convert.references.seed_keras2 import seed_forward
from videoswin_tf.convert.references.torchvision import torchvision_forward
from videoswin_tf.convert.sources.checkpoint import LoadedCheckpoint


@dataclasses.dataclass(frozen=True)
class Reference:
    """One upstream model that parity can run.

    Attributes:
        description: what runs, for the converter's progress line.
        forward: ``(spec, checkpoint, clip (B, T, H, W, 3)) -> outputs``, the outputs as
            `reference_forward` returns them.
    """

    description: str
    forward: Callable[[ModelSpec, LoadedCheckpoint, np.ndarray], dict[str, Any]]


# Keys are `Source.reference`; mmaction2's own layouts use "mmaction2".
REFERENCES: dict[str, Reference] = {
    "mmaction2": Reference("upstream mmaction2 SwinTransformer3D", mmaction2_forward),
    "mmaction2-inflate": Reference(
        "upstream mmaction2 SwinTransformer3D inflating the 2D file (pretrained2d=True)",
        mmaction2_inflation_forward,
    ),
    "mmaction2-recognizer": Reference(
        "mmaction2's Recognizer3D built by its registry from its config, loading the file "
        "with strict=True",
        recognizer_forward,
    ),
    "torchvision": Reference("torchvision SwinTransformer3d", torchvision_forward),
    "seed-keras2": Reference(
        "the seed's tf.keras model (innat/VideoSwin v1, Keras 2) loading the file itself",
        seed_forward,
    ),
    "keras3-rewrite": Reference(
        "the Keras 3 rewrite's model (innat/VideoSwin v2) loading the file itself",
        rewrite_forward,
    ),
    "seed-keras2-saved-model": Reference(
        "the seed's tf.keras model (innat/VideoSwin v1, Keras 2) restoring the SavedModel's "
        "variables itself",
        seed_forward,
    ),
    "kerascv": Reference(
        "KerasCV's VideoSwinBackbone/VideoClassifier (keras-cv 0.9) loading the file itself",
        kerascv_forward,
    ),
}


def reference_for(checkpoint: LoadedCheckpoint, key: str | None = None) -> Reference:
    """The `Reference` that parity runs for ``checkpoint``: ``REFERENCES[key]`` when given,
    else the one of its source."""
    if key is None:
        key = checkpoint.source.reference if checkpoint.source else "mmaction2"
    return REFERENCES[key]
