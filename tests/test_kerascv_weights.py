"""KerasCV's Video Swin files (keras-cv 0.9: ``VideoSwinBackbone``, ``VideoClassifier``) convert
with parity against KerasCV's own model and load here by structure.

The files are written by KerasCV's code itself: a small backbone (16 channels, two blocks per
stage, window 2x7x7) built on 8x224x224 clips, every weight re-drawn to a distinct value with a
fixed seed, saved by Keras' ``save_weights`` (``*.weights.h5``) and ``save`` (``.keras``). The
clip is large enough that no stage's window shrinks (KerasCV sizes its bias tables by the
window it uses on the clip it is built on); 8 frames give 4 token frames, so the 2-frame window
shifts in time too.
"""

from __future__ import annotations

import json
import shutil

import h5py
import keras_cv
import numpy as np
import pytest
from convert_runs import convert_cli, converted, refused
from weight_stress import stress

from videoswin_tf import (
    TFSwinTransformer3D,
    VideoSwinBackbone,
    VideoSwinVideoClassifier,
    WeightsMismatchError,
    tf_video_swin_tiny,
)

ARCH = {
    "embed_dim": 16,
    "depths": [2, 2, 2, 2],
    "num_heads": [1, 2, 2, 4],
    "window_size": [2, 7, 7],
}
INPUT = (8, 224, 224, 3)
CLASSES = 5
CLIP = np.random.default_rng(1).standard_normal((1, *INPUT)).astype("float32")
RTOL = 1e-5  # max |diff| over max |reference value|
PARITY = ("--parity-frames", "8", "--parity-size", "224")  # the files' own clip
LAYOUT = "KerasCV's VideoSwinBackbone layout (keras-cv 0.9, Keras 3), read by structure"


@pytest.fixture(scope="module")
def kerascv_files(tmp_path_factory) -> dict:
    """KerasCV's classifier and backbone saved both ways, with their outputs on `CLIP`."""
    folder = tmp_path_factory.mktemp("kerascv")
    backbone = keras_cv.models.VideoSwinBackbone(input_shape=INPUT, **ARCH)
    classifier = keras_cv.models.VideoClassifier(backbone=backbone, num_classes=CLASSES)
    stress(classifier, 0)
    files = {
        "classifier.weights.h5": classifier.save_weights,
        "classifier.keras": classifier.save,
        "backbone.weights.h5": backbone.save_weights,
        "backbone.keras": backbone.save,
    }
    for name, save in files.items():
        save(str(folder / name))
    return {
        "folder": folder,
        "probabilities": np.asarray(classifier(CLIP)),
        "features": np.asarray(backbone(CLIP)),
    }


def relative_difference(got, want) -> float:
    got, want = np.asarray(got, "float64"), np.asarray(want, "float64")
    assert got.shape == want.shape
    return float(np.abs(got - want).max() / np.abs(want).max())


def softmax(logits) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize(
    "name", ["classifier.weights.h5", pytest.param("classifier.keras", marks=pytest.mark.slow)]
)
def test_load_weights_reads_kerascvs_classifier(kerascv_files, name):
    model = TFSwinTransformer3D(**ARCH, num_classes=CLASSES)
    model.load_weights(str(kerascv_files["folder"] / name))
    probabilities = softmax(np.asarray(model(CLIP), "float64"))
    assert relative_difference(probabilities, kerascv_files["probabilities"]) < RTOL


@pytest.mark.slow
def test_load_weights_reads_kerascvs_backbone(kerascv_files):
    model = TFSwinTransformer3D(**ARCH, include_top=False)
    model.load_weights(str(kerascv_files["folder"] / "backbone.weights.h5"))
    features = model.stage_features(CLIP)[-1]
    assert relative_difference(features, kerascv_files["features"]) < RTOL


def test_the_backbone_class_reads_kerascvs_archive_without_its_head(kerascv_files):
    path = str(kerascv_files["folder"] / "classifier.keras")
    backbone = VideoSwinBackbone(**ARCH)
    backbone.load_weights(path)  # the head in the file is skipped
    features = backbone.stage_features(CLIP)[-1]
    assert relative_difference(features, kerascv_files["features"]) < RTOL


@pytest.mark.slow
def test_the_classifier_class_reads_kerascvs_archive(kerascv_files):
    path = str(kerascv_files["folder"] / "classifier.keras")
    classifier = VideoSwinVideoClassifier(backbone=VideoSwinBackbone(**ARCH), num_classes=CLASSES)
    classifier.load_weights(path)
    probabilities = softmax(np.asarray(classifier(CLIP), "float64"))
    assert relative_difference(probabilities, kerascv_files["probabilities"]) < RTOL


