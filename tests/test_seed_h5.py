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
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorflow as tf
from conftest import SMALL_SPEC
from upstream_code import upstream_code
from weight_stress import stress

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
HEAD = ("cls_head", 0.1)  # the head's kernel N(0, 0.1), as seed_keras2.stress draws it
SMALL = SMALL_SPEC.keras_kwargs()


def seed_reference() -> Path:
    """The folder holding the seed's ``videoswin`` package (`upstream_code`)."""
    return upstream_code("VIDEOSWIN_SEED_REFERENCE", "v1", "the seed's reference code")


def run_seed(folder: Path, jobs: list[dict], clip: np.ndarray = CLIP) -> None:
    """Run ``jobs`` (see seed_keras2.py) in one Keras 2 process, on ``clip``."""
    np.save(folder / "clip.npy", clip)
    for job in jobs:  # paths below folder; the seed's logits go beside the file
        path = folder / job["path"]
        suffix = ".seed.npy" if job["action"] == "load" else ".npy"
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
    stress(ours, 7, head=HEAD)
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


def test_a_converted_h5_gives_the_converters_logits_in_the_seeds_code(tmp_path):
    # mmaction2 checkpoint -> vswin-convert (parity-checked) -> .h5 -> the seed's own model.
    from test_convert import MINI, MINI_JSON, write_checkpoint

    from convert.converter import convert

    config = tmp_path / "mini.json"
    config.write_text(json.dumps(MINI_JSON))
    pth = write_checkpoint(tmp_path, MINI, "authors")
    result = convert(pth, config=str(config), out=tmp_path / "mini.h5", log=lambda _: None)
    assert result.report.passed
    clip = CLIP[:, :16, :48, :48]  # 8x12x12 tokens: windows (4, 3, 3), shifted
    model = TFSwinTransformer3D(**MINI.keras_kwargs())
    model.load_weights(str(tmp_path / "mini.h5"))
    sizes = {key: MINI_JSON[key] for key in ("embed_dim", "depths", "num_heads")}
    job = {"action": "load", "arch": sizes, "num_classes": 11, "window_size": [4, 3, 3]}
    run_seed(tmp_path, [job | {"path": "mini.h5"}], clip)
    assert relative_difference(np.load(tmp_path / "mini.seed.npy"), model(clip)) < RTOL


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


def test_seed_snippet_verbatim_on_the_seeds_tiny_k400_file(seed_files, monkeypatch):
    # The seed README's lines, with its `model_tf` typo read as the `model` it builds.
    monkeypatch.chdir(seed_files["folder"])
    model = tf_video_swin_tiny(num_classes=400)
    model.load_weights("TFVideoSwinT_K400_IN1K_P244_W877_32x224.h5")

    y_pred = model(tf.ones(shape=(1, 32, 224, 224, 3)))
    assert y_pred.shape == (1, 400)  # the snippet's TensorShape([1, 400])
    assert relative_difference(model(CLIP), np.load(f"{T_K400}.npy")) < RTOL


def test_weights_argument_takes_a_seed_file_and_its_release_name(seed_files):
    # The seed records no config: its shapes give the model, its release name the labels.
    path = str(seed_files["folder"] / f"{B_SSV2}.h5")
    model = tf_video_swin_base(weights=path)
    assert (model.window_size, model.num_classes) == ((16, 7, 7), 174)
    assert model.class_names == load_labels("sthv2", 174)
    assert relative_difference(model(CLIP), np.load(Path(path).with_suffix(".npy"))) < RTOL
    backbone = tf_video_swin_base(weights=path, include_top=False)
    full = {below_model(weight): np.asarray(weight.numpy()) for weight in model.weights}
    assert len(backbone.weights) == len(full) - 2  # all but the head's kernel and bias
    for weight in backbone.weights:
        assert np.array_equal(np.asarray(weight.numpy()), full[below_model(weight)])


def below_model(weight) -> str:
    return weight.path.split("/", 1)[1]


