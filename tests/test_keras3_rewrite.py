"""The Keras 3 rewrite's files (innat/VideoSwin v2) load here and convert with parity.

The files are written by the rewrite's own code (``shared/reference/innat_videoswin/v2``, found
as tests/test_seed_h5.py finds the seed's): a small classifier from its ``VideoSwinT`` builder
and that classifier's backbone, every weight re-drawn to a distinct value, saved as its users
save them (``save_weights("*.weights.h5")``, ``save("*.keras")``). The clip is 4x224x224: the
rewrite sizes each stage's bias tables by the window its input allows, so the stages must be at
least a window wide (7x7 tokens at the last stage) for its files to fit any fixed-window model;
a file of a model built on narrower clips is named.
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from convert_runs import converted, refused
from keras import ops
from upstream_code import upstream_code
from weight_stress import stress

from videoswin_tf import (
    TFSwinTransformer3D,
    VideoSwinBackbone,
    VideoSwinVideoClassifier,
    WeightsMismatchError,
    tf_video_swin_tiny,
)
from videoswin_tf.convert.errors import ConversionError
from videoswin_tf.convert.mapping.rules import extract
from videoswin_tf.convert.mapping.spec import ModelSpec
from videoswin_tf.convert.references.keras3_rewrite import REWRITE_CODE_VARIABLE, rewrite_forward
from videoswin_tf.convert.sources.checkpoint import load_checkpoint
from videoswin_tf.convert.sources.keras3_rewrite import KERAS3_REWRITE
from videoswin_tf.convert.sources.kerascv import KERASCV
from videoswin_tf.keras3_h5 import REWRITE, open_weights
from videoswin_tf.weights_file import read_file_config

ARGUMENTS = {  # the rewrite's VideoSwinT builder arguments of the small model
    "input_shape": (4, 224, 224, 3),
    "window_size": (2, 7, 7),
    "embed_size": 16,
    "depths": [1, 1, 2, 1],
    "num_heads": [1, 2, 2, 4],
    "num_classes": 7,
}
OURS = {  # the same model here
    "embed_dim": 16,
    "depths": [1, 1, 2, 1],
    "num_heads": [1, 2, 2, 4],
    "window_size": (2, 7, 7),
    "in_channels": 128,
}
CLIP = np.random.default_rng(0).standard_normal((1, 4, 224, 224, 3)).astype("float32")
FILES = ("classifier.weights.h5", "classifier.keras", "backbone.weights.h5", "backbone.keras")
RTOL = 1e-5  # max |diff| over max |reference|
HEAD = ("predictions", 0.3)  # the head's kernel N(0, 0.3) (`weight_stress.stress`)


def rewrite_reference() -> Path:
    """The folder holding the rewrite's ``videoswin`` package (`upstream_code`)."""
    return upstream_code(REWRITE_CODE_VARIABLE, "v2", "the Keras 3 rewrite's code")


@contextlib.contextmanager
def rewrite_package():
    """The rewrite's ``videoswin`` package, imported for the ``with`` block only (the seed's
    package has the same name)."""
    folder = str(rewrite_reference())
    sys.path.insert(0, folder)
    try:
        yield importlib.import_module("videoswin")
    finally:
        sys.path.remove(folder)
        for name in [name for name in sys.modules if name.split(".")[0] == "videoswin"]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def rewrite_files(tmp_path_factory):
    """The four files, written by the rewrite's code, and its outputs on `CLIP`:
    ``{"folder", "probabilities" (1, 7), "features" (1, 2, 7, 7, 128)}``."""
    folder = tmp_path_factory.mktemp("rewrite")
    with rewrite_package() as rewrite:
        classifier = rewrite.VideoSwinT(**ARGUMENTS)
        stress(classifier, 1, head=HEAD)
        backbone = classifier.layers[1]
        classifier.save_weights(str(folder / "classifier.weights.h5"))
        classifier.save(str(folder / "classifier.keras"))
        backbone.save_weights(str(folder / "backbone.weights.h5"))
        backbone.save(str(folder / "backbone.keras"))
        # built on 112x112 clips: the last stage is narrower than the 7x7 window (3x3 tokens as
        # the rewrite counts them), so its tables there have 3x5x5 = 75 rows, not 3x13x13
        narrow = rewrite.VideoSwinT(**ARGUMENTS | {"input_shape": (4, 112, 112, 3)})
        narrow.save_weights(str(folder / "narrow.weights.h5"))
        outputs = {
            "probabilities": ops.convert_to_numpy(classifier(CLIP, training=False)),
            "features": ops.convert_to_numpy(backbone(CLIP, training=False)),
        }
    return {"folder": folder, **outputs}


