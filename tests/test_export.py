"""`vswin-convert export`: SavedModel and ONNX exports, each run next to the Keras model."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import onnxruntime
import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import SMALL_SPEC

import videoswin_tf.convert.outputs.export
from videoswin_tf.convert.cli import main
from videoswin_tf.convert.mapping.spec import build_keras_model

MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


def run_cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def model_files(folder: Path, stem: str, spec) -> tuple[Path, Path, keras.Model]:
    """A config file for ``spec`` (``<stem>.json``), a weights file of a model of it seeded
    with 0 (``<stem>.weights.h5``), and that model."""
    config = folder / f"{stem}.json"
    config.write_text(json.dumps({**dataclasses.asdict(spec), "arch": None}))
    keras.utils.set_random_seed(0)
    model = build_keras_model(spec)
    weights = folder / f"{stem}.weights.h5"
    model.save_weights(weights)
    return config, weights, model


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, Path, keras.Model]:
    """A config file for SMALL_SPEC, a weights file of a seeded model, and that model."""
    return model_files(tmp_path_factory.mktemp("small"), "small", SMALL_SPEC)


def clip(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def export(files: tuple[Path, Path, keras.Model], fmt: str, out: Path, *options) -> str:
    """``vswin-convert export`` of ``files``' weights (`model_files`) to ``out`` in ``fmt``,
    which must pass its parity check; its output."""
    config, weights, _ = files
    result = run_cli(
        "export", "--weights", weights, "--config", config, "--format", fmt, "--out", out, *options
    )
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output
    return result.output


def runs_as(model: keras.Model, run, shape) -> np.ndarray:
    """``run`` (an export called on a float clip) on a seeded clip of ``shape``, asserted to
    give ``model``'s logits within 1e-4."""
    x = clip(shape)
    got = run(x)
    np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4, rtol=0)
    return got


def test_saved_model_serves_a_named_clip_and_uint8_frames(tmp_path, small):
    model = small[2]
    out = tmp_path / "small_saved_model"
    output = export(small, "saved_model", out, "--any-batch")
    assert "serving_default (clip)" in output
    assert "serve_frames (uint8)" in output

    loaded = tf.saved_model.load(str(out))
    assert set(loaded.signatures) == {"serving_default", "serve_frames"}
    serve = loaded.signatures["serving_default"]
    (spec,) = serve.structured_input_signature[1].values()
    assert (spec.name, spec.dtype, tuple(spec.shape)) == ("clip", tf.float32, (None, 4, 32, 32, 3))
    runs_as(model, lambda x: serve(clip=tf.constant(x))["logits"].numpy(), (3, 4, 32, 32, 3))

    # The uint8 endpoint normalizes with the training mean and std, written out here.
    frames = np.random.default_rng(2).integers(0, 256, (2, 4, 32, 32, 3), dtype=np.uint8)
    by_hand = (frames.astype(np.float32) - MEAN) / STD
    served = loaded.signatures["serve_frames"](frames=tf.constant(frames))["logits"].numpy()
    np.testing.assert_allclose(served, model(by_hand).numpy(), atol=1e-4, rtol=0)
    assert np.abs(served - model(frames.astype(np.float32)).numpy()).max() > 1e-2


def test_export_help_names_every_file_load_weights_reads():
    result = run_cli("export", "--help")
    assert result.exit_code == 0
    assert (
        "Weights of the --config's model, in any file load_weights reads: a .weights.h5 the "
        "converter wrote, an .h5 in the seed's Keras 2 layout (TFVideoSwin*.h5), the Keras 3 "
        "rewrite's (innat/VideoSwin v2) or KerasCV's (keras-cv 0.9) .weights.h5 or .keras, or a "
        "model.save .keras of this package's model."
    ) in " ".join(result.output.split())


def test_export_help_examples_name_the_weights_make_convert_writes():
    """Every example can be pasted after `make convert`: its --weights is the file that
    writes (the Makefile's DEMO_WEIGHTS), not a placeholder."""
    (demo,) = re.findall(r"^DEMO_WEIGHTS := (\S+)$", Path("Makefile").read_text(), re.MULTILINE)
    result = run_cli("export", "--help")
    assert result.exit_code == 0
    examples = result.output.split("Examples:")[1].split("Options:")[0]
    assert re.findall(r"--weights (\S+)", examples) == [demo] * 3