@pytest.mark.parametrize(
    "build, file, expected",
    [
        (
            lambda: tf_video_swin_base(num_classes=174),
            B_SSV2,
            "window (window_size): the file's is (16, 7, 7), the model's (8, 7, 7); build the "
            "model the file fits: tf_video_swin_base(window_size=(16, 7, 7), num_classes=174), "
            "or tf_video_swin_base(weights='swin_b_ssv2'); for a new head, load the backbone "
            "alone with tf_video_swin_base(weights='{path}', include_top=False)",
        ),
        (
            lambda: tf_video_swin_tiny(num_classes=600),
            T_K400,
            "classes (num_classes): the file's head has 400, the model's 600; build the model "
            "the file fits: tf_video_swin_tiny(num_classes=400), or "
            "tf_video_swin_tiny(weights='swin_t_k400'); for a new head, load the backbone alone "
            "with tf_video_swin_tiny(weights='{path}', include_top=False)",
        ),
        (
            lambda: tf_video_swin_base(num_classes=400),
            T_K400,
            "width (embed_dim): the file's is 96, the model's 128; depth (depths): the file's "
            "is (2, 2, 6, 2), the model's (2, 2, 18, 2); heads (num_heads): the file's is "
            "(3, 6, 12, 24), the model's (4, 8, 16, 32); build the model the file fits: "
            "tf_video_swin_tiny(num_classes=400), or tf_video_swin_tiny(weights='swin_t_k400'); "
            "for a new head, load the backbone alone with "
            "tf_video_swin_tiny(weights='{path}', include_top=False)",
        ),
    ],
)
def test_a_seed_file_for_another_model_is_named(
    seed_files, published_presets, build, file, expected
):
    """Named with its preset while that preset's weights can be fetched (a hash published)."""
    path = seed_files["folder"] / f"{file}.h5"
    with pytest.raises(WeightsMismatchError) as info:
        build().load_weights(str(path))
    assert str(info.value) == f"{path} does not fit this model: " + expected.format(path=path)


def test_a_preset_whose_weights_cannot_be_fetched_is_not_suggested(seed_files):
    """The shipped hash table is empty until a release is pinned: tf_video_swin_tiny(weights=
    'swin_t_k400') would raise UnverifiedWeightsError, so the error does not suggest it."""
    from videoswin_tf import downloads

    assert json.loads(downloads.HASH_TABLE.read_text())["sha256"] == {}
    path = seed_files["folder"] / f"{T_K400}.h5"
    with pytest.raises(WeightsMismatchError) as info:
        tf_video_swin_tiny(num_classes=10).load_weights(str(path))
    assert str(info.value) == (
        f"{path} does not fit this model: classes (num_classes): the file's head has 400, the "
        "model's 10; build the model the file fits: tf_video_swin_tiny(num_classes=400); for a "
        f"new head, load the backbone alone with tf_video_swin_tiny(weights='{path}', "
        "include_top=False)"
    )


def write_earlier(model, path: Path) -> None:
    """This package's `.h5` writer up to 0.1.0 (git 38e65c9, weights_file._write_legacy):
    one group per top-level layer holding weights, named as the layer, each holding Keras 3's
    order of its weights under their variable paths."""
    layers = [
        ("patch_embed", model.patch_embed),
        *((f"layers_{index}", stage) for index, stage in enumerate(model.stages)),
        ("norm", model.norm),
        ("cls_head", model.head),
    ]
    with h5py.File(path, "w") as file:
        file.attrs["layer_names"] = np.array([name.encode() for name, _ in layers])
        for name, layer in layers:
            group = file.create_group(name)
            weights = layer.trainable_weights + layer.non_trainable_weights
            group.attrs["weight_names"] = np.array([weight.path.encode() for weight in weights])
            for weight in weights:
                group.create_dataset(weight.path, data=np.asarray(weight.numpy()))


def test_files_of_the_earlier_layout_still_load(tmp_path):
    model = TFSwinTransformer3D(**SMALL)
    stress(model, 3, head=HEAD)
    write_earlier(model, tmp_path / "earlier.h5")
    with h5py.File(tmp_path / "earlier.h5", "r") as file:  # the bias table before qkv
        assert [
            name.decode().split("/", 1)[1] for name in file["layers_0"].attrs["weight_names"][:4]
        ] == [
            "layers_0/blocks_0/norm1/gamma",
            "layers_0/blocks_0/norm1/beta",
            "layers_0/blocks_0/attn/relative_position_bias_table",
            "layers_0/blocks_0/attn/qkv/kernel",
        ]
    loaded = TFSwinTransformer3D(**SMALL)
    loaded.load_weights(str(tmp_path / "earlier.h5"))
    assert variable_differences(model, loaded) == []


def test_a_file_without_a_recorded_config_fits_by_its_shapes(tmp_path):
    # A seed-layout file of a custom size and window, recording nothing, like the seed's own.
    model = TFSwinTransformer3D(**SMALL)
    stress(model, 4, head=HEAD)
    path = tmp_path / "custom.h5"
    save_weights(model, path)
    with h5py.File(path, "r+") as file:
        del file.attrs["videoswin_tf_config"]
    loaded = TFSwinTransformer3D(**SMALL)
    loaded.load_weights(str(path))
    assert variable_differences(model, loaded) == []
    with pytest.raises(WeightsMismatchError) as info:
        TFSwinTransformer3D(**SMALL | {"window_size": (2, 2, 2)}).load_weights(str(path))
    assert str(info.value) == (
        f"{path} does not fit this model: its relative position bias tables have 75 rows, "
        "which no window (Wd, Wh, Ww) with (Wh, Ww) in [(2, 2), (7, 7)] gives "
        "((2Wd-1)(2Wh-1)(2Ww-1) rows); build the model with the window it was trained with "
        "and call load_weights"
    )


