"""vswin-convert to-torch: converted weights back to mmaction2's and torchvision's checkpoints.

A checkpoint made by the upstream model (mmaction2's reference with `synthetic`'s values,
torchvision's own ``SwinTransformer3d`` stressed) goes .pth -> .weights.h5 -> .pth; the result
must hold every original tensor bit for bit, load with ``strict=True`` through
``torch.load(..., weights_only=True)`` into the upstream model (for mmaction2: the
``Recognizer3D`` its registry builds from its own Swin config, as its tools do), and pass
parity; mmaction2's recognizer in test mode (its data preprocessor, views averaged) scores a
clip as the Keras model does.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_convert import MINI, MINI_JSON, write_checkpoint
from test_sources import SMALL_3D
from upstream_checkpoints import save_torchvision, torchvision_swin3d

from videoswin_tf.convert.cli import main
from videoswin_tf.convert.configs.mmaction2_reader import read_config
from videoswin_tf.convert.configs.resolve import resolve_config
from videoswin_tf.convert.converter import Progress, convert
from videoswin_tf.convert.errors import ConversionError
from videoswin_tf.convert.mapping.spec import build_keras_model
from videoswin_tf.convert.outputs.torch_checkpoint import _class_names as recorded_class_names
from videoswin_tf.convert.outputs.torch_checkpoint import to_torch
from videoswin_tf.convert.parity import ParitySettings
from videoswin_tf.convert.references.mmaction2_recognizer import (
    build_recognizer,
    config_path,
    load_strictly,
    recognizer_config,
)
from videoswin_tf.convert.references.torchvision import build_torchvision
from videoswin_tf.convert.sources.checkpoint import PREPROCESSOR, numpy_globals
from videoswin_tf.convert.sources.training_objects import training_object_globals
from videoswin_tf.labels import load_labels
from videoswin_tf.video.predict import average_probabilities
from videoswin_tf.weights_file import CONFIG_ATTRIBUTE, read_file_config, save_weights

CLIP = ParitySettings(frames=8, size=48)
QUIET = {"log": lambda _: None}
RECOGNIZER = "mmaction.models.recognizers.recognizer3d.Recognizer3D"
PREPROCESSOR_CLASS = "mmaction.models.data_preprocessors.data_preprocessor.ActionDataPreprocessor"


def qualified(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def assert_bit_identical(written: dict, original: dict) -> None:
    assert sorted(written) == sorted(original)
    for key, tensor in original.items():
        assert written[key].dtype == tensor.dtype, key
        assert written[key].shape == tensor.shape, key
        assert torch.equal(written[key], tensor), key


@pytest.fixture(scope="module")
def mmaction2_pth(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("mm"), MINI, "mmaction")


@pytest.fixture(scope="module")
def torchvision_pth(tmp_path_factory) -> Path:
    model = torchvision_swin3d(**SMALL_3D, num_classes=7)
    return save_torchvision(tmp_path_factory.mktemp("tv") / "swin3d_small.pth", model)


def test_mmaction2_round_trip_is_bit_identical_and_loads_strictly(tmp_path, mmaction2_pth):
    weights = convert(mmaction2_pth, out=tmp_path / "mini.weights.h5", parity=CLIP, **QUIET)
    result = to_torch(
        weights.weights_path, "mmaction2", tmp_path / "back.pth", parity=CLIP, **QUIET
    )
    written = torch.load(tmp_path / "back.pth", weights_only=True)
    assert list(written) == ["state_dict"]
    # the source is a training run's file: its message_hub holds mmengine's HistoryBuffer
    with torch.serialization.safe_globals(numpy_globals() + training_object_globals()):
        original = torch.load(mmaction2_pth, weights_only=True)["state_dict"]
    # the input-normalisation buffers are not weights: the weights file does not carry them
    assert sorted(key for key in original if key.startswith(PREPROCESSOR)) == [
        "data_preprocessor.mean",
        "data_preprocessor.std",
    ]
    weights_only = {k: v for k, v in original.items() if not k.startswith(PREPROCESSOR)}
    assert_bit_identical(written["state_dict"], weights_only)
    assert result.tensors == len(weights_only) == 129
    recognizer = build_recognizer(weights.spec)
    assert qualified(recognizer) == RECOGNIZER
    recognizer.load_state_dict(written["state_dict"], strict=True)
    assert result.report.passed and result.report.logits.shape == (1, 11)
    assert result.report.logits.max_abs < 1e-4 and result.report.logits.reference_scale > 1.0
    saved = json.loads((tmp_path / "back.pth.parity.json").read_text())
    assert saved["passed"] is True


def test_mmaction2_recognizer_in_test_mode_scores_like_the_keras_model(tmp_path, mmaction2_pth):
    weights = convert(mmaction2_pth, out=tmp_path / "mini.weights.h5", parity=None, **QUIET)
    to_torch(weights.weights_path, "mmaction2", tmp_path / "back.pth", parity=None, **QUIET)
    recognizer = build_recognizer(weights.spec)
    assert qualified(recognizer.data_preprocessor) == PREPROCESSOR_CLASS
    recognizer.load_state_dict(
        torch.load(tmp_path / "back.pth", weights_only=True)["state_dict"], strict=True
    )
    # two views of one video in 0-255, as mmaction2's test pipeline packs them (V, C, T, H, W)
    views = np.random.default_rng(5).uniform(0, 255, (2, 3, 8, 48, 48)).astype(np.float32)
    from mmaction.structures import ActionDataSample

    data = {"inputs": [torch.from_numpy(views)], "data_samples": [ActionDataSample()]}
    with torch.no_grad():
        [sample] = recognizer.test_step(data)
    scores = sample.pred_score.numpy()
    assert scores.shape == (11,) and abs(scores.sum() - 1) < 1e-5  # average_clips='prob'

    preprocessor = recognizer_config(weights.spec)["data_preprocessor"]
    mean, std = (np.float32(preprocessor[key]).reshape(3, 1, 1, 1) for key in ("mean", "std"))
    clip = ((views - mean) / std).transpose(0, 2, 3, 4, 1)  # (V, T, H, W, 3)
    model = build_keras_model(weights.spec)
    model.load_weights(str(weights.weights_path))
    ours = average_probabilities(np.asarray(model(clip)))
    assert np.abs(ours - scores).max() < 1e-6
    assert scores.max() > 2 * scores.min()  # not a flat distribution that anything matches


def test_backbone_only_export_loads_into_a_headless_recognizer(tmp_path):
    backbone = write_checkpoint(tmp_path, MINI, "backbone_only")
    weights = convert(backbone, out=tmp_path / "bb.weights.h5", parity=None, **QUIET)
    result = to_torch(weights.weights_path, "mmaction2", tmp_path / "bb.pth", parity=CLIP, **QUIET)
    assert result.tensors == 127
    assert result.report.passed and result.report.logits is None
    assert result.report.stages[-1].shape == (1, 4, 2, 2, 128)
    assert result.report.stages[-1].max_abs < 1e-4
    recognizer = build_recognizer(weights.spec)
    assert qualified(recognizer) == RECOGNIZER and not recognizer.with_cls_head
    load_strictly(recognizer, tmp_path / "bb.pth")
    # strictness is real: the backbone file lacks what a recognizer with a head needs
    with pytest.raises(
        ConversionError,
        match=r"bb\.pth: mmaction2's Recognizer3D does not load it with strict=True \(Error\(s\) "
        r"in loading state_dict for Recognizer3D: Missing key\(s\) in state_dict: "
        r'"cls_head\.fc_cls\.weight", "cls_head\.fc_cls\.bias"\.\)$',
    ):
        load_strictly(build_recognizer(MINI), tmp_path / "bb.pth")


def test_recognizer_config_is_mmaction2s_own_with_the_models_sizes():
    spec = resolve_config("swin_b_k400")
    assert config_path(spec).name == (
        "swin-base-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb.py"
    )
    own = read_config(config_path(spec))["model"]
    ours = recognizer_config(spec)
    assert own["backbone"]["arch"] == "base" and own["backbone"]["pretrained2d"] is True
    changed = {key for key in own["backbone"] if own["backbone"][key] != ours["backbone"][key]}
    assert changed == {"arch", "pretrained", "pretrained2d"}  # same window, patch, drop path
    assert ours["backbone"]["arch"] == {
        "embed_dims": 128,
        "depths": [2, 2, 18, 2],
        "num_heads": [4, 8, 16, 32],
    }
    assert ours["backbone"]["pretrained"] is None and ours["backbone"]["pretrained2d"] is False
    assert (
        tuple(ours["backbone"]["window_size"]) == (8, 7, 7) == tuple(own["backbone"]["window_size"])
    )
    assert {key: value for key, value in ours.items() if key != "backbone"} == {
        key: value for key, value in own.items() if key != "backbone"
    }
    custom = recognizer_config(MINI.replace(num_classes=None))
    assert config_path(MINI).name.startswith("swin-tiny-") and "cls_head" not in custom


def test_torchvision_round_trip_is_bit_identical_and_loads_strictly(tmp_path, torchvision_pth):
    weights = convert(torchvision_pth, out=tmp_path / "tv.weights.h5", parity=CLIP, **QUIET)
    result = to_torch(
        weights.weights_path, "torchvision", tmp_path / "back.pth", parity=CLIP, **QUIET
    )
    written = torch.load(tmp_path / "back.pth", weights_only=True)
    original = torch.load(torchvision_pth, weights_only=True)
    assert_bit_identical(written, original)
    assert written["features.0.0.attn.relative_position_index"].dtype == torch.int64
    build_torchvision(weights.spec).load_state_dict(written, strict=True)
    assert result.report.passed and result.report.logits.shape == (1, 7)
    assert result.report.logits.max_abs < 1e-5 and result.report.logits.reference_scale > 0.5


def test_cli_writes_a_checkpoint_that_converts_again(tmp_path, mmaction2_pth):
    weights = convert(mmaction2_pth, out=tmp_path / "mini.weights.h5", parity=None, **QUIET)
    out = tmp_path / "back.pth"
    result = CliRunner().invoke(
        main,
        [
            *("to-torch", "--weights", str(weights.weights_path), "--format", "mmaction2"),
            *("--out", str(out), "--parity-frames", "8", "--parity-size", "48"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "[map] Keras variables to mmaction2 keys" in result.output
    assert "129 tensors for mmaction2's Recognizer3D" in result.output
    assert (
        "[parity] mmaction2's Recognizer3D built by its registry from its config, loading the "
        "file with strict=True vs Keras model" in result.output
    )
    assert f"wrote {out} and {tmp_path / 'back.pth.parity.json'}" in result.output
    again = convert(out, out=tmp_path / "again.weights.h5", parity=None, **QUIET)
    assert again.spec == weights.spec
    assert (tmp_path / "again.weights.h5").read_bytes() == weights.weights_path.read_bytes()


def test_bad_requests_are_one_line_errors_and_write_nothing(tmp_path, mmaction2_pth):
    backbone = write_checkpoint(tmp_path, MINI, "backbone_only")
    weights = convert(backbone, out=tmp_path / "bb.weights.h5", parity=None, **QUIET)
    with pytest.raises(ConversionError) as refused:
        to_torch(str(weights.weights_path), "torchvision", tmp_path / "bb.pth", **QUIET)
    assert str(refused.value) == (
        f"{weights.weights_path}: torchvision's SwinTransformer3d always has a classifier head "
        "and this model has none; use --format mmaction2 for a backbone"
    )
    with pytest.raises(ConversionError, match=r"^--out must end in \.pth, got .*bb\.pt$"):
        to_torch(weights.weights_path, "mmaction2", tmp_path / "bb.pt", **QUIET)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as file:
        file.create_dataset("x", data=[1.0])
    with pytest.raises(ConversionError, match=r"plain\.h5: records no Video Swin model"):
        to_torch(plain, "mmaction2", tmp_path / "plain.pth", **QUIET)
    odd = tmp_path / "odd.h5"  # a seed-layout file of a window no 7x7 seed file has
    save_weights(build_keras_model(MINI), odd)
    with h5py.File(odd, "r+") as file:
        del file.attrs[CONFIG_ATTRIBUTE]
    with pytest.raises(
        ConversionError, match=r"odd\.h5 does not fit this model: its relative position bias"
    ):
        to_torch(odd, "mmaction2", tmp_path / "odd.pth", **QUIET)
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["mini_backbone_only.pth"]


def test_help_names_both_formats():
    result = CliRunner().invoke(main, ["to-torch", "--help"])
    assert result.exit_code == 0
    assert "mmaction2: keys of mmaction2's Recognizer3D" in result.output
    assert "weights_only=True" in result.output
    assert (
        "--weights FILE The weights file to write back: a .weights.h5 the converter wrote, the "
        "seed's .h5, or the Keras 3 rewrite's (innat/VideoSwin v2) or KerasCV's (keras-cv 0.9) "
        ".weights.h5 or .keras file, read as data by structure. The model is the one the file "
        "records (for the Keras 3 ports', the one its shapes give)."
    ) in " ".join(result.output.split())
    assert "--config NAME|PATH The model of a --weights file that records none" in " ".join(
        result.output.split()
    )


def test_a_plain_save_weights_file_goes_back_with_its_config(tmp_path):
    """A fine-tuned model's plain ``model.save_weights`` records no model: refused in one line
    that names --config, then written back with it, strict-loading into mmaction2's model
    with parity."""
    config = tmp_path / "mini.json"
    config.write_text(json.dumps(MINI_JSON))
    weights = tmp_path / "finetuned.weights.h5"
    model = build_keras_model(MINI)
    model.save_weights(weights)
    with pytest.raises(ConversionError) as refused:
        to_torch(weights, "mmaction2", tmp_path / "finetuned.pth", **QUIET)
    assert str(refused.value) == (
        f"{weights}: records no Video Swin model (not a weights file written by vswin-convert, "
        "the seed's .h5, or the Keras 3 rewrite's or KerasCV's file); for a plain "
        "model.save_weights file pass the model's --config (a named config such as "
        "swin_t_k400, or a config file)"
    )
    result = CliRunner().invoke(
        main,
        [
            *("to-torch", "--weights", str(weights), "--format", "mmaction2"),
            *("--config", str(config), "--out", str(tmp_path / "finetuned.pth")),
            *("--parity-frames", "8", "--parity-size", "48"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "finetuned.pth.parity.json").read_text())
    assert report["passed"] and report["logits"]["relative"] < 1e-5
    state = torch.load(tmp_path / "finetuned.pth", weights_only=True)["state_dict"]
    assert state["cls_head.fc_cls.weight"].shape == (11, 128)


def test_the_names_of_a_recorded_label_map_go_back_and_convert_again(tmp_path):
    """A weights file that names its label map (as `make convert`'s record "labels": "k400")
    goes back with the map's names under meta.dataset_meta.classes, where mmengine's Runner
    keeps the dataset's and mmaction2's visualizer reads them; converting that .pth again
    records the same names. A label map that cannot be read is a note, not a failure."""
    model = build_keras_model(dataclasses.replace(MINI, num_classes=400))
    weights = tmp_path / "k400.weights.h5"
    save_weights(model, weights, labels="k400")
    lines = []
    to_torch(weights, "mmaction2", tmp_path / "k400.pth", parity=None, log=lines.append)
    assert "        class names: 400 under meta.dataset_meta.classes" in lines
    meta = torch.load(tmp_path / "k400.pth", weights_only=True)["meta"]
    assert meta == {"dataset_meta": {"classes": load_labels("k400")}}
    assert meta["dataset_meta"]["classes"][:2] == ["abseiling", "air drumming"]
    again = convert(tmp_path / "k400.pth", out=tmp_path / "again.weights.h5", parity=None, **QUIET)
    assert read_file_config(again.weights_path)["class_names"] == load_labels("k400")

    lines = []
    moved = {"include_top": True, "num_classes": 400, "labels": str(tmp_path / "moved.txt")}
    assert recorded_class_names(moved, Progress(lines.append)) is None
    assert lines == [
        f"        note: label map {str(tmp_path / 'moved.txt')!r} is neither a shipped one (k400, "
        "k600, sthv2) nor a file; class names not written"
    ]
