"""Class names a training run recorded in its checkpoint (``meta.dataset_meta.classes``, as
mmengine's Runner saves the dataset's metainfo) travel into the converted weights file, and from
there to vswin-predict's output and ``model.class_names``; names that do not fit the head are a
warning line, not a failure.
"""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_convert import MINI
from video_files import encode

from videoswin_tf.cli.predict import _class_names
from videoswin_tf.cli.predict import main as predict_main
from videoswin_tf.convert.cli import main as convert_main
from videoswin_tf.convert.references.synthetic import make_checkpoint, save_checkpoint
from videoswin_tf.convert.sources.checkpoint import load_checkpoint
from videoswin_tf.convert.sources.dataset_meta import MAX_RECORDED, dataset_classes
from videoswin_tf.pretrained import model_arguments, resolve
from videoswin_tf.video.model_setup import PredictSetup
from videoswin_tf.weights_file import CONFIG_ATTRIBUTE, read_file_config

UCF = MINI.replace(name="mini_ucf", num_classes=101)
NAMES = tuple(f"ucf_action_{index:03d}" for index in range(101))


def checkpoint_with_classes(path, classes, spec=UCF):
    """An mmaction2 1.x training checkpoint whose ``meta`` holds ``dataset_meta`` as
    mmengine's Runner saves it (the dataset's metainfo, with ``classes``)."""
    checkpoint = make_checkpoint(spec, "mmaction")
    checkpoint["meta"]["dataset_meta"] = {"classes": classes}
    save_checkpoint(checkpoint, path)
    return path