def test_a_kerascv_file_for_another_model_is_the_clear_mismatch_error(kerascv_files):
    path = kerascv_files["folder"] / "classifier.weights.h5"
    with pytest.raises(WeightsMismatchError) as caught:
        TFSwinTransformer3D(**ARCH, num_classes=7).load_weights(str(path))
    assert str(caught.value) == (
        f"{path} does not fit this model: classes (num_classes): the file's head has 5, the "
        "model's 7; build the model the file fits: TFSwinTransformer3D(embed_dim=16, "
        "depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=(2, 7, 7), num_classes=5)"
    )


def test_kerascvs_classifier_converts_with_parity_on_probabilities(kerascv_files, tmp_path):
    lines, report = converted(
        kerascv_files["folder"] / "classifier.weights.h5",
        tmp_path / "classifier.weights.h5",
        *PARITY,
    )
    assert lines[1] == f"        {LAYOUT}, 129 tensors"
    assert lines[2] == (
        "        note: read 121 Keras weights by structure (videoswin_tf.keras3_h5); window "
        "2x7x7 from the bias tables' rows"
    )
    assert (
        "[parity] KerasCV's VideoSwinBackbone/VideoClassifier (keras-cv 0.9) loading the file "
        "itself vs Keras model loaded from the file" in lines
    )
    assert any(line.startswith("  probs    [1, 5]") for line in lines), lines
    assert report["passed"] and report["outputs"] == "probs"
    assert report["logits"]["relative"] < RTOL and report["logits"]["reference_scale"] > 0.3
    assert [stage["shape"] for stage in report["stages"]] == [
        [1, 4, 56, 56, 16],
        [1, 4, 28, 28, 32],
        [1, 4, 14, 14, 64],
        [1, 4, 7, 7, 128],
    ]
    assert all(stage["relative"] < RTOL for stage in report["stages"])


@pytest.mark.slow  # about 20 s: the trace and OpenVINO's conversion on a 8x224x224 clip
def test_export_of_kerascvs_file_computes_what_kerascv_computes(kerascv_files, tmp_path):
    """vswin-convert export --weights takes KerasCV's .weights.h5 (with a config of its
    architecture): the OpenVINO IR gives KerasCV's own probabilities."""
    import openvino

    config = tmp_path / "kerascv_small.json"
    fields = {"name": "kerascv_small", "arch": None, "patch_size": [2, 4, 4], "release": None}
    fields |= {"drop_path_rate": 0.1, "num_classes": CLASSES, "source": None}
    config.write_text(json.dumps({**ARCH, **fields, "clip_frames": 8, "clip_size": 224}))
    out = tmp_path / "ir"
    result = convert_cli(
        "export",
        *("--weights", kerascv_files["folder"] / "classifier.weights.h5"),
        *("--config", config, "--format", "openvino", "--out", out),
    )
    assert result.exit_code == 0, result.output
    precision = {"INFERENCE_PRECISION_HINT": "f32"}  # OpenVINO's default: bf16 where native
    compiled = openvino.Core().compile_model(out / "model.xml", "CPU", precision)
    probabilities = softmax(np.asarray(compiled(CLIP)[0], "float64"))
    assert relative_difference(probabilities, kerascv_files["probabilities"]) < RTOL


@pytest.mark.slow  # about 14 s: KerasCV's model and ours on a 8x224x224 clip
def test_an_old_keras_file_named_as_kerascvs_gets_kerascvs_parity(kerascv_files, tmp_path):
    """A .weights.h5 from Keras before 3.9 records no layer names; --source kerascv makes
    parity run KerasCV's own model on it."""
    nameless = tmp_path / "old_keras.weights.h5"
    shutil.copy(kerascv_files["folder"] / "classifier.weights.h5", nameless)
    with h5py.File(nameless, "r+") as file:  # visititems stops at the first non-None return
        file.visititems(lambda name, item: item.attrs.pop("name", None) and None)
    lines, report = converted(
        nameless,
        tmp_path / "converted.weights.h5",
        *("--source", "kerascv", "--parity-frames", "8", "--parity-size", "224"),
    )
    assert lines[1] == f"        {LAYOUT}, 129 tensors"
    assert lines[3] == (
        "        note: the file records no layer names (Keras before 3.9), so the rewrite's and "
        "KerasCV's files are alike: read as KerasCV's (the same weights either way; --source "
        "kerascv), with parity against the KerasCV model; if the rewrite wrote it, pass "
        "--source rewrite"
    )
    assert (
        "[parity] KerasCV's VideoSwinBackbone/VideoClassifier (keras-cv 0.9) loading the file "
        "itself vs Keras model loaded from the file" in lines
    )
    assert report["passed"] and report["logits"]["relative"] < RTOL


@pytest.mark.slow  # about 8 s: mmaction2's recognizer runs the parity clip
def test_to_torch_writes_kerascvs_file_back_with_parity(kerascv_files, tmp_path):
    out = tmp_path / "classifier.pth"
    result = convert_cli(
        *("to-torch", "--weights", str(kerascv_files["folder"] / "classifier.weights.h5")),
        *("--format", "mmaction2", "--out", str(out), "--parity-frames", "8"),
        *("--parity-size", "64"),
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "classifier.pth.parity.json").read_text())
    assert report["passed"] and report["logits"]["relative"] < RTOL