@pytest.mark.slow  # about 10 s: two SavedModel exports
@pytest.mark.parametrize("name", ["small_seed_layout.h5", "small.keras"])
def test_the_seeds_layout_and_a_keras_archive_export(tmp_path, small, name):
    """The .h5 in the seed's Keras 2 layout and a model.save archive export as the
    .weights.h5 does: the export serves the model's own logits."""
    from videoswin_tf.weights_file import save_weights

    config, _, model = small
    weights = tmp_path / name
    save_weights(model, weights) if name.endswith(".h5") else model.save(weights)
    out = tmp_path / "exported"
    export((config, weights, model), "saved_model", out)
    serve = tf.saved_model.load(str(out)).signatures["serving_default"]
    runs_as(model, lambda x: serve(clip=tf.constant(x))["logits"].numpy(), (1, 4, 32, 32, 3))


def test_onnx_runs_in_onnx_runtime_with_parity(tmp_path, small):
    model = small[2]
    out = tmp_path / "small.onnx"
    output = export(small, "onnx", out, "--frames", 6, "--size", 40, "--batch", 2)
    assert "clip (onnxruntime)" in output

    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (onnx_input,) = session.get_inputs()
    assert (onnx_input.name, onnx_input.shape) == ("clip", [2, 6, 40, 40, 3])
    logits = runs_as(model, lambda x: session.run(["logits"], {"clip": x})[0], (2, 6, 40, 40, 3))
    assert logits.shape == (2, SMALL_SPEC.num_classes)


@pytest.fixture(scope="module")
def window877(tmp_path_factory) -> tuple[Path, Path, keras.Model]:
    """Like `small` with Swin-T's window, so that biases (heads, 392, 392) and masks
    (windows, 392, 392) weigh what they weigh there, and two blocks in stage 0 (the second
    shifted on a 16x56x56 clip's 8x14x14 map)."""
    spec = dataclasses.replace(SMALL_SPEC, depths=(2, 1, 1, 1), window_size=(8, 7, 7))
    return model_files(tmp_path_factory.mktemp("window877"), "window877", spec)


def test_onnx_computes_attention_biases_and_masks_at_run_time(tmp_path, window877):
    """tf2onnx folds each block's gathered bias and each shifted block's mask into constants
    (this model's file was 1.92x its weights); the export rebuilds them from the bias tables
    and small index and label vectors, so the file is about the size of the weights."""
    import onnx

    _, weights, model = window877
    out = tmp_path / "window877.onnx"
    export(window877, "onnx", out, "--frames", 16, "--size", 56)

    assert out.stat().st_size <= 1.1 * weights.stat().st_size
    graph = onnx.load(out).graph
    gathers = [n.name for n in graph.node if n.op_type == "Gather" and "runtime_bias" in n.name]
    assert len(gathers) == 5  # one per block
    assert sum(n.op_type == "Where" and n.name.endswith("/where") for n in graph.node) == 1
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    runs_as(model, lambda x: session.run(["logits"], {"clip": x})[0], (1, 16, 56, 56, 3))


