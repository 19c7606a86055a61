"""vswin-convert --pth on the seed's own .h5 files: read by structure, parity against the seed's
tf.keras model loading the same file under Keras 2 (a process of its own)."""

from __future__ import annotations

import numpy as np
import pytest
from convert_runs import convert_cli, converted, refused
from test_seed_h5 import CLIP, run_seed, seed_reference

from videoswin_tf import TFSwinTransformer3D
from videoswin_tf.convert.references.seed_keras2 import SEED_CODE_VARIABLE

SMALL_SEED = {"embed_dim": 32, "depths": [1, 1, 2, 1], "num_heads": [1, 2, 4, 8]}
NAME = "TFVideoSwinSmall_P244_W877.h5"


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seed")
    run_seed(
        folder,
        [
            {
                "action": "write",
                "arch": SMALL_SEED,
                "num_classes": 7,
                "window_size": [8, 7, 7],
                "path": NAME,
                "seed": 3,
            }
        ],
    )
    return folder / NAME


def test_the_seeds_h5_converts_with_parity_against_the_seeds_model(
    seed_file, tmp_path, monkeypatch
):
    monkeypatch.setenv(SEED_CODE_VARIABLE, str(seed_reference()))
    out = tmp_path / "small.weights.h5"
    lines, report = converted(seed_file, out, "--parity-frames", "8", "--parity-size", "64")
    assert lines[1] == (
        "        the seed's Keras 2 .h5 layout (innat/VideoSwin v1), read by structure, 87 tensors"
    )
    assert lines[2] == (
        "        note: read 82 Keras weights by structure (videoswin_tf.legacy_h5); window 8x7x7 "
        "from the bias tables' rows"
    )
    assert (
        "[parity] the seed's tf.keras model (innat/VideoSwin v1, Keras 2) loading the file "
        "itself vs Keras model loaded from the file" in lines
    )
    assert report["passed"] and report["logits"]["shape"] == [1, 7]
    assert report["logits"]["max_abs"] < 1e-4 and report["logits"]["reference_scale"] > 0.1
    # and the written file gives the logits the seed's process saved when it wrote the .h5
    model = TFSwinTransformer3D(**SMALL_SEED, window_size=(8, 7, 7), num_classes=7)
    model.load_weights(str(out))
    want = np.load(seed_file.with_suffix(".npy"))
    got = np.asarray(model(CLIP))
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-5


def test_the_default_output_is_named_after_the_seeds_file(seed_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = convert_cli("--pth", str(seed_file), "--no-parity")
    assert result.exit_code == 0, result.output
    assert (
        result.output.splitlines()[-1] == "wrote checkpoints/TFVideoSwinSmall_P244_W877.weights.h5"
    )


def test_without_the_seeds_code_parity_is_a_one_line_error(seed_file, tmp_path, monkeypatch):
    monkeypatch.delenv(SEED_CODE_VARIABLE, raising=False)
    out = tmp_path / "small.weights.h5"
    assert refused("--pth", seed_file, "--out", out, "--parity-size", "64") == (
        f"error: parity for the seed's .h5 runs the seed's own model: set {SEED_CODE_VARIABLE} "
        "to the folder that holds its videoswin package (a checkout of innat/VideoSwin), or pass "
        "--no-parity"
    )
    assert not out.exists()


def test_the_seeds_h5_goes_straight_to_mmaction2(seed_file, tmp_path):
    from videoswin_tf.convert.outputs.torch_checkpoint import to_torch
    from videoswin_tf.convert.parity import ParitySettings

    result = to_torch(
        seed_file,
        "mmaction2",
        tmp_path / "small.pth",
        parity=ParitySettings(frames=8, size=64),
        log=lambda _: None,
    )
    assert result.spec.window_size == (8, 7, 7) and result.spec.num_classes == 7
    assert result.tensors == 87 and result.report.passed
    assert result.report.logits.max_abs < 1e-4 and result.report.logits.reference_scale > 0.1
