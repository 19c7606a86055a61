"""Parity for the Keras 3 rewrite's files: the rewrite's own model (innat/VideoSwin v2) loads the
file with its own ``load_weights``, in a process of its own.

The rewrite's package is called ``videoswin``, as the seed's is, and registers its classes with
Keras when imported, so it runs apart from the converter, in a child process
(`references.child`): the child imports ``videoswin`` from the folder
``VIDEOSWIN_REWRITE_REFERENCE`` names, builds the model with the rewrite's ``VideoSwinT``
builder (which takes every size's arguments; its ``VideoSwinB`` is the same function with
other defaults) for the clip's shape, and writes back the four stage maps and the head's output
(`references.keras3_stages`, shared with KerasCV's reference). A classifier whose head ends in
softmax (the rewrite's default) gives probabilities, and parity compares probabilities then.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from videoswin_tf.convert.references.child import (
    child_job,
    child_outputs,
    run_child,
    upstream_folder,
)

REWRITE_CODE_VARIABLE = "VIDEOSWIN_REWRITE_REFERENCE"
REWRITE_PATCH = (2, 4, 4)  # the rewrite's builders do not pass patch_size on


def rewrite_forward(spec, checkpoint, clip: np.ndarray) -> dict[str, Any]:
    """The rewrite's model for ``spec`` and ``checkpoint.file`` (its head activation and
    rescaling as the file records them), with the file loaded by the rewrite's own
    ``load_weights``, on ``clip``: ``{"stages": 4 maps, "pooled": (B, C), "logits": (B,
    classes) or None, "softmax": whether the head ends in softmax, so "logits" holds
    probabilities}``.

    Raises:
        ConversionError: the rewrite's code is not named by ``VIDEOSWIN_REWRITE_REFERENCE``,
            the model's patch is not the rewrite's, the file's model rescales its input, or the
            rewrite's process fails (its last lines quoted).
    """
    from videoswin_tf.convert.errors import ConversionError
    from videoswin_tf.convert.sources.keras3 import recorded

    folder = upstream_folder(
        REWRITE_CODE_VARIABLE,
        "parity for the Keras 3 rewrite's files runs the rewrite's own model: set "
        f"{REWRITE_CODE_VARIABLE} to the folder that holds its videoswin package (a "
        "checkout of innat/VideoSwin v2), or pass --no-parity",
    )
    rewrite = recorded(checkpoint.file)
    if tuple(spec.patch_size) != REWRITE_PATCH or rewrite.include_rescaling:
        raise ConversionError(
            f"{checkpoint.file}: the rewrite's builders fix the patch at {REWRITE_PATCH} and "
            "parity feeds normalised clips (include_rescaling=False); this file's model has "
            f"patch {tuple(spec.patch_size)}, include_rescaling={rewrite.include_rescaling}: "
            "pass --no-parity"
        )
    arguments = {
        "input_shape": list(clip.shape[1:]),
        "embed_size": spec.embed_dim,
        "depths": list(spec.depths),
        "num_heads": list(spec.num_heads),
        "window_size": list(spec.window_size),
        "include_top": spec.num_classes is not None,
        "num_classes": spec.num_classes or 1,
        "activation": rewrite.activation,
    }
    out = run_child(
        __name__,
        folder,
        clip,
        {"weights": str(checkpoint.file), "arguments": arguments},
        "the rewrite's model failed to run on the file",
    )
    logits = out.get("logits")
    return {
        "stages": [out[f"stage{index}"] for index in range(len(spec.depths))],
        "pooled": out["pooled"],
        "logits": logits,
        "softmax": rewrite.activation == "softmax" and logits is not None,
    }


def _run_rewrite(job: dict[str, Any], clip: np.ndarray) -> None:
    """The child: build the rewrite's model, load the file with its ``load_weights``, and save
    its outputs (`keras3_stages.keras3_outputs`)."""
    from videoswin import VideoSwinT

    from videoswin_tf.convert.references.keras3_stages import keras3_outputs
    from videoswin_tf.keras3_h5 import REWRITE

    model = VideoSwinT(**job["arguments"])
    model.load_weights(job["weights"])
    backbone = model if not job["arguments"]["include_top"] else model.layers[1]
    outputs = keras3_outputs(backbone, model, clip, REWRITE.embedding_name)
    saved = {f"stage{index}": stage for index, stage in enumerate(outputs["stages"])}
    saved["pooled"] = outputs["pooled"]
    if outputs["logits"] is not None:
        saved["logits"] = outputs["logits"]
    child_outputs(job, saved)


if __name__ == "__main__":
    _run_rewrite(*child_job(sys.argv))