@pytest.mark.slow
def test_openvino_ir_read_from_the_onnx_export_keeps_its_size(tmp_path, window877):
    """The IR is read from the ONNX export, keeping its run-time biases and masks (converted
    from the traced function, this model's IR was 1.79x its weights)."""
    import openvino

    _, weights, model = window877
    out = tmp_path / "window877_openvino"
    export(window877, "openvino", out, "--frames", 16, "--size", 56)

    assert sorted(p.name for p in out.iterdir()) == ["model.bin", "model.xml"]
    assert (out / "model.bin").stat().st_size <= 1.1 * weights.stat().st_size
    ir = openvino.Core().read_model(out / "model.xml")
    ops = ir.get_ops()
    gathers = [op for op in ops if "runtime_bias" in op.get_friendly_name()]
    assert sum(op.get_type_name() == "Gather" for op in gathers) == 5  # one per block
    assert sum(op.get_type_name() == "Select" for op in ops) == 1  # the shifted block's mask
    compiled = openvino.Core().compile_model(ir, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    runs_as(model, lambda x: compiled(x)[0], (1, 16, 56, 56, 3))


def test_export_that_differs_fails_and_writes_nothing(tmp_path, small, monkeypatch):
    config, weights, _ = small
    original = videoswin_tf.convert.outputs.export.keras_logits
    monkeypatch.setattr(
        videoswin_tf.convert.outputs.export, "keras_logits", lambda m, x: original(m, x) + 1e-3
    )
    out = tmp_path / "small.onnx"
    result = run_cli(
        "export", "--weights", weights, "--config", config, "--format", "onnx", "--out", out
    )
    assert result.exit_code == 1
    assert "FAIL: max |diff| 1.00" in result.output and "(atol 0.0001)" in result.output
    assert "differs from the Keras model" in result.output
    assert list(tmp_path.iterdir()) == []


def test_export_bad_input_is_one_clear_line(tmp_path, small):
    config, weights, _ = small
    result = run_cli(
        "export",
        "--weights",
        tmp_path / "none.weights.h5",
        "--config",
        config,
        "--format",
        "onnx",
        "--out",
        tmp_path / "x.onnx",
    )
    assert result.exit_code == 2
    assert "none.weights.h5 not found; convert a checkpoint first" in result.output

    existing = tmp_path / "x.onnx"
    existing.write_text("keep me")
    result = run_cli(
        "export", "--weights", weights, "--config", config, "--format", "onnx", "--out", existing
    )
    assert result.exit_code == 2
    assert "x.onnx exists; pass --force to overwrite it" in result.output
    assert existing.read_text() == "keep me"

    result = run_cli(
        "export",
        "--weights",
        weights,
        "--config",
        "swin_t_k400",
        "--format",
        "onnx",
        "--out",
        tmp_path / "y.onnx",
    )
    assert result.exit_code == 2
    assert "does not load into swin_t_k400" in result.output


def test_without_config_the_model_the_weights_file_records(tmp_path, small):
    """A file that records its model needs no --config (as to-torch); a plain
    model.save_weights file, which records none, is one line saying to pass it."""
    from videoswin_tf.convert.outputs.export import file_config, recorded_spec
    from videoswin_tf.weights_file import save_weights

    _, plain, model = small
    recorded = tmp_path / "recorded.weights.h5"
    save_weights(model, recorded)
    spec = recorded_spec(recorded, file_config(recorded))  # no clip recorded: 32x224
    assert spec == SMALL_SPEC.replace(
        name="recorded", drop_path_rate=spec.drop_path_rate, clip_frames=32, clip_size=224
    )
    result = run_cli("export", "--weights", plain, "--format", "onnx", "--out", tmp_path / "x.onnx")
    assert result.exit_code == 2
    assert result.output == (
        f"error: {plain}: records no Video Swin model (not a weights file written by "
        "vswin-convert, the seed's .h5, or the Keras 3 rewrite's or KerasCV's file); for a plain "
        "model.save_weights file pass the model's --config (a named config such as swin_t_k400, "
        "or a config file)\n"
    )
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.slow  # about 5 s: a SavedModel export
def test_export_without_config_serves_the_recorded_model(tmp_path, small):
    from videoswin_tf.weights_file import save_weights

    _, _, model = small
    weights = tmp_path / "recorded.weights.h5"
    save_weights(model, weights)
    out = tmp_path / "exported"
    options = ["--format", "saved_model", "--out", out, "--frames", "4", "--size", "32"]
    result = run_cli("export", "--weights", weights, *options)
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output
    serve = tf.saved_model.load(str(out)).signatures["serving_default"]
    runs_as(model, lambda x: serve(clip=tf.constant(x))["logits"].numpy(), (1, 4, 32, 32, 3))


@pytest.mark.parametrize(
    "fmt, message",
    [
        ("onnx", "{out} is a folder; name the ONNX file to write, e.g. {out}/model.onnx"),
        (
            "saved_model",
            "{out} is a folder without saved_model.pb, not an earlier saved_model export, so it "
            "is not replaced; choose a new folder for --out",
        ),
        (
            "openvino",
            "{out} is a folder without model.xml, not an earlier openvino export, so it is not "
            "replaced; choose a new folder for --out",
        ),
    ],
)
def test_force_replaces_only_an_earlier_export(tmp_path, small, fmt, message):
    """--force once deleted any folder given as --out (shutil.rmtree), with all it held."""
    config, weights, _ = small
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.txt").write_text("keep me")
    options = ["--format", fmt, "--out", out, "--force"]
    result = run_cli("export", "--weights", weights, "--config", config, *options)
    assert result.exit_code == 2
    assert result.output == f"error: {message.format(out=out)}\n"
    assert (out / "chapter1.txt").read_text() == "keep me"


def test_an_onnx_export_is_named_onnx(tmp_path, small):
    config, weights, _ = small
    out = tmp_path / "x.txt"
    options = ["--format", "onnx", "--out", out]
    result = run_cli("export", "--weights", weights, "--config", config, *options)
    assert result.exit_code == 2
    assert result.output == (
        f"error: --out of an ONNX export must end in .onnx, got {out}; e.g. {tmp_path / 'x.onnx'}\n"
    )
    assert not out.exists()


@pytest.mark.slow  # about 15 s: two OpenVINO exports
def test_force_replaces_an_earlier_export(tmp_path, small):
    out = tmp_path / "small_openvino"
    export(small, "openvino", out)
    (out / "model.bin").write_bytes(b"damaged")
    export(small, "openvino", out, "--force")
    assert sorted(p.name for p in out.iterdir()) == ["model.bin", "model.xml"]
    assert (out / "model.bin").stat().st_size > len(b"damaged")


@pytest.mark.parametrize("fmt, name", [("onnx", "small.onnx"), ("openvino", "small_openvino")])
def test_export_creates_the_folders_of_out(tmp_path, small, fmt, name):
    """Every format creates the missing folders above --out (before tracing, so a missing
    folder wastes no work), as saved_model always did: they once failed after tracing with
    FileNotFoundError on '<out>.tmp'."""
    out = tmp_path / "exports" / "a" / name
    export(small, fmt, out)
    assert sorted(p.name for p in out.parent.iterdir()) == [name]


def test_export_to_a_folder_that_cannot_be_made_is_one_line(tmp_path, small):
    config, weights, _ = small
    (tmp_path / "exports").write_text("a file where the folder goes")
    out = tmp_path / "exports" / "small.onnx"
    result = run_cli(
        "export", "--weights", weights, "--config", config, "--format", "onnx", "--out", out
    )
    assert result.exit_code == 2
    assert result.output == (
        f"error: {out}: cannot create the folder {out.parent} (File exists); choose another --out\n"
    )


@pytest.mark.slow  # about 20 s: a fresh process imports TensorFlow and exports
def test_export_prints_no_tensorflow_log_lines(tmp_path, small):
    """With TF_CPP_MIN_LOG_LEVEL unset, the console script sets it to 1 before TensorFlow
    starts: grappler's INFO lines ("Starting new session", "Number of eligible GPUs"), printed
    each time tf2onnx optimizes a graph, once reached stderr after the start-up."""
    config, weights, _ = small
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    out = tmp_path / "small.onnx"
    command = [Path(sys.executable).parent / "vswin-convert", "export", "--weights", weights]
    command += ["--config", config, "--format", "onnx", "--out", out]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == f"[export] small as onnx, clip 4x32x32x3, batch 1 -> {out}"
    assert (len(lines), lines[-1]) == (7, f"wrote {out}")


def test_export_of_a_file_that_is_no_weights_file_says_so(tmp_path):
    """Not Keras' "File format not supported", nor advice to pass another --config."""
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n")
    out = tmp_path / "x.onnx"
    result = run_cli(
        "export", "--weights", notes, "--config", "swin_t_k400", "--format", "onnx", "--out", out
    )
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        f"error: {notes}: is not a weights file (it starts with b'not a vi'); pass a weights "
        "file written by model.save_weights or vswin-convert"
    )
    assert sorted(tmp_path.iterdir()) == [notes]


