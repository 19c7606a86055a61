"""The seed's own `.h5` files load here, and this package's `.h5` files load in the seed's code.

The seed's files are written by its own tf.keras 2 code (innat/VideoSwin v1, the parity
reference in ``shared/reference/innat_videoswin``) under Keras 2 in a subprocess
(``seed_keras2.py``), with every weight re-drawn to a distinct value, and saved exactly as its
code saves them. Logits are compared on a 32x56x56 clip: 16 token frames under the 8-frame
window (shifted in time), 14x14 tokens at stage 0 (shifted 7x7 windows), windows shrinking later.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorflow as tf
from conftest import SMALL_SPEC

from videoswin_tf import (
    TFSwinTransformer3D,
    WeightsMismatchError,
    load_labels,
    tf_video_swin_base,
    tf_video_swin_small,
    tf_video_swin_tiny,
)
from videoswin_tf.weights_file import save_weights, variable_differences

SCRIPT = Path(__file__).with_name("seed_keras2.py")
CLIP = np.random.default_rng(0).standard_normal((1, 32, 56, 56, 3)).astype("float32")
T_K400 = "TFVideoSwinT_K400_IN1K_P244_W877_32x224"
B_SSV2 = "TFVideoSwinB_SSV2_K400_P244_W1677_32x224"
RTOL = 1e-5  # max |diff| over max |reference logit|
SMALL = SMALL_SPEC.keras_kwargs()


def seed_reference() -> Path:
    """The folder holding the seed's ``videoswin`` package: ``VIDEOSWIN_SEED_REFERENCE``, or
    ``shared/reference/innat_videoswin/v1`` beside the checkout or one of its parents."""
    if "VIDEOSWIN_SEED_REFERENCE" in os.environ:
        return Path(os.environ["VIDEOSWIN_SEED_REFERENCE"])
    for parent in Path(__file__).resolve().parents:
        folder = parent / "shared" / "reference" / "innat_videoswin" / "v1"
        if folder.is_dir():
            return folder
    raise FileNotFoundError(
        "the seed's reference code (shared/reference/innat_videoswin/v1) is not beside this "
        "checkout; set VIDEOSWIN_SEED_REFERENCE to the folder that holds its videoswin package"
    )


def run_seed(folder: Path, jobs: list[dict]) -> None:
    """Run ``jobs`` (see seed_keras2.py) in one Keras 2 process."""
    np.save(folder / "clip.npy", CLIP)
    for job in jobs:  # paths below folder; the seed's logits go beside the file
        path = folder / job["path"]
        suffix = ".npy" if job["action"] == "write" else ".seed.npy"
        job |= {"path": str(path), "logits": str(path.with_suffix(suffix))}
        job.setdefault("clip", str(folder / "clip.npy"))
        job.setdefault("window_size", None)
        job.setdefault("seed", 0)
    (folder / "jobs.json").write_text(json.dumps(jobs))
    env = os.environ | {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(seed_reference()), str(folder / "jobs.json")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def stress(model, seed: int) -> None:
    """This package's model with every weight re-drawn (the scales of seed_keras2.stress)."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape = tuple(weight.shape)
        if weight.name == "relative_position_bias_table":
            value = rng.normal(0.0, 1.5, shape)
        elif weight.name == "gamma":
            value = rng.uniform(0.5, 1.5, shape)
        elif weight.name == "beta":
            value = rng.uniform(-0.5, 0.5, shape)
        elif weight.name == "kernel" and "cls_head" in weight.path:
            value = rng.normal(0.0, 0.1, shape)
        elif weight.name == "kernel":
            value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape)
        else:
            value = rng.normal(0.0, 0.2, shape)
        weight.assign(value.astype("float32"))


def relative_difference(got, want) -> float:
    got, want = np.asarray(got, "float64"), np.asarray(want, "float64")
    assert got.shape == want.shape
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory) -> dict:
    """The seed's T K400 file (written by a fresh process), its B SSv2 file (written after the
    T model was built in the same process), and this package's T file as the seed's code loads
    it, with every model's logits on `CLIP`."""
    folder = tmp_path_factory.mktemp("seed")
    ours = tf_video_swin_tiny(num_classes=400)
    stress(ours, 7)
    save_weights(ours, folder / "ours_t.h5", preset="swin_t_k400", labels="k400")
    np.save(folder / "ours_t.npy", np.asarray(ours(CLIP)))
    run_seed(
        folder,
        [
            {"action": "write", "arch": "tiny", "num_classes": 400, "path": f"{T_K400}.h5"},
            {
                "action": "write",
                "arch": "base",
                "num_classes": 174,
                "window_size": [16, 7, 7],
                "path": f"{B_SSV2}.h5",
            },
            {"action": "load", "arch": "tiny", "num_classes": 400, "path": "ours_t.h5"},
        ],
    )
    return {"folder": folder}


def test_seed_tiny_k400_gives_the_seed_logits(seed_files):
    folder = seed_files["folder"]
    model = tf_video_swin_tiny(num_classes=400)
    model.load_weights(str(folder / f"{T_K400}.h5"))
    want = np.load(folder / f"{T_K400}.npy")
    assert relative_difference(model(CLIP), want) < RTOL
    assert np.abs(want).max() > 1.0  # stressed weights: logits far from zero


def test_a_file_written_after_another_model_gives_the_seed_logits(seed_files):
    # The B SSv2 file came second in its process: Keras 2's counters had moved on past the T
    # model's 27 LayerNormalizations and 51 Dense layers, so its names are not a fresh
    # process's, and only the structure tells which weight is which.
    path = seed_files["folder"] / f"{B_SSV2}.h5"
    with h5py.File(path, "r") as file:
        names = list(file["TFBasicLayer1"].attrs["weight_names"][:3])
    assert names == [
        "layer_normalization_27/gamma:0",
        "layer_normalization_27/beta:0",
        "dense_51/kernel:0",
    ]
    model = tf_video_swin_base(window_size=(16, 7, 7), num_classes=174)
    model.load_weights(str(path))
    assert relative_difference(model(CLIP), np.load(path.with_suffix(".npy"))) < RTOL


def test_ours_load_in_the_seeds_code_with_the_same_logits(seed_files):
    # The seed's own load_weights, positional, on this package's file: same logits.
    folder = seed_files["folder"]
    seed_logits = np.load(folder / "ours_t.seed.npy")
    assert relative_difference(seed_logits, np.load(folder / "ours_t.npy")) < RTOL


def test_our_h5_has_the_names_of_a_fresh_seed_process(seed_files):
    seed_path = seed_files["folder"] / f"{T_K400}.h5"
    ours_path = seed_files["folder"] / "ours_t.h5"
    with h5py.File(seed_path, "r") as seed, h5py.File(ours_path, "r") as ours:
        assert list(ours.attrs["layer_names"]) == list(seed.attrs["layer_names"])
        assert sorted(ours) == sorted(seed)  # every group, top_level_model_weights included
        for group in seed.attrs["layer_names"]:
            names = list(seed[group].attrs["weight_names"])
            assert list(ours[group].attrs["weight_names"]) == names
            for name in names:
                assert ours[group][name].shape == seed[group][name].shape
                assert ours[group][name].dtype == seed[group][name].dtype
        assert set(ours.attrs) - set(seed.attrs) == {"videoswin_tf_config"}
