"""examples/finetune.py: the recipe trains to high accuracy, saves and reloads, loads a converted
backbone, decays the learning rate by layer, and one data-parallel step equals one single-device
step."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
from upstream_checkpoints import SMALL, microsoft_layout, timm_swin

from videoswin_tf.convert.converter import convert
from videoswin_tf.convert.parity import ParitySettings
from videoswin_tf.convert.references.synthetic import save_checkpoint

EXAMPLE = Path(__file__).parent.parent / "examples" / "finetune.py"


def load_example():
    """examples/finetune.py as the module ``finetune_example`` (registered, as dataclasses
    need)."""
    if "finetune_example" not in sys.modules:
        spec = importlib.util.spec_from_file_location("finetune_example", EXAMPLE)
        module = importlib.util.module_from_spec(spec)
        sys.modules["finetune_example"] = module
        spec.loader.exec_module(module)
    return sys.modules["finetune_example"]


def run_example(*args: str, backend: str = "tensorflow") -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": backend},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_short_run_trains_saves_and_reloads(tmp_path):
    out = tmp_path / "directions.keras"
    output = run_example("--videos", "64", "--val-videos", "32", "--epochs", "2", "--out", str(out))
    assert "64 training and 32 validation videos of 8x32x32; 1 replica(s)" in output
    assert re.search(
        r"Epoch 2/2\n4/4 - .* - accuracy: [\d.]+ - loss: [\d.]+ - val_accuracy", output
    )
    assert f"saved {out}; reloaded, its logits differ by 0.0e+00" in output


@pytest.mark.slow
def test_the_recipe_reaches_high_accuracy(tmp_path):
    output = run_example("--out", str(tmp_path / "directions.keras"))
    assert "384 training and 128 validation videos of 8x32x32; 1 replica(s)" in output
    assert float(re.search(r"validation accuracy ([\d.]+)%", output)[1]) >= 90.0, output


def test_one_data_parallel_step_equals_one_single_device_step():
    output = run_example("--devices", "2", "--check-data-parallel", "--batch", "8")
    found = re.search(
        r"weights moved up to ([\d.e+-]+), the two results differ by at most ([\d.e+-]+)", output
    )
    assert "on 2 devices" in output and "device:CPU:1" in output, output
    moved, apart = float(found[1]), float(found[2])
    assert moved > 1e-3 and apart < 1e-6, output


def test_moving_squares_are_balanced_and_move():
    example = load_example()
    clips, labels = example.moving_squares(8, 6, 32, seed=3)
    assert clips.shape == (8, 6, 32, 32, 3) and clips.dtype == np.uint8
    assert np.bincount(labels).tolist() == [2, 2, 2, 2]
    for clip, label in zip(clips, labels, strict=False):
        bright = clip.max(axis=-1) >= 150  # the square; the background stays below 60
        centres = [np.argwhere(frame).mean(axis=0) for frame in bright]
        dy, dx = centres[-1] - centres[0]
        direction = example.DIRECTIONS[label]
        assert {"right": dx > 4, "left": dx < -4, "down": dy > 4, "up": dy < -4}[direction]


def test_layerwise_decay():
    example = load_example()
    paths = [
        "backbone/patch_embed/proj/kernel",
        "backbone/layers_0/blocks_0/attn/qkv/kernel",
        "backbone/layers_0/downsample/norm/gamma",
        "backbone/layers_2/blocks_1/mlp/fc1/bias",
        "backbone/layers_3/blocks_0/norm1/gamma",
        "backbone/norm/gamma",
        "classifier/kernel",
    ]
    assert example.layer_depths(paths, (1, 1, 2, 1)) == [0, 1, 1, 4, 5, 6, 6]
    args = Namespace(frames=4, size=32, weights=None, layer_decay=0.5, learning_rate=1e-3, epochs=1)
    kwargs = {**example.SMALL_BACKBONE, "window_size": (2, 7, 7), "patch_size": (2, 4, 4)}
    model = example.build_classifier(args, kwargs, drop_path_rate=0.0)
    model.optimizer.build(model.trainable_variables)
    scales = dict(
        zip((v.path for v in model.trainable_variables), model.optimizer._scales, strict=False)
    )
    assert scales["classifier/kernel"] == 1.0
    assert scales["backbone/patch_embed/proj/kernel"] == 0.5**6
    assert scales["backbone/layers_2/blocks_1/attn/qkv/kernel"] == 0.5**2


def test_a_converted_backbone_is_loaded(tmp_path):
    """--weights takes the backbone file vswin-convert writes from a 2D ImageNet Swin."""
    model = timm_swin("swin_tiny_patch4_window7_224", **SMALL)
    save_checkpoint(microsoft_layout(model, model.state_dict()), tmp_path / "in1k.pth")
    weights = tmp_path / "in1k_backbone.weights.h5"
    convert(
        tmp_path / "in1k.pth",
        out=weights,
        parity=ParitySettings(frames=4, size=32),
        log=lambda _: None,
    )
    example = load_example()
    args = Namespace(
        frames=4, size=32, weights=str(weights), layer_decay=0.75, learning_rate=1e-3, epochs=1
    )
    kwargs = {**example.SMALL_BACKBONE, "window_size": (8, 7, 7), "patch_size": (2, 4, 4)}
    classifier = example.build_classifier(args, kwargs, drop_path_rate=0.0)
    qkv = classifier.get_layer("backbone").stages[2].blocks[1].attn.qkv.kernel
    expected = model.state_dict()["layers.2.blocks.1.attn.qkv.weight"].numpy().T
    np.testing.assert_array_equal(np.asarray(qkv), expected)


@pytest.mark.slow
def test_the_recipe_with_two_replicas(tmp_path):
    output = run_example("--devices", "2", "--out", str(tmp_path / "two.keras"))
    assert "2 replica(s)" in output
    assert float(re.search(r"validation accuracy ([\d.]+)%", output)[1]) >= 90.0, output


@pytest.mark.slow
def test_one_data_parallel_step_on_jax():
    """keras.distribution.DataParallel over two host CPU devices (make test-slow installs jax)."""
    output = run_example("--devices", "2", "--check-data-parallel", "--batch", "8", backend="jax")
    found = re.search(
        r"jax: one step on 1 device and on 2 devices \(cpu:0, cpu:1\): weights "
        r"moved up to ([\d.e+-]+), the two results differ by at most ([\d.e+-]+)",
        output,
    )
    assert found, output
    assert float(found[1]) > 1e-3 and float(found[2]) < 1e-6, output
