"""Runs the seed's own tf.keras 2 code (innat/VideoSwin v1) for the tests, in a process of its own.

Usage: ``TF_USE_LEGACY_KERAS=1 python seed_keras2.py <reference folder> <jobs.json>``; the folder
holds the seed's ``videoswin`` package. Jobs run in order in this one process, so the Keras 2
layer counters of a later job start where the earlier ones left them, as in a user's session.
Each job builds a seed model by calling it on the clip ``clip`` (an ``.npy`` file; the seed's
models fix their padding and masks at the first call), then:

- ``"write"``: re-draws every weight (`stress`) with ``seed``, saves it with the seed's own
  ``save_weights(path)`` and its logits on the clip to ``logits`` (``.npy``);
- ``"save"``: the same, but saves the whole model as a SavedModel folder ``path`` with
  ``model.save(path)``, as the seed's release made its SavedModel folders; with ``"trained":
  true``, after compiling it (Adam, accuracy) and one training step on the clip, so the folder
  also holds an optimizer's and a metric's variables;
- ``"load"``: loads ``path`` with the seed's own ``load_weights`` and saves its logits.

Job keys: ``action``, ``arch`` (``tiny``, ``small``, ``base``, or a custom size as
``{"embed_dim": ..., "depths": [...], "num_heads": [...]}``), ``num_classes``, ``window_size``
(``null`` for the seed builders' fixed 8x7x7), ``clip``, ``path``, ``logits``, ``seed``.
"""

import functools
import json
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before TensorFlow: tf.keras is tf-keras (Keras 2)

import numpy as np
import tensorflow as tf

BUILDERS = {
    "tiny": "tf_video_swin_tiny",
    "small": "tf_video_swin_small",
    "base": "tf_video_swin_base",
}
# (embed_dim, depths, num_heads) of the seed's builders.
SIZES = {
    "tiny": (96, [2, 2, 6, 2], [3, 6, 12, 24]),
    "small": (96, [2, 2, 18, 2], [3, 6, 12, 24]),
    "base": (128, [2, 2, 18, 2], [4, 8, 16, 32]),
}


def build(job: dict):
    """The seed's model of ``job``: its builder, or for another window (the seed's SSv2 file)
    or a custom size its ``TFSwinTransformer3D`` with the builder's other arguments (the
    builders pass ``window_size`` themselves, so they cannot take another)."""
    from videoswin import model as seed

    arch = job["arch"]
    if job["window_size"] is None:
        return getattr(seed, BUILDERS[arch])(num_classes=job["num_classes"])
    if isinstance(arch, str):
        embed_dim, depths, num_heads = SIZES[arch]
    else:
        embed_dim, depths, num_heads = arch["embed_dim"], arch["depths"], arch["num_heads"]
    return seed.TFSwinTransformer3D(
        patch_size=(2, 4, 4),
        embed_dim=embed_dim,
        depths=depths,
        num_heads=num_heads,
        window_size=tuple(job["window_size"]),
        drop_path_rate=0.2,
        norm_layer=functools.partial(tf.keras.layers.LayerNormalization, epsilon=1e-05),
        patch_norm=True,
        in_channels=embed_dim * 8,
        num_classes=job["num_classes"],
    )


def stress(model, seed: int) -> None:
    """Every weight re-drawn to a distinct, non-trivial value (the seed initialises bias tables
    to zeros and LayerNorms to 1 and 0, which hide a wrong mapping): bias tables ``N(0, 1.5)``,
    LayerNorm scales ``U(0.5, 1.5)`` and offsets ``U(-0.5, 0.5)``, kernels ``N(0, 1 / fan_in)``,
    biases ``N(0, 0.2)``, the head's kernel ``N(0, 0.1)``."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape, leaf = tuple(weight.shape), weight.name.split("/")[-1].split(":")[0]
        if leaf == "relative_position_bias_table":
            value = rng.normal(0.0, 1.5, shape)
        elif leaf == "gamma":
            value = rng.uniform(0.5, 1.5, shape)
        elif leaf == "beta":
            value = rng.uniform(-0.5, 0.5, shape)
        elif leaf == "kernel" and weight.name.startswith("head/"):
            value = rng.normal(0.0, 0.1, shape)
        elif leaf == "kernel":
            value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape)
        else:
            value = rng.normal(0.0, 0.2, shape)
        weight.assign(value.astype("float32"))


def run(job: dict) -> None:
    clip = np.load(job["clip"])
    model = build(job)
    model(clip)  # builds the seed's model for this clip size
    if job["action"] == "write":
        stress(model, job["seed"])
        model.save_weights(job["path"])
    elif job["action"] == "save":
        stress(model, job["seed"])
        if job.get("trained"):
            loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
            model.train_on_batch(clip, np.zeros(len(clip), dtype="int64"))
        model.save(job["path"])
    else:
        model.load_weights(job["path"])
    np.save(job["logits"], model(clip, training=False).numpy())


if __name__ == "__main__":
    sys.path.insert(0, sys.argv[1])
    with open(sys.argv[2]) as jobs:
        for job in json.load(jobs):
            run(job)
