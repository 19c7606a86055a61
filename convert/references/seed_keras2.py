"""Parity for the seed's own files: the seed's tf.keras model (innat/VideoSwin v1) loads the
file with its own ``load_weights`` under Keras 2 (``tf-keras``), in a process of its own: an
``.h5`` as it is, a SavedModel folder through its ``variables/variables`` checkpoint, which Keras 2
restores by the model's own attribute names (TensorFlow's object-graph matching, every variable
of the model required), independently of the converter's reading by saved order.

It runs in a child process (`references.child`) with ``TF_USE_LEGACY_KERAS=1``: the child
imports the seed's ``videoswin`` package from the folder ``VIDEOSWIN_SEED_REFERENCE`` names and
saves the logits. Only logits come back: the seed's model gives no stage features.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from videoswin_tf.convert.references.child import (
    child_job,
    child_outputs,
    run_child,
    upstream_folder,
)

SEED_CODE_VARIABLE = "VIDEOSWIN_SEED_REFERENCE"


def seed_forward(spec, checkpoint, clip: np.ndarray) -> dict[str, Any]:
    """The seed's model for ``spec``, with ``checkpoint.file`` loaded by the seed's own
    ``load_weights``, on ``clip``: ``{"stages": [], "pooled": None, "logits": (B, classes)}``.

    Raises:
        ConversionError: the seed's code is not named by ``VIDEOSWIN_SEED_REFERENCE``, the model
            has no head, or the seed's process fails (its last lines quoted).
    """
    from videoswin_tf.convert.errors import ConversionError

    what = "SavedModel folder" if Path(checkpoint.file).is_dir() else ".h5"
    folder = upstream_folder(
        SEED_CODE_VARIABLE,
        f"parity for the seed's {what} runs the seed's own model: set {SEED_CODE_VARIABLE} to "
        "the folder that holds its videoswin package (a checkout of innat/VideoSwin), or "
        "pass --no-parity",
    )
    if spec.num_classes is None:
        raise ConversionError(
            f"{checkpoint.file}: the seed's model is compared on logits and this file has no "
            "head; pass --no-parity"
        )
    job = {
        "weights": str(checkpoint.file),
        "patch_size": list(spec.patch_size),
        "embed_dim": spec.embed_dim,
        "depths": list(spec.depths),
        "num_heads": list(spec.num_heads),
        "window_size": list(spec.window_size),
        "num_classes": spec.num_classes,
    }
    out = run_child(
        __name__,
        folder,
        clip,
        job,
        "the seed's model failed to run on the file",
        env={"TF_USE_LEGACY_KERAS": "1"},
    )
    return {"stages": [], "pooled": None, "logits": out["logits"].astype(np.float32)}


def _run_seed(job: dict[str, Any], clip: np.ndarray) -> None:
    """The child: build the seed's model as its builders do (LayerNorm epsilon 1e-5, patch
    norm, drop path 0.2), call it on the clip (the seed fixes padding and masks at the first
    call), load the file (or a SavedModel folder's variables) with the seed's
    ``load_weights``, save its logits."""
    import functools

    import tensorflow as tf
    from videoswin import model as seed

    model = seed.TFSwinTransformer3D(
        patch_size=tuple(job["patch_size"]),
        embed_dim=job["embed_dim"],
        depths=job["depths"],
        num_heads=job["num_heads"],
        window_size=tuple(job["window_size"]),
        drop_path_rate=0.2,
        norm_layer=functools.partial(tf.keras.layers.LayerNormalization, epsilon=1e-05),
        patch_norm=True,
        in_channels=job["embed_dim"] * 2 ** (len(job["depths"]) - 1),
        num_classes=job["num_classes"],
    )
    model(clip)
    weights = Path(job["weights"])
    if weights.is_dir():  # a SavedModel folder: its variables, matched by object names
        status = model.load_weights(str(weights / "variables" / "variables"))
        status.expect_partial().assert_existing_objects_matched()
    else:
        model.load_weights(str(weights))
    child_outputs(job, {"logits": model(clip, training=False).numpy()})


if __name__ == "__main__":
    _run_seed(*child_job(sys.argv))
