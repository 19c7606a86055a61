"""vswin-convert --pth on the seed's TensorFlow SavedModel folders: only ``variables/`` is read,
as data, never the graph; parity against the seed's tf.keras model restoring the same variables
under Keras 2 (a process of its own).

The folders are written by the seed's own code (innat/VideoSwin v1) under Keras 2 with
``model.save(folder)``, as its release made them (``seed_keras2.py``, action ``"save"``), every
weight re-drawn to a distinct value; the seed's logits on the clip are saved beside them.
"""

from __future__ import annotations

import shlex
import shutil

import numpy as np
import pytest
import tensorflow as tf
from convert_runs import convert_cli, converted
from test_file_kind import error_of
from test_seed_h5 import CLIP, RTOL, run_seed, seed_reference

from videoswin_tf import (
    TFSwinTransformer3D,
    VideoSwinBackbone,
    VideoSwinVideoClassifier,
    tf_video_swin_tiny,
)
from videoswin_tf.convert.references.seed_keras2 import SEED_CODE_VARIABLE
from videoswin_tf.convert.sources import saved_model
from videoswin_tf.convert.sources.checkpoint import load_checkpoint

SMALL_SEED = {"embed_dim": 32, "depths": [1, 1, 2, 1], "num_heads": [1, 2, 4, 8]}
SMALL_FOLDER = "TFVideoSwinSmall_K400_P244_W877"
PARITY = ("--parity-frames", "8", "--parity-size", "64")  # a small clip: 8 frames of 64x64
T_K400 = "TFVideoSwinT_K400_IN1K_P244_W877_32x224"
LAYOUT = (
    "        the seed's TensorFlow SavedModel folder (innat/VideoSwin v1), variables read as "
    "data, 87 tensors"
)


@pytest.fixture(scope="module")
def seed_folder(tmp_path_factory):
    """A small seed model with a K400 head (400 classes), saved with the seed's model.save."""
    folder = tmp_path_factory.mktemp("seed")
    job = {"action": "save", "arch": SMALL_SEED, "num_classes": 400, "path": SMALL_FOLDER}
    run_seed(folder, [job | {"window_size": [8, 7, 7], "seed": 5}])
    return folder / SMALL_FOLDER


def relative_to_seed(weights, folder, **model_kwargs) -> float:
    """Max |our logits - the seed's| / max |the seed's| on `CLIP`, ours from ``weights``."""
    model = TFSwinTransformer3D(**model_kwargs)
    model.load_weights(str(weights))
    want = np.load(folder.with_suffix(".npy"))
    return float(np.abs(np.asarray(model(CLIP)) - want).max() / np.abs(want).max())


def test_the_seeds_folder_converts_to_the_seeds_logits(seed_folder, tmp_path):
    out = tmp_path / "small.weights.h5"
    result = convert_cli("--pth", str(seed_folder), "--out", str(out), "--no-parity")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:3] == [
        f"[load] {seed_folder}",
        LAYOUT,
        "        note: read 82 variables from variables/variables by the seed's object names "
        "(videoswin_tf.legacy_h5); window 8x7x7 from the bias tables' rows",
    ]
    assert "[build] inferred: custom (C=32, depths [1, 1, 2, 1], heads [1, 2, 4, 8]), window " in (
        "\n".join(lines)
    )
    kwargs = SMALL_SEED | {"window_size": (8, 7, 7), "num_classes": 400}
    assert relative_to_seed(out, seed_folder, **kwargs) < RTOL