SHRUNK = (
    "its bias tables have 27, 147 and 507 rows in different stages: KerasCV built the model on "
    "a clip smaller than its window, which shrank the window of some stages, and no model of "
    "one window holds those; build the KerasCV model on a clip at least as large as the window "
    "(e.g. 32x224x224) and save it again"
)


def test_a_kerascv_model_built_on_a_clip_smaller_than_its_window_is_refused(tmp_path):
    small = keras_cv.models.VideoSwinBackbone(input_shape=(4, 64, 64, 3), **ARCH)
    path = tmp_path / "shrunk.weights.h5"
    small.save_weights(str(path))
    assert refused("--pth", path, "--no-parity") == f"error: {path}: {SHRUNK}"
    # load_weights and the builders' weights= say the same cause in the same line
    model = TFSwinTransformer3D(**ARCH, include_top=False)
    for load in (model.load_weights, VideoSwinBackbone(**ARCH).load_weights):
        with pytest.raises(WeightsMismatchError) as caught:
            load(str(path))
        assert str(caught.value) == f"{path}: {SHRUNK}"
    with pytest.raises(WeightsMismatchError) as caught:
        tf_video_swin_tiny(weights=str(path), include_top=False)
    assert str(caught.value) == f"{path}: {SHRUNK}"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["classifier.keras", "backbone.weights.h5", "backbone.keras"])
def test_kerascvs_other_files_convert_with_parity(kerascv_files, tmp_path, name):
    out = tmp_path / "converted.weights.h5"
    _, report = converted(kerascv_files["folder"] / name, out, *PARITY)
    assert report["passed"]
    assert all(stage["relative"] < RTOL for stage in report["stages"])
    if "classifier" in name:
        assert report["outputs"] == "probs" and report["logits"]["relative"] < RTOL
        model = TFSwinTransformer3D(**ARCH, num_classes=CLASSES)
        model.load_weights(str(out))
        probabilities = softmax(np.asarray(model(CLIP), "float64"))
        assert relative_difference(probabilities, kerascv_files["probabilities"]) < RTOL
    else:
        assert report["logits"] is None
        model = TFSwinTransformer3D(**ARCH, include_top=False)
        model.load_weights(str(out))
        features = model.stage_features(CLIP)[-1]
        assert relative_difference(features, kerascv_files["features"]) < RTOL


@pytest.mark.slow
def test_a_kerascv_swin_t_archive_is_a_builders_weights(tmp_path):
    """KerasCV's default backbone (Swin-T, window 8x7x7) under a 400-class classifier, built on
    16x224x224 clips (8 token frames: the window's table keeps its size)."""
    backbone = keras_cv.models.VideoSwinBackbone(input_shape=(16, 224, 224, 3))
    classifier = keras_cv.models.VideoClassifier(backbone=backbone, num_classes=400)
    stress(classifier, 2)
    path = tmp_path / "videoswin_tiny_kinetics400_classifier.keras"
    classifier.save(str(path))
    model = tf_video_swin_tiny(weights=str(path))
    assert (model.num_classes, model.window_size) == (400, (8, 7, 7))
    loaded = TFSwinTransformer3D(num_classes=400)
    loaded.load_weights(str(path))
    assert all(
        np.array_equal(np.asarray(mine), np.asarray(theirs))
        for mine, theirs in zip(model.weights, loaded.weights, strict=True)
    )
    kernel = np.asarray(classifier.get_layer("predictions").kernel)
    assert np.array_equal(np.asarray(model.head.fc_cls.kernel), kernel)
    with pytest.raises(WeightsMismatchError) as caught:
        tf_video_swin_tiny(num_classes=174).load_weights(str(path))
    assert str(caught.value) == (
        f"{path} does not fit this model: classes (num_classes): the file's head has 400, the "
        "model's 174; build the model the file fits: tf_video_swin_tiny(num_classes=400); for a "
        f"new head, load the backbone alone with tf_video_swin_tiny(weights='{path}', "
        "include_top=False)"
    )


def test_a_kerascv_classifier_pooling_by_maximum_is_refused(tmp_path):
    backbone = keras_cv.models.VideoSwinBackbone(input_shape=INPUT, **ARCH)
    classifier = keras_cv.models.VideoClassifier(backbone, num_classes=CLASSES, pooling="max")
    path = tmp_path / "max.keras"
    classifier.save(str(path))
    assert refused("--pth", path, "--no-parity") == (
        f"error: {path}: a KerasCV VideoClassifier with pooling='max' and "
        "activation='softmax'; this package's head averages and gives logits (or softmax "
        "probabilities), so only pooling='avg' with activation 'softmax' or None converts"
    )