def test_weights_out_of_the_seeds_order_are_refused_before_any_is_assigned(tmp_path):
    model = TFSwinTransformer3D(**SMALL)
    path = tmp_path / "swapped.h5"
    save_weights(model, path)
    with h5py.File(path, "r+") as file:  # proj listed where qkv belongs, and back
        names = list(file["TFBasicLayer1"].attrs["weight_names"])
        names[2:6] = names[4:6] + names[2:4]
        file["TFBasicLayer1"].attrs["weight_names"] = np.array([name.encode() for name in names])
    target = TFSwinTransformer3D(**SMALL)
    before = [np.asarray(weight.numpy()) for weight in target.weights]
    with pytest.raises(WeightsMismatchError) as info:
        target.load_weights(str(path))
    assert str(info.value) == (
        f"{path} (the seed's layout, innat/VideoSwin v1) does not fit this model: "
        "TFBasicLayer1/dense_1/kernel:0 (32, 32) is not layers_0/blocks_0/attn/qkv/kernel "
        "(32, 96) (and 3 more); load_weights(..., skip_mismatch=True) keeps the model's own "
        "values for those"
    )
    assert all(
        np.array_equal(a, np.asarray(w.numpy()))
        for a, w in zip(before, target.weights, strict=True)
    )
    with pytest.warns(UserWarning, match="kept the model's own values for those"):
        target.load_weights(str(path), skip_mismatch=True)
    assert np.array_equal(target.norm.gamma.numpy(), model.norm.gamma.numpy())


SLOW_CASES = {  # release name: (builder, seed job)
    "TFVideoSwinS_K400_IN1K_P244_W877_32x224": (
        tf_video_swin_small,
        {"arch": "small", "num_classes": 400},
    ),
    "TFVideoSwinB_K400_IN1K_P244_W877_32x224": (
        tf_video_swin_base,
        {"arch": "base", "num_classes": 400},
    ),
    "TFVideoSwinB_K600_IN22K_P244_W877_32x224": (
        tf_video_swin_base,
        {"arch": "base", "num_classes": 600},
    ),
}


@pytest.fixture(scope="module")
def slow_seed_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("seed_slow")
    jobs = [
        {"action": "write", "path": f"{name}.h5", "seed": index} | job
        for index, (name, (_, job)) in enumerate(SLOW_CASES.items())
    ]
    run_seed(folder, jobs)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("release", SLOW_CASES)
def test_seed_small_and_base_files_give_the_seed_logits(slow_seed_files, release):
    builder, job = SLOW_CASES[release]
    model = builder(num_classes=job["num_classes"])
    model.load_weights(str(slow_seed_files / f"{release}.h5"))
    assert relative_difference(model(CLIP), np.load(slow_seed_files / f"{release}.npy")) < RTOL


@pytest.mark.slow
def test_seed_snippet_on_the_seeds_base_ssv2_file(seed_files, monkeypatch):
    # The snippet with the SSv2 model's arguments (the seed's README shows Swin-T only).
    monkeypatch.chdir(seed_files["folder"])
    model = tf_video_swin_base(window_size=(16, 7, 7), num_classes=174)
    model.load_weights("TFVideoSwinB_SSV2_K400_P244_W1677_32x224.h5")

    y_pred = model(tf.ones(shape=(1, 32, 224, 224, 3)))
    assert y_pred.shape == (1, 174)
    assert relative_difference(model(CLIP), np.load(f"{B_SSV2}.npy")) < RTOL


def test_a_damaged_seed_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "damaged.h5"
    save_weights(TFSwinTransformer3D(**SMALL), path)
    with h5py.File(path, "r+") as file:  # the seed's files record no config
        del file.attrs["videoswin_tf_config"]
        name = file["TFBasicLayer2"].attrs["weight_names"][0]
        del file["TFBasicLayer2"][name]
    with pytest.raises(WeightsMismatchError) as info:
        TFSwinTransformer3D(**SMALL).load_weights(str(path))
    assert str(info.value) == (
        f"{path} does not fit this model: its group 'TFBasicLayer2' lists a weight "
        f"'{name}' it does not hold; the file is damaged or incomplete: download or write it again"
    )