def test_only_the_variables_are_read_never_the_graph(seed_folder, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a SavedModel's graph was loaded")

    monkeypatch.setattr(tf.saved_model, "load", refuse)
    monkeypatch.setattr(tf.keras.models, "load_model", refuse)
    broken = tmp_path / SMALL_FOLDER
    shutil.copytree(seed_folder, broken)
    (broken / "saved_model.pb").write_bytes(b"\x08not a graph: never parsed")
    (broken / "keras_metadata.pb").unlink()
    want, got = load_checkpoint(seed_folder), load_checkpoint(broken)
    assert got.source_layout == LAYOUT.strip().removesuffix(", 87 tensors")
    assert list(got.state) == list(want.state) and len(got.state) == 87
    assert all(np.array_equal(got.state[key], want.state[key]) for key in want.state)


def test_a_savedmodel_of_another_model_is_one_line(tmp_path):
    module = tf.Module()
    module.scale, module.table = tf.Variable(2.0), tf.Variable(tf.zeros((3, 4)))
    other = tmp_path / "other"
    tf.saved_model.save(module, str(other))
    assert error_of(other) == (
        f"{other}: is a SavedModel of another model than the seed's (innat/VideoSwin v1): its "
        "top-level objects are scale, signatures, table, the seed's model has patch_embed, "
        "basic_layers, norm, head; pass a PyTorch checkpoint or the seed's own files"
    )


def test_damaged_variables_are_one_line(seed_folder, tmp_path):
    broken = tmp_path / SMALL_FOLDER
    shutil.copytree(seed_folder, broken)
    data = broken / "variables" / "variables.data-00000-of-00001"
    original = data.read_bytes()
    flipped = bytes(byte ^ 0xFF for byte in original[1000:1100])
    data.write_bytes(original[:1000] + flipped + original[1100:])
    message = error_of(broken)  # the object graph is intact, a variable's checksum is not
    assert message.startswith(
        f"{broken}: its variables (variables/variables.*) could not be read (TensorBundle at "
    )
    assert "Checksum does not match" in message
    assert message.endswith("); the folder is damaged or incomplete: copy it again")
    data.write_bytes(original[: len(original) // 2])
    assert error_of(broken) == (
        f"{broken}: its variables (variables/variables.*) could not be read (Read less bytes "
        "than requested); the folder is damaged or incomplete: copy it again"
    )
    (broken / "variables" / "variables.index").unlink()
    assert error_of(broken) == (
        f"{broken}: a SavedModel folder without variables/variables.index, so it holds no "
        "variables to convert; copy the whole folder the seed's model.save wrote"
    )


def test_variables_that_fit_no_model_are_one_line(seed_folder, monkeypatch):
    """The seed's groups as read, then altered: a bias table of a 6x6 spatial window (which
    the seed never used), or a head without its bias."""
    groups = saved_model.seed_groups(seed_folder)
    monkeypatch.setattr(saved_model, "seed_groups", lambda folder: altered)
    table = "blocks/0/attn/relative_position_bias_table"
    altered = groups | {
        "TFBasicLayer4": [
            (name, np.zeros((15 * 11 * 11, 8)) if name == table else value)
            for name, value in groups["TFBasicLayer4"]
        ]
    }
    assert error_of(seed_folder) == (
        f"{seed_folder}: its variables fit no model of the seed's: its relative position bias "
        "tables have 1815 rows, which no window (Wd, Wh, Ww) with (Wh, Ww) in [(7, 7)] gives "
        "((2Wd-1)(2Wh-1)(2Ww-1) rows); pass the SavedModel folder the seed's model.save wrote"
    )
    altered = groups | {"head": groups["head"][:1]}
    assert error_of(seed_folder) == (
        f"{seed_folder}: its variables do not fit the seed's model their shapes give: group "
        "'head' holds 1 weights, the model's cls_head has 2; pass the SavedModel folder the seed's "
        "model.save wrote"
    )


def load_weights_error(load) -> str:
    with pytest.raises(ValueError) as caught:
        load()
    return str(caught.value)


def expected_refusal(folder) -> str:
    return (
        f"{folder}: is a TensorFlow SavedModel folder, not a weights file; convert its "
        f"variables once, then load {folder.name}.weights.h5: "
        f"vswin-convert --pth {folder} --out {folder.name}.weights.h5"
    )


def test_load_weights_and_weights_on_a_folder_name_the_converting_command(seed_folder):
    expected = expected_refusal(seed_folder)
    model = TFSwinTransformer3D(**SMALL_SEED, window_size=(8, 7, 7), num_classes=400)
    assert load_weights_error(lambda: model.load_weights(str(seed_folder))) == expected
    assert load_weights_error(lambda: tf_video_swin_tiny(weights=str(seed_folder))) == expected
    backbone = VideoSwinBackbone(**SMALL_SEED, window_size=(8, 7, 7))
    assert load_weights_error(lambda: backbone.load_weights(str(seed_folder))) == expected
    classifier = VideoSwinVideoClassifier(backbone, num_classes=400)
    assert load_weights_error(lambda: classifier.load_weights(str(seed_folder))) == expected


@pytest.mark.slow
def test_the_printed_command_converts_with_parity_against_the_seeds_model(
    seed_folder, tmp_path, monkeypatch
):
    """The command load_weights prints works as printed: it converts with parity against the
    seed's model restoring the folder, and the file it writes gives the seed's logits."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(SEED_CODE_VARIABLE, str(seed_reference()))
    printed = expected_refusal(seed_folder).rpartition(".weights.h5: ")[2]  # the command, last
    command = shlex.split(printed)
    assert command[0] == "vswin-convert"
    result = convert_cli(*command[1:], *PARITY)
    assert result.exit_code == 0, result.output
    assert (
        "[parity] the seed's tf.keras model (innat/VideoSwin v1, Keras 2) restoring the "
        "SavedModel's variables itself vs Keras model loaded from the file"
    ) in result.output.splitlines()
    passed = [line for line in result.output.splitlines() if line.startswith("  PASS: ")]
    assert len(passed) == 1, result.output
    relative = float(passed[0].split("relative ")[1].split(" ")[0])
    assert relative < RTOL
    kwargs = SMALL_SEED | {"window_size": (8, 7, 7), "num_classes": 400}
    assert relative_to_seed(tmp_path / f"{SMALL_FOLDER}.weights.h5", seed_folder, **kwargs) < RTOL


@pytest.mark.slow
def test_the_seeds_swin_t_k400_folder_converts_with_parity(tmp_path, monkeypatch):
    """The seed's own builder, tf_video_swin_tiny(num_classes=400), saved as its release did."""
    run_seed(tmp_path, [{"action": "save", "arch": "tiny", "num_classes": 400, "path": T_K400}])
    folder = tmp_path / T_K400
    monkeypatch.setenv(SEED_CODE_VARIABLE, str(seed_reference()))
    out = tmp_path / f"{T_K400}.weights.h5"
    lines, _ = converted(folder, out, *PARITY)
    assert lines[1] == LAYOUT.replace("87 tensors", "185 tensors")
    assert lines[2].startswith("        note: read 173 variables from variables/variables ")
    assert (
        "[build] inferred: tiny (C=96, depths [2, 2, 6, 2], heads [3, 6, 12, 24]), window "
        "(8, 7, 7), 400 classes"
    ) in lines
    passed = [line for line in lines if line.startswith("  PASS: ")]
    assert len(passed) == 1 and float(passed[0].split("relative ")[1].split(" ")[0]) < RTOL
    assert relative_to_seed(out, folder, window_size=(8, 7, 7), num_classes=400) < RTOL


@pytest.mark.slow
def test_a_folder_with_optimizer_and_metric_variables_converts(tmp_path, monkeypatch):
    """A model compiled and trained a step before model.save: the optimizer's slots and the
    metric's counters are in variables/ too, and are not the model's."""
    job = {"action": "save", "arch": SMALL_SEED, "num_classes": 400, "path": SMALL_FOLDER}
    run_seed(tmp_path, [job | {"window_size": [8, 7, 7], "seed": 6, "trained": True}])
    folder = tmp_path / SMALL_FOLDER
    reader = tf.train.load_checkpoint(str(folder / "variables" / "variables"))
    assert any(key.startswith("optimizer/") for key in reader.get_variable_to_shape_map())
    monkeypatch.setenv(SEED_CODE_VARIABLE, str(seed_reference()))
    out = tmp_path / "trained.weights.h5"
    lines, _ = converted(folder, out, *PARITY)
    assert lines[1] == LAYOUT
    passed = [line for line in lines if line.startswith("  PASS: ")]
    assert len(passed) == 1 and float(passed[0].split("relative ")[1].split(" ")[0]) < RTOL
    kwargs = SMALL_SEED | {"window_size": (8, 7, 7), "num_classes": 400}
    assert relative_to_seed(out, folder, **kwargs) < RTOL