@pytest.mark.parametrize("route", ["onnx", "traced"])
def test_openvino_ir_runs_in_openvino_with_parity(tmp_path, small, monkeypatch, route):
    """Read from the ONNX export, or (tf2onnx not installed) converted from the traced model."""
    import importlib.util

    import openvino

    if route == "traced":
        find_spec = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda name: None if name == "tf2onnx" else find_spec(name)
        )
    model = small[2]
    out = tmp_path / "small_openvino"
    assert "clip (openvino fp32)" in export(small, "openvino", out)
    assert sorted(p.name for p in out.iterdir()) == ["model.bin", "model.xml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small_openvino"]

    core = openvino.Core()
    ir = core.read_model(out / "model.xml")
    assert ir.input(0).get_partial_shape().to_shape() == [1, 4, 32, 32, 3]
    rebuilt = any("runtime_bias" in op.get_friendly_name() for op in ir.get_ops())
    assert rebuilt == (route == "onnx")  # biases computed at run time only through ONNX
    compiled = core.compile_model(ir, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    runs_as(model, lambda x: compiled(x)[0], (1, 4, 32, 32, 3))
    # float32 weights (OpenVINO's default would store them as fp16)
    constants = [op for op in ir.get_ops() if op.get_type_name() == "Constant"]
    types = {op.get_output_element_type(0) for op in constants if op.get_byte_size() > 1024}
    assert types == {openvino.Type.f32}