def run_convert(*arguments: str) -> str:
    result = CliRunner().invoke(convert_main, list(arguments), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_class_names_from_the_checkpoint_reach_vswin_predict(tmp_path):
    pth = checkpoint_with_classes(tmp_path / "ucf.pth", NAMES)
    weights = tmp_path / "ucf.weights.h5"
    output = run_convert(
        *("--pth", str(pth), "--out", str(weights), "--parity-frames", "8"),
        *("--parity-size", "48"),
    )
    assert "        note: class names: 101 from meta.dataset_meta\n" in output
    assert "PASS" in output
    assert read_file_config(weights)["class_names"] == list(NAMES)

    video = encode(tmp_path / "clip.mp4", 12, 80, 64)
    out = tmp_path / "out.json"
    result = CliRunner().invoke(
        predict_main,
        [
            str(video),
            "--weights",
            str(weights),
            "--views",
            "1x1",
            "--top",
            "3",
            "--engine",
            "tensorflow",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    [record] = json.loads(out.read_text())
    assert len(record["probabilities"]) == 101
    top = record["top"]
    assert [entry["label"] for entry in top] == [NAMES[entry["index"]] for entry in top]
    assert np.argmax(record["probabilities"]) == top[0]["index"]
    for entry in top:  # the printed lines name the classes too
        assert NAMES[entry["index"]] in result.output

    # back to mmaction2: the names go where the Runner keeps them, and come back from there
    back = tmp_path / "back.pth"
    output = run_convert(
        *("to-torch", "--weights", str(weights), "--format", "mmaction2"),
        *("--out", str(back), "--no-parity"),
    )
    assert "        class names: 101 under meta.dataset_meta.classes\n" in output
    saved = torch.load(back, weights_only=True)
    assert sorted(saved) == ["meta", "state_dict"]
    assert saved["meta"] == {"dataset_meta": {"classes": list(NAMES)}}
    assert load_checkpoint(back).class_names == NAMES


def test_a_label_file_wins_over_the_recorded_names(tmp_path):
    labels = tmp_path / "mine.txt"
    labels.write_text("".join(f"mine_{index}\n" for index in range(101)))
    setup = PredictSetup("ucf.weights.h5", {"include_top": True, "num_classes": 101}, None, None)
    recorded = dataclasses.replace(setup, class_names=NAMES)
    assert _class_names(recorded, None) == list(NAMES)
    assert _class_names(recorded, labels) == [f"mine_{index}" for index in range(101)]
    assert _class_names(setup, None) == [str(index) for index in range(101)]


def test_names_that_do_not_fit_the_head_are_a_warning_and_not_recorded(tmp_path):
    pth = checkpoint_with_classes(tmp_path / "ucf.pth", NAMES[:100])
    weights = tmp_path / "ucf.weights.h5"
    output = run_convert("--pth", str(pth), "--out", str(weights), "--no-parity")
    assert (
        "        warning: meta.dataset_meta has 100 class names but the head has 101 classes; "
        "class names not recorded (give vswin-predict --labels)\n" in output
    )
    assert "class names: " not in output
    assert "class_names" not in read_file_config(weights)


def head(classes: int | None) -> dict[str, np.ndarray]:
    return {} if classes is None else {"cls_head.fc_cls.weight": np.zeros((classes, 8))}


@pytest.mark.parametrize(
    "raw, state, names, line",
    [
        ({"state_dict": {}}, head(3), None, None),
        ({"meta": {"epoch": 3}}, head(3), None, None),
        ({"meta": {"dataset_meta": {"classes": None}}}, head(3), None, None),
        (
            {"meta": {"dataset_meta": {"classes": ["a", "b", "c"]}}},
            head(3),
            ("a", "b", "c"),
            "class names: 3 from meta.dataset_meta",
        ),
        (
            {"meta": {"dataset_meta": {"classes": ("a", 2, "c")}}},
            head(3),
            None,
            "meta.dataset_meta.classes is not a list of class names (tuple); class names not "
            "recorded",
        ),
        (
            {"meta": {"dataset_meta": {"classes": "abc"}}},
            head(3),
            None,
            "meta.dataset_meta.classes is not a list of class names (str); class names not "
            "recorded",
        ),
        (
            {"meta": {"dataset_meta": {"classes": ["a", "b", "c"]}}},
            head(None),
            None,
            "meta.dataset_meta names 3 classes but the checkpoint has no head; class names not "
            "recorded",
        ),
        (
            {"meta": {"dataset_meta": {"classes": ["x" * 1000] * 50}}},
            head(50),
            None,
            "meta.dataset_meta's 50 class names take 50200 bytes, more than a weights file "
            f"records ({MAX_RECORDED}); class names not recorded (give vswin-predict --labels)",
        ),
    ],
)
def test_dataset_classes(raw, state, names, line):
    found = dataset_classes(raw, state)
    assert (found.names, found.line) == (names, line)


def test_a_file_with_class_names_gives_the_builder_its_class_names(tmp_path):
    """``tf_video_swin_tiny(weights=file)`` sets ``model.class_names`` from these arguments."""
    path = tmp_path / "tiny_ucf.weights.h5"
    recorded = {
        "embed_dim": 96,
        "depths": [2, 2, 6, 2],
        "num_heads": [3, 6, 12, 24],
        "window_size": [8, 7, 7],
        "patch_size": [2, 4, 4],
        "include_top": True,
        "num_classes": 101,
        "preset": None,
        "labels": None,
        "class_names": list(NAMES),
    }
    with h5py.File(path, "w") as file:
        file.attrs[CONFIG_ATTRIBUTE] = json.dumps(recorded)
    source = resolve(str(path))
    assert model_arguments(source, "tiny", {})["class_names"] == list(NAMES)
    mine = ["x"] * 101
    assert model_arguments(source, "tiny", {"class_names": mine})["class_names"] == mine
    del recorded["class_names"]
    with h5py.File(path, "w") as file:
        file.attrs[CONFIG_ATTRIBUTE] = json.dumps(recorded)
    assert "class_names" not in model_arguments(resolve(str(path)), "tiny", {})


def test_predict_video_names_classes_by_the_models_class_names():
    """A model carrying ``class_names`` (from its weights file or its builder) names its top
    classes with them; given labels still win, and a model without names falls back to the
    config's labels or class numbers."""
    from types import SimpleNamespace

    from videoswin_tf.video.predict import _class_names

    named = SimpleNamespace(num_classes=3, class_names=["pour", "stir", "whisk"])
    assert _class_names(named, object(), None) == ["pour", "stir", "whisk"]
    assert _class_names(named, object(), ["a", "b", "c"]) == ["a", "b", "c"]
    unnamed = SimpleNamespace(num_classes=3, class_names=None)
    assert _class_names(unnamed, object(), None) == ["0", "1", "2"]
