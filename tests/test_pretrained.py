"""Pretrained weights: the seed's `.h5` names, `weights=` on the builders, verified downloads,
and mismatches named, all offline against a release made here from generated sources.

The release holds Swin-T K400 and Swin-B SSv2 (the smallest model and the one whose window and
classes differ); `test_every_preset_from_a_full_release` (slow) does all six.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import SMALL_SPEC

from videoswin_tf import (
    TFSwinTransformer3D,
    downloads,
    legacy_h5,
    load_labels,
    presets,
    tf_video_swin_base,
    tf_video_swin_small,
    tf_video_swin_tiny,
)
from videoswin_tf.convert.errors import ConversionError
from videoswin_tf.convert.outputs.release import pin_hashes, sha256
from videoswin_tf.convert.outputs.weights import write_checked
from videoswin_tf.weights_file import WeightsMismatchError, save_weights, variable_differences

VSWIN = str(Path(sys.executable).parent / "vswin-convert")
CLIP = np.random.default_rng(0).standard_normal((1, 4, 64, 64, 3)).astype("float32")
T_RELEASE = "TFVideoSwinT_K400_IN1K_P244_W877_32x224"
B_SSV2_RELEASE = "TFVideoSwinB_SSV2_K400_P244_W1677_32x224"


def release_folder(tmp_path_factory, *configs: str) -> Path:
    """A release of the generated sources of ``configs`` with a small parity clip."""
    root = tmp_path_factory.mktemp("release")
    selection = [arg for name in configs for arg in ("--config", name)] or ["--all"]
    for command in (
        ["synthesize", *selection, "--to", str(root / "sources")],
        [
            "release",
            "--from",
            str(root / "sources"),
            "--to",
            str(root / "assets"),
            "--parity-frames",
            "8",
            "--parity-size",
            "64",
        ],
    ):
        result = subprocess.run([VSWIN, *command], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    return root / "assets"


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return release_folder(tmp_path_factory, "swin_t_k400", "swin_b_ssv2")


@pytest.fixture
def mirror(release, tmp_path, monkeypatch) -> Path:
    """The release's files served from a folder of their own, trusted through its manifest;
    an empty Keras cache."""
    folder = tmp_path / "mirror"
    shutil.copytree(release, folder, copy_function=os.link)  # replace a file, never write it
    monkeypatch.setenv("VIDEOSWIN_WEIGHTS_URL", folder.as_uri())
    monkeypatch.setenv("VIDEOSWIN_WEIGHTS_MANIFEST", str(release / "manifest.json"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return folder


def cache(tmp_path: Path) -> Path:
    return tmp_path / "keras" / "models" / "videoswin_tf"


def logits(model) -> np.ndarray:
    return np.asarray(model(CLIP))


def test_seed_snippet_verbatim(release, monkeypatch):
    # The seed README's lines, with its `model_tf` typo read as the `model` it builds.
    monkeypatch.chdir(release)
    model = tf_video_swin_tiny(num_classes=400)
    model.load_weights("TFVideoSwinT_K400_IN1K_P244_W877_32x224.h5")
    y_pred = model(tf.ones(shape=(1, 32, 224, 224, 3)))
    assert y_pred.shape == (1, 400)

    native = tf_video_swin_tiny(num_classes=400)
    native.load_weights(f"{T_RELEASE}.weights.h5")
    assert variable_differences(native, model) == []


def test_the_suffix_picks_the_format(release):
    with h5py.File(release / f"{T_RELEASE}.h5", "r") as file:  # Keras 2 layout, the seed's
        assert list(file.attrs["layer_names"]) == [
            "TFPatchEmbed3D",
            "pos_drop",
            "TFBasicLayer1",
            "TFBasicLayer2",
            "TFBasicLayer3",
            "TFBasicLayer4",
            "norm",
            "adt_avg_pool3d",
            "head",
        ]
        assert len(file["TFBasicLayer3"].attrs["weight_names"]) == 6 * 13 + 3
        recorded = json.loads(file.attrs["videoswin_tf_config"])
    with h5py.File(release / f"{T_RELEASE}.weights.h5", "r") as file:  # Keras 3's
        assert "layer_names" not in file.attrs and "layers" in file
        assert json.loads(file.attrs["videoswin_tf_config"]) == recorded
    assert recorded == {
        "embed_dim": 96,
        "depths": [2, 2, 6, 2],
        "num_heads": [3, 6, 12, 24],
        "window_size": [8, 7, 7],
        "patch_size": [2, 4, 4],
        "include_top": True,
        "num_classes": 400,
        "preset": "swin_t_k400",
        "labels": "k400",
    }


def test_named_presets_build_and_load(mirror, tmp_path):
    for name, release_name in (("swin_t_k400", T_RELEASE), ("swin_b_ssv2", B_SSV2_RELEASE)):
        preset = presets()[name]
        builder = tf_video_swin_tiny if preset.arch == "tiny" else tf_video_swin_base
        model = builder(weights=name)
        assert (model.window_size, model.num_classes) == (preset.window_size, preset.num_classes)
        assert model.class_names == load_labels(preset.labels, preset.num_classes)
        local = builder(weights=str(mirror / f"{release_name}.h5"))
        assert local.class_names == model.class_names
        assert logits(model).shape == (1, preset.num_classes)
        np.testing.assert_array_equal(logits(model), logits(local))
        del model, local
    assert sorted(path.name for path in cache(tmp_path).iterdir()) == [
        f"{B_SSV2_RELEASE}.weights.h5",
        f"{T_RELEASE}.weights.h5",
    ]
    # By release name, from the cache: the mirror may be gone.
    (mirror / f"{T_RELEASE}.weights.h5").unlink()
    again = tf_video_swin_tiny(weights=T_RELEASE)
    assert again.class_names[:2] == ["abseiling", "air drumming"]


def test_both_formats_give_identical_logits(release):
    legacy = tf_video_swin_tiny(weights=str(release / f"{T_RELEASE}.h5"))
    native = tf_video_swin_tiny(weights=str(release / f"{T_RELEASE}.weights.h5"))
    assert variable_differences(native, legacy) == []
    np.testing.assert_array_equal(logits(legacy), logits(native))


def test_backbone_of_a_classifier_preset(mirror):
    full = tf_video_swin_tiny(weights="swin_t_k400")
    backbone = tf_video_swin_tiny(weights="swin_t_k400", include_top=False)
    assert backbone.class_names is None and backbone.head is None
    pooled = np.asarray(keras.ops.mean(full.stage_features(CLIP)[-1], axis=(1, 2, 3)))
    np.testing.assert_array_equal(np.asarray(backbone(CLIP)), pooled)


def test_the_keras3_rewrites_names_load_the_same_weights(mirror):
    # innat/VideoSwin v2.0's names: `_classifier` the whole model, the bare name its backbone.
    full = tf_video_swin_tiny(weights="swin_t_k400")
    classifier = tf_video_swin_tiny(weights="videoswin_tiny_kinetics400_classifier")
    assert variable_differences(full, classifier) == []
    assert classifier.class_names == full.class_names
    backbone = tf_video_swin_tiny(weights="videoswin_tiny_kinetics400")
    assert backbone.head is None
    pooled = np.asarray(keras.ops.mean(full.stage_features(CLIP)[-1], axis=(1, 2, 3)))
    np.testing.assert_array_equal(np.asarray(backbone(CLIP)), pooled)


def test_tampered_asset_fails_its_hash_and_leaves_nothing(mirror, tmp_path):
    asset = mirror / f"{T_RELEASE}.weights.h5"
    good = asset.read_bytes()
    data = bytearray(good)
    data[len(data) // 2] ^= 0x01
    asset.unlink()
    asset.write_bytes(bytes(data))
    with pytest.raises(downloads.WeightsHashError, match="does not have the published SHA-256"):
        tf_video_swin_tiny(weights="swin_t_k400")
    assert list(cache(tmp_path).iterdir()) == []
    asset.unlink()
    asset.write_bytes(good)
    assert tf_video_swin_tiny(weights="swin_t_k400").num_classes == 400


def test_a_damaged_cached_file_is_fetched_again(mirror, tmp_path):
    tf_video_swin_tiny(weights="swin_t_k400")
    cached = cache(tmp_path) / f"{T_RELEASE}.weights.h5"
    cached.write_bytes(b"damaged")
    tf_video_swin_tiny(weights="swin_t_k400")
    assert sha256(cached) == sha256(mirror / cached.name)


def test_unreachable_or_missing_files_are_one_line_errors(mirror, tmp_path, monkeypatch):
    (mirror / f"{T_RELEASE}.weights.h5").unlink()
    with pytest.raises(downloads.WeightsDownloadError, match="could not download file://") as info:
        tf_video_swin_tiny(weights="swin_t_k400")
    assert "VIDEOSWIN_WEIGHTS_URL" in str(info.value) and "\n" not in str(info.value)
    monkeypatch.setenv("VIDEOSWIN_WEIGHTS_URL", "https://127.0.0.1:9/")  # refused at once
    with pytest.raises(downloads.WeightsDownloadError, match="could not download https://"):
        tf_video_swin_tiny(weights="swin_t_k400")
    monkeypatch.setenv("VIDEOSWIN_WEIGHTS_URL", "ftp://mirror/")
    with pytest.raises(downloads.WeightsDownloadError, match="neither an https:// or file://"):
        tf_video_swin_tiny(weights="swin_t_k400")
    assert list(cache(tmp_path).iterdir()) == []


def test_unpublished_hashes_refuse_to_download(release, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOSWIN_WEIGHTS_URL", str(release))  # a plain folder works too
    monkeypatch.delenv("VIDEOSWIN_WEIGHTS_MANIFEST", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert json.loads(downloads.HASH_TABLE.read_text())["sha256"] == {}  # nothing released yet
    with pytest.raises(downloads.UnverifiedWeightsError) as info:
        tf_video_swin_tiny(weights="swin_t_k400")
    message = str(info.value)
    assert message.startswith(f"no published SHA-256 for {T_RELEASE}.weights.h5")
    assert "set VIDEOSWIN_WEIGHTS_MANIFEST" in message
    assert "vswin-convert --config swin_t_k400 --pth" in message
    assert not (tmp_path / "keras").exists()

    monkeypatch.setenv("VIDEOSWIN_WEIGHTS_MANIFEST", "https://example.org/manifest.json")
    with pytest.raises(downloads.WeightsDownloadError, match="is not a local file"):
        tf_video_swin_tiny(weights="swin_t_k400")


def test_only_presets_with_a_published_hash_can_be_fetched(published_presets, monkeypatch):
    t_k400 = presets()["swin_t_k400"]
    assert downloads.can_fetch(t_k400)
    published_presets.write_text(json.dumps({"sha256": {f"{T_RELEASE}.h5": "0" * 64}}))
    assert not downloads.can_fetch(t_k400)  # the .weights.h5 is what a preset fetches
    shipped = importlib.resources.files("videoswin_tf") / downloads.HASHES_FILE
    monkeypatch.setattr(downloads, "HASH_TABLE", shipped)
    assert not downloads.can_fetch(t_k400)  # the shipped table: empty until a release
    monkeypatch.setenv("VIDEOSWIN_WEIGHTS_MANIFEST", "https://example.org/manifest.json")
    assert not downloads.can_fetch(t_k400)  # refused by fetch_preset_weights too


def test_pinned_table_verifies_downloads(release, tmp_path, monkeypatch):
    table = tmp_path / "weights_hashes.json"
    pin_hashes(json.loads((release / "manifest.json").read_text()), table)
    pinned = json.loads(table.read_text())["sha256"]
    assert pinned[f"{T_RELEASE}.h5"] == sha256(release / f"{T_RELEASE}.h5")
    assert len(pinned) == 4
    monkeypatch.setattr(downloads, "HASH_TABLE", table)
    monkeypatch.delenv("VIDEOSWIN_WEIGHTS_MANIFEST", raising=False)
    monkeypatch.setenv("VIDEOSWIN_WEIGHTS_URL", str(release))
    path = downloads.fetch_preset_weights(presets()["swin_t_k400"], cache_dir=tmp_path / "c")
    assert sha256(path) == pinned[path.name]


def test_arguments_that_contradict_the_weights(release):
    ssv2 = str(release / f"{B_SSV2_RELEASE}.h5")
    cases = {
        lambda: tf_video_swin_tiny(weights="swin_b_ssv2"): (
            "weights='swin_b_ssv2' is a Swin-B model, not tf_video_swin_tiny's; build it with "
            "tf_video_swin_base(weights='swin_b_ssv2')"
        ),
        lambda: tf_video_swin_tiny(weights="swin_t_k400", num_classes=10): (
            "num_classes=10 contradicts weights='swin_t_k400', whose head has 400 classes; "
            "leave num_classes out, or pass include_top=False to load the backbone and put a "
            "new head on it"
        ),
        lambda: tf_video_swin_base(weights=ssv2, window_size=(8, 7, 7)): (
            f"window_size=(8, 7, 7) contradicts weights={ssv2!r}, whose window_size is "
            "(16, 7, 7); leave window_size out"
        ),
        lambda: tf_video_swin_tiny(weights="swin_t_k400", embed_dim=64): (
            "embed_dim is fixed by weights='swin_t_k400' (tf_video_swin_tiny); leave it out, "
            "or build without weights="
        ),
        lambda: tf_video_swin_tiny(weights="swin_t"): "weights='swin_t' is neither a preset",
    }
    for build, message in cases.items():
        with pytest.raises(ValueError) as info:
            build()
        assert str(info.value).startswith(message)


def test_ssv2_weights_into_a_default_window_name_the_window(release, published_presets):
    path = release / f"{B_SSV2_RELEASE}.h5"
    with pytest.raises(WeightsMismatchError) as info:
        tf_video_swin_base(num_classes=174).load_weights(str(path))
    assert str(info.value) == (
        f"{path} does not fit this model: window (window_size): the file's is (16, 7, 7), the "
        "model's (8, 7, 7); build the model the file fits: tf_video_swin_base(window_size="
        "(16, 7, 7), num_classes=174), or tf_video_swin_base(weights='swin_b_ssv2'); for a new "
        f"head, load the backbone alone with tf_video_swin_base(weights='{path}', "
        "include_top=False)"
    )


def test_depth_and_width_mismatches_are_named(release):
    path = str(release / f"{T_RELEASE}.weights.h5")
    with pytest.raises(WeightsMismatchError) as info:
        tf_video_swin_small().load_weights(path)
    assert (
        "does not fit this model: depth (depths): the file's is (2, 2, 6, 2), the model's "
        "(2, 2, 18, 2); build the model the file fits: tf_video_swin_tiny(num_classes=400)"
    ) in str(info.value)
    with pytest.raises(WeightsMismatchError) as info:
        tf_video_swin_base().load_weights(path)
    assert "width (embed_dim): the file's is 96, the model's 128; " in str(info.value)
    assert "heads (num_heads): the file's is (3, 6, 12, 24), the model's (4, 8, 16, 32)" in str(
        info.value
    )


SMALL = SMALL_SPEC.keras_kwargs()


@pytest.mark.parametrize(
    "file_kwargs, model_kwargs, expected",
    [
        (
            {},
            {"num_classes": 7},
            "classes (num_classes): the file's head has 10, the model's 7; build the model "
            "the file fits: TFSwinTransformer3D(embed_dim=32, depths=[1, 1, 2, 1], "
            "num_heads=[1, 2, 4, 8], window_size=(2, 3, 3), num_classes=10)",
        ),
        (
            {},
            {"include_top": False},
            "head: the file has a 10-class head, the model has none (include_top=False)",
        ),
        (
            {"include_top": False},
            {},
            "head: the file holds a backbone only, the model has a 10-class head; build the "
            "model the file fits: TFSwinTransformer3D(embed_dim=32, depths=[1, 1, 2, 1], "
            "num_heads=[1, 2, 4, 8], window_size=(2, 3, 3), include_top=False)",
        ),
        ({}, {"window_size": (2, 2, 2)}, "window (window_size): the file's is (2, 3, 3)"),
        ({}, {"patch_size": (2, 2, 2)}, "patch (patch_size): the file's is (2, 4, 4)"),
    ],
)
@pytest.mark.parametrize("suffix", [".h5", ".weights.h5"])
def test_each_mismatch_kind_is_named(tmp_path, file_kwargs, model_kwargs, expected, suffix):
    path = tmp_path / f"small{suffix}"
    save_weights(TFSwinTransformer3D(**SMALL | file_kwargs), path)
    with pytest.raises(WeightsMismatchError, match="does not fit this model") as info:
        TFSwinTransformer3D(**SMALL | model_kwargs).load_weights(str(path))
    assert expected in str(info.value)


def test_files_of_others_are_left_to_keras(tmp_path):
    path = tmp_path / "plain.weights.h5"
    TFSwinTransformer3D(**SMALL).save_weights(str(path))  # records no config
    with pytest.raises(ValueError) as info:
        TFSwinTransformer3D(**SMALL | {"num_classes": 7}).load_weights(str(path))
    assert not isinstance(info.value, WeightsMismatchError)


def test_writes_are_byte_identical(tmp_path):
    model = TFSwinTransformer3D(**SMALL)
    for suffix in (".h5", ".weights.h5"):
        first, second = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
        save_weights(model, first, preset="p", labels="k400")
        save_weights(model, second, preset="p", labels="k400")
        assert first.read_bytes() == second.read_bytes()


def test_a_file_that_does_not_load_back_exactly_is_refused(tmp_path, monkeypatch):
    # Keras' legacy loader matches by position: a writer that swaps two same-shape weights
    # gives a file that loads without complaint. The converter's exact check must catch it.
    write_seed = legacy_h5.write_seed

    def swapped(model, file):  # the final norm's beta written under gamma's name and back
        write_seed(model, file)
        gamma, beta = file["norm/norm/gamma:0"], file["norm/norm/beta:0"]
        gamma[...], beta[...] = beta[()], gamma[()]

    monkeypatch.setattr(legacy_h5, "write_seed", swapped)
    model = TFSwinTransformer3D(**SMALL)
    model.norm.gamma.assign(np.full(model.norm.gamma.shape, 2.0, "float32"))
    with pytest.raises(ConversionError, match=r"2 variables differ \(first: norm/gamma\)"):
        write_checked(model, tmp_path / "x.h5", SMALL_SPEC)


def test_class_names_survive_keras_save(tmp_path):
    names = [f"class {index}" for index in range(10)]
    model = TFSwinTransformer3D(**SMALL, class_names=names)
    model.save(tmp_path / "m.keras")
    assert keras.saving.load_model(tmp_path / "m.keras").class_names == names
    with pytest.raises(ValueError, match="class_names has 3 names but the model has 10 classes"):
        TFSwinTransformer3D(**SMALL, class_names=names[:3])


@pytest.mark.slow
def test_every_preset_from_a_full_release(tmp_path_factory, tmp_path, monkeypatch):
    folder = release_folder(tmp_path_factory)
    monkeypatch.setenv("VIDEOSWIN_WEIGHTS_URL", str(folder))
    monkeypatch.setenv("VIDEOSWIN_WEIGHTS_MANIFEST", str(folder / "manifest.json"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    builders = {
        "tiny": tf_video_swin_tiny,
        "small": tf_video_swin_small,
        "base": tf_video_swin_base,
    }
    for name, preset in presets().items():
        model = builders[preset.arch](weights=name)
        assert logits(model).shape == (1, preset.num_classes)
        assert len(model.class_names) == preset.num_classes
        legacy = builders[preset.arch](weights=str(folder / f"{preset.release}.h5"))
        np.testing.assert_array_equal(logits(model), logits(legacy))
        del model, legacy


def test_convert_out_suffix_picks_the_format(tmp_path):
    from test_convert import MINI, MINI_JSON, write_checkpoint

    from videoswin_tf.convert.converter import convert

    config = tmp_path / "mini.json"
    config.write_text(json.dumps(MINI_JSON))
    pth = write_checkpoint(tmp_path, MINI, "authors")
    out = tmp_path / "mini.h5"
    result = convert(pth, config=str(config), out=out, log=lambda _: None)
    assert result.report.passed and (tmp_path / "mini.parity.json").is_file()
    with h5py.File(out, "r") as file:
        assert len(file.attrs["layer_names"]) == 9  # the seed's groups, two without weights
    assert {path.name for path in tmp_path.iterdir()} == {
        "mini.json",
        "mini_authors.pth",
        "mini.h5",
        "mini.parity.json",
    }
    with pytest.raises(ConversionError, match=r"--out must end in \.weights\.h5 .* or \.h5"):
        convert(pth, config=str(config), out=tmp_path / "mini.keras", log=lambda _: None)