def relative(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


@pytest.mark.parametrize("name", FILES)
def test_load_weights_gives_the_rewrites_outputs(rewrite_files, name):
    path = rewrite_files["folder"] / name
    head = name.startswith("classifier")
    model = TFSwinTransformer3D(**OURS, num_classes=7, include_top=head)
    model.load_weights(str(path))
    if head:
        probabilities = ops.convert_to_numpy(ops.softmax(model(CLIP)))
        assert relative(probabilities, rewrite_files["probabilities"]) < RTOL
        assert probabilities.argmax() == rewrite_files["probabilities"].argmax()
    else:
        features = ops.convert_to_numpy(model.stage_features(CLIP)[-1])
        assert relative(features, rewrite_files["features"]) < RTOL


@pytest.mark.parametrize("name", ["classifier.weights.h5", "backbone.keras"])
def test_the_backbone_class_takes_the_backbone_of_a_file(rewrite_files, name):
    backbone = VideoSwinBackbone(**{key: OURS[key] for key in OURS if key != "in_channels"})
    backbone.load_weights(str(rewrite_files["folder"] / name))
    features = ops.convert_to_numpy(backbone.stage_features(CLIP)[-1])
    assert relative(features, rewrite_files["features"]) < RTOL


def test_the_classifier_class_takes_a_classifier_file(rewrite_files):
    backbone = VideoSwinBackbone(**{key: OURS[key] for key in OURS if key != "in_channels"})
    classifier = VideoSwinVideoClassifier(backbone, num_classes=7)
    classifier.load_weights(str(rewrite_files["folder"] / "classifier.keras"))
    probabilities = ops.convert_to_numpy(ops.softmax(classifier(CLIP)))
    assert relative(probabilities, rewrite_files["probabilities"]) < RTOL


@pytest.mark.parametrize("name", FILES)
def test_the_model_a_file_fits_is_read_off_its_shapes(rewrite_files, name):
    head = name.startswith("classifier")
    assert read_file_config(rewrite_files["folder"] / name) == {
        "embed_dim": 16,
        "depths": [1, 1, 2, 1],
        "num_heads": [1, 2, 2, 4],
        "window_size": [2, 7, 7],
        "patch_size": [2, 4, 4],
        "include_top": head,
        "num_classes": 7 if head else None,
        "preset": None,
        "labels": None,
    }


def test_a_file_for_another_model_is_named_with_the_call_that_fits_it(rewrite_files):
    folder = rewrite_files["folder"]
    fits = (
        "build the model the file fits: TFSwinTransformer3D(embed_dim=16, depths=[1, 1, 2, 1], "
        "num_heads=[1, 2, 2, 4], window_size=(2, 7, 7)"
    )
    cases = [
        (OURS | {"window_size": (2, 4, 4)}, 7, True, "classifier.weights.h5",
         "window (window_size): the file's is (2, 7, 7), the model's (2, 4, 4)",
         ", num_classes=7)"),
        (OURS, 5, True, "classifier.keras",
         "classes (num_classes): the file's head has 7, the model's 5", ", num_classes=7)"),
        (OURS, 7, True, "backbone.weights.h5",
         "head: the file holds a backbone only, the model has a 7-class head",
         ", include_top=False)"),
    ]  # fmt: skip
    for arguments, classes, head, name, difference, call in cases:
        model = TFSwinTransformer3D(**arguments, num_classes=classes, include_top=head)
        with pytest.raises(WeightsMismatchError) as caught:
            model.load_weights(str(folder / name))
        assert str(caught.value) == (
            f"{folder / name} does not fit this model: {difference}; {fits}{call}"
        )


def test_a_file_of_a_model_built_on_narrow_clips_is_named(rewrite_files):
    path = rewrite_files["folder"] / "narrow.weights.h5"
    with pytest.raises(WeightsMismatchError) as caught:
        TFSwinTransformer3D(**OURS, num_classes=7).load_weights(str(path))
    assert str(caught.value) == (  # the cause, as vswin-convert --pth says it
        f"{path}: its bias tables have 75 and 507 rows in different stages: the rewrite built "
        "the model on a clip smaller than its window, which shrank the window of some stages, "
        "and no model of one window holds those; build the rewrite's model on a clip at least "
        "as large as the window (e.g. 32x224x224) and save it again"
    )


def test_the_same_groups_under_kerascvs_layer_names_are_left_to_its_reader(rewrite_files, tmp_path):
    """KerasCV's port saves the same groups; Keras 3.9+ records each layer's name, and KerasCV
    names the patch embedding ``videoswin_patching_and_embedding``. Without recorded names
    (older Keras) a file is read as the rewrite's."""
    renamed, nameless = tmp_path / "kerascv.weights.h5", tmp_path / "old_keras.weights.h5"
    for copy in (renamed, nameless):
        shutil.copy(rewrite_files["folder"] / "backbone.weights.h5", copy)
    embedding = "layers/video_swin_patching_and_embedding/vars"
    with h5py.File(renamed, "r+") as file:
        file[embedding].attrs["name"] = "videoswin_patching_and_embedding"
    with h5py.File(nameless, "r+") as file:  # visititems stops at the first non-None return
        file.visititems(lambda name, item: item.attrs.pop("name", None) and None)
    with open_weights(renamed, REWRITE) as found:
        assert found is None
    with open_weights(nameless, REWRITE) as found:
        assert found is not None and not found[1].head and len(found[1].stages) == 4


def test_a_weights_file_without_layer_names_converts_as_the_rewrites(rewrite_files, tmp_path):
    """Keras before 3.9 records no layer names: such a .weights.h5 of either code goes to the
    one documented default, the rewrite, and the [load] notes say so."""
    nameless = tmp_path / "old_keras.weights.h5"
    shutil.copy(rewrite_files["folder"] / "backbone.weights.h5", nameless)
    with h5py.File(nameless, "r+") as file:
        file.visititems(lambda name, item: item.attrs.pop("name", None) and None)
        names = []
        file.visititems(lambda name, item: names.append(name) if "name" in item.attrs else None)
    assert names == []
    loaded = load_checkpoint(nameless)
    assert loaded.source is KERAS3_REWRITE
    assert loaded.notes[1] == (
        "the file records no layer names (Keras before 3.9), so the rewrite's and KerasCV's "
        "files are alike: read as the rewrite's (the same weights either way; the default), with "
        "parity against the rewrite's model; if KerasCV wrote it, pass --source kerascv"
    )
    # the user who knows KerasCV wrote it says so, and gets KerasCV's reference
    loaded = load_checkpoint(nameless, source="kerascv")
    assert loaded.source is KERASCV and loaded.source_layout == KERASCV.name
    assert loaded.notes[1] == (
        "the file records no layer names (Keras before 3.9), so the rewrite's and KerasCV's "
        "files are alike: read as KerasCV's (the same weights either way; --source kerascv), "
        "with parity against the KerasCV model; if the rewrite wrote it, pass --source rewrite"
    )
    assert loaded.state.keys() == load_checkpoint(nameless).state.keys()


def test_source_is_refused_for_a_file_that_names_its_code(rewrite_files):
    path = rewrite_files["folder"] / "backbone.weights.h5"  # Keras 3.9+: names recorded
    assert refused("--pth", path, "--no-parity", "--source", "kerascv") == (
        f"error: {path}: its layer names are the rewrite's (written by the rewrite), not "
        "KerasCV's; leave out --source kerascv (it only picks the code for a .weights.h5 that "
        "records no layer names)"
    )


@pytest.mark.parametrize("name", FILES)
def test_the_converter_reads_them_as_data_into_the_canonical_state(rewrite_files, name):
    path = rewrite_files["folder"] / name
    loaded = load_checkpoint(path)
    head = name.startswith("classifier")
    kind = ".keras archive" if name.endswith(".keras") else ".weights.h5"
    assert loaded.source is KERAS3_REWRITE and loaded.file == path and loaded.has_head == head
    assert loaded.source_layout == (
        f"the Keras 3 rewrite's layout (innat/VideoSwin v2), read by structure ({kind})"
    )
    window = "config.json" if name.endswith(".keras") else "the bias tables' rows"
    notes = [
        f"read {82 if head else 80} Keras weights by structure (videoswin_tf.keras3_h5); "
        f"window 2x7x7 from {window}"
    ]
    if head:
        notes.append(
            "the head ends in softmax "
            + ("(config.json)" if name.endswith(".keras") else "(the rewrite's default)")
        )
    assert loaded.notes == notes
    model = TFSwinTransformer3D(**OURS, num_classes=7, include_top=head)
    model.load_weights(str(path))
    expected = extract(model)
    assert sorted(loaded.state) == sorted(expected)
    assert all(np.array_equal(loaded.state[key], expected[key]) for key in expected)


def test_parity_without_the_rewrites_code_says_how_to_get_it(rewrite_files, monkeypatch):
    monkeypatch.delenv(REWRITE_CODE_VARIABLE, raising=False)
    loaded = load_checkpoint(rewrite_files["folder"] / "classifier.keras")
    spec = ModelSpec("small", 16, (1, 1, 2, 1), (1, 2, 2, 4), (2, 7, 7), num_classes=7)
    with pytest.raises(ConversionError) as caught:
        rewrite_forward(spec, loaded, CLIP)
    assert str(caught.value) == (
        "parity for the Keras 3 rewrite's files runs the rewrite's own model: set "
        "VIDEOSWIN_REWRITE_REFERENCE to the folder that holds its videoswin package (a "
        "checkout of innat/VideoSwin v2), or pass --no-parity"
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", FILES)
def test_vswin_convert_passes_parity_against_the_rewrites_own_model(
    rewrite_files, name, tmp_path, monkeypatch
):
    monkeypatch.setenv(REWRITE_CODE_VARIABLE, str(rewrite_reference()))
    out = tmp_path / "converted.weights.h5"
    lines, _ = converted(rewrite_files["folder"] / name, out, "--parity-frames", "4")
    verdict = next(line for line in lines if line.strip().startswith(("PASS", "FAIL")))
    if name.startswith("classifier"):
        assert any(line.strip().startswith("probs    [1, 7]") for line in lines)
    assert verdict.strip().startswith("PASS: max |diff| ")
    assert sum(line.strip().startswith("stage ") for line in lines) == 4
    model = TFSwinTransformer3D(**OURS, num_classes=7, include_top=name.startswith("classifier"))
    model.load_weights(str(out))
    features = ops.convert_to_numpy(model.stage_features(CLIP)[-1])
    assert relative(features, rewrite_files["features"]) < RTOL


@pytest.mark.slow
def test_a_swin_t_classifier_file_as_the_rewrite_publishes_it_loads_by_weights(tmp_path):
    """The rewrite's published shape: ``VideoSwinT(num_classes=400)`` with its defaults
    (32x224x224 clip, 8x7x7 window, softmax), under its release file name."""
    path = tmp_path / "videoswin_tiny_kinetics400_classifier.weights.h5"
    clip = np.random.default_rng(3).standard_normal((1, 32, 224, 224, 3)).astype("float32")
    with rewrite_package() as rewrite:
        classifier = rewrite.VideoSwinT(num_classes=400)
        stress(classifier, 2, head=HEAD)
        classifier.save_weights(str(path))
        expected = ops.convert_to_numpy(classifier(clip, training=False))
    model = tf_video_swin_tiny(weights=str(path))
    assert (model.num_classes, model.window_size) == (400, (8, 7, 7))
    probabilities = ops.convert_to_numpy(ops.softmax(model(clip)))
    assert relative(probabilities, expected) < RTOL
    assert (np.argsort(-probabilities[0])[:5] == np.argsort(-expected[0])[:5]).all()
