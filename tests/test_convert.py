"""vswin-convert end to end: layouts, named configs, parity on awkward sizes, error cases.

Checkpoints are made here by the upstream reference model with fixed seeds, in the exact
layouts of the published files (`videoswin_tf.convert.references.synthetic`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from videoswin_tf.convert.cli import main
from videoswin_tf.convert.converter import convert
from videoswin_tf.convert.mapping.spec import ModelSpec
from videoswin_tf.convert.parity import ParitySettings
from videoswin_tf.convert.references.synthetic import make_checkpoint, save_checkpoint

# Small enough to run in seconds, big enough to pad, shrink and shift windows on every stage.
MINI = ModelSpec(
    "mini",
    16,
    (2, 2, 2, 2),
    (1, 2, 2, 4),
    window_size=(4, 3, 3),
    num_classes=11,
    clip_frames=8,
    clip_size=48,
)
MINI_JSON = {
    "name": "mini",
    "arch": None,
    "embed_dim": 16,
    "depths": [2, 2, 2, 2],
    "num_heads": [1, 2, 2, 4],
    "window_size": [4, 3, 3],
    "patch_size": [2, 4, 4],
    "drop_path_rate": 0.1,
    "num_classes": 11,
    "clip_frames": 8,
    "clip_size": 48,
    "release": None,
    "source": None,
}


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def mini_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("configs") / "mini.json"
    path.write_text(json.dumps(MINI_JSON))
    return path


def write_checkpoint(
    folder: Path, spec: ModelSpec, layout: str, name: str | None = None, seed: int = 0, edit=None
) -> Path:
    checkpoint = make_checkpoint(spec, layout=layout, seed=seed)
    if edit is not None:
        edit(checkpoint["state_dict"] if "state_dict" in checkpoint else checkpoint)
    path = folder / (name or f"{spec.name}_{layout}.pth")
    save_checkpoint(checkpoint, path)
    return path


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("layout", ["authors", "mmaction", "module", "bare", "half"])
def test_every_layout_converts_with_parity(tmp_path, mini_config, layout):
    pth = write_checkpoint(tmp_path, MINI, layout)
    out = tmp_path / "mini.weights.h5"
    result = convert(
        pth, config=str(mini_config), out=out, parity=ParitySettings(batch=2), log=lambda _: None
    )
    report = result.report
    assert report.passed and out.is_file()
    assert report.logits.shape == (2, 11)
    assert report.logits.max_abs < 1e-4 and report.logits.relative < 1e-5
    assert report.logits.reference_scale > 1.0  # distinctive weights give real logits
    assert report.logits.cosine > 0.999999 and report.top1_agreement == 1.0
    assert [s.shape for s in report.stages] == [
        (2, 4, 12, 12, 16),
        (2, 4, 6, 6, 32),
        (2, 4, 3, 3, 64),
        (2, 4, 2, 2, 128),
    ]
    saved = json.loads((tmp_path / "mini.parity.json").read_text())
    assert saved["passed"] is True and saved["logits"]["max_abs"] == report.logits.max_abs


def test_backbone_only_checkpoint_writes_a_backbone_file(tmp_path, mini_config):
    pth = write_checkpoint(tmp_path, MINI, "backbone_only")
    lines = []
    result = convert(
        pth, config=str(mini_config), log=lines.append, out=tmp_path / "mini_backbone.weights.h5"
    )
    assert result.spec.num_classes is None and result.report.logits is None
    assert result.report.passed and result.report.stages[-1].max_abs < 1e-4
    assert any("backbone" in line for line in lines)
    from videoswin_tf import TFSwinTransformer3D

    model = TFSwinTransformer3D(**MINI.replace(num_classes=None).keras_kwargs())
    model.load_weights(str(result.weights_path))


def test_architecture_is_inferred_without_config(tmp_path):
    pth = write_checkpoint(tmp_path, MINI, "authors")
    result = convert(
        pth,
        out=tmp_path / "x.weights.h5",
        parity=ParitySettings(frames=8, size=48),
        log=lambda _: None,
    )
    assert (result.spec.embed_dim, result.spec.depths, result.spec.num_heads) == (
        16,
        (2, 2, 2, 2),
        (1, 2, 2, 4),
    )
    assert result.spec.window_size == (4, 3, 3) and result.spec.num_classes == 11
    assert result.report.passed


@pytest.mark.parametrize(
    "clip", [(2, 16, 112, 112), (2, 5, 50, 70), (1, 1, 30, 30)], ids=["16x112", "5x50x70", "1x30"]
)
def test_swin_t_parity_on_inputs_that_pad_and_shrink_windows(swin_t_weights, clip):
    from videoswin_tf.convert.parity import run_parity

    spec, checkpoint, weights = swin_t_weights
    report = run_parity(spec, checkpoint, weights, (*clip, 3), seed=1)
    assert report.passed, report.format()
    assert report.logits.max_abs < 1e-4 and report.logits.relative < 1e-5
    assert report.top1_agreement == 1.0 and report.top5_agreement == 1.0


@pytest.fixture(scope="module")
def swin_t_weights(tmp_path_factory, swin_t_pth):
    """Swin-T K400: the spec, the loaded checkpoint and a converted weights file."""
    from videoswin_tf.convert.configs.resolve import resolve_config
    from videoswin_tf.convert.mapping.rules import assign
    from videoswin_tf.convert.mapping.spec import build_keras_model
    from videoswin_tf.convert.sources.checkpoint import load_checkpoint

    spec = resolve_config("swin_t_k400")
    checkpoint = load_checkpoint(swin_t_pth)
    model = build_keras_model(spec)
    assign(model, checkpoint.state)
    weights = tmp_path_factory.mktemp("weights") / "t.weights.h5"
    model.save_weights(str(weights))
    return spec, checkpoint, weights


@pytest.fixture(scope="module")
def swin_t_pth(tmp_path_factory) -> Path:
    from videoswin_tf.convert.configs.resolve import resolve_config

    folder = tmp_path_factory.mktemp("sources")
    spec = resolve_config("swin_t_k400")
    return write_checkpoint(folder, spec, "authors", name=spec.source)


# Swin-T runs in `make test`; the larger five take the same code path (one table of rules, sizes
# from the config) at 2x to 3x the time each, so they run in `make test-slow`.
NAMED = [
    "swin_t_k400",
    *(
        pytest.param(name, marks=pytest.mark.slow)
        for name in (
            "swin_s_k400",
            "swin_b_k400",
            "swin_b_k400_in22k",
            "swin_b_k600_in22k",
            "swin_b_ssv2",
        )
    ),
]


@pytest.mark.parametrize("name", NAMED)
def test_every_named_config_converts_and_passes_parity(tmp_path, monkeypatch, name):
    from videoswin_tf.convert.configs.resolve import resolve_config

    spec = resolve_config(name)
    pth = write_checkpoint(tmp_path, spec, "authors", name=spec.source)
    monkeypatch.chdir(tmp_path)  # the default output goes to ./checkpoints/
    result = run_cli(
        "--config", name, "--pth", str(pth), "--parity-frames", "8", "--parity-size", "64"
    )
    assert result.exit_code == 0, result.output
    weights = tmp_path / "checkpoints" / f"{spec.release}.weights.h5"
    assert weights.is_file()
    assert "PASS" in result.output
    report = json.loads(weights.with_name(f"{spec.release}.parity.json").read_text())
    assert report["logits"]["shape"] == [1, spec.num_classes]
    assert report["logits"]["max_abs"] < 1e-4 and report["logits"]["relative"] < 1e-5
    for phase in ("[load]", "[build]", "[map]", "[write]", "[parity]"):
        assert phase in result.output


def test_mmaction2_config_file_from_the_installed_package(tmp_path, swin_t_pth):
    import mmaction

    config = (
        Path(mmaction.__file__).parent
        / ".mim/configs/recognition/swin"
        / "swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb.py"
    )
    out = tmp_path / "t.weights.h5"
    result = run_cli(
        "--config",
        str(config),
        "--pth",
        str(swin_t_pth),
        "--out",
        str(out),
        "--parity-frames",
        "4",
        "--parity-size",
        "64",
    )
    assert result.exit_code == 0, result.output
    assert out.is_file() and "PASS" in result.output


def test_the_authors_own_config_file_converts_their_checkpoint(tmp_path, swin_t_pth):
    """The authors' config tree (no arch: explicit embed_dim/depths/num_heads in the base,
    patch_size in the child, a runtime base) with the authors' Swin-T checkpoint."""
    from test_config_reader import VIDEO_SWIN_TREE, write_tree

    write_tree(tmp_path, VIDEO_SWIN_TREE)
    config = tmp_path / "configs/recognition/swin/swin_tiny_patch244_window877_kinetics400_1k.py"
    out = tmp_path / "t.weights.h5"
    result = run_cli(
        *("--config", str(config), "--pth", str(swin_t_pth), "--out", str(out)),
        *("--parity-frames", "4", "--parity-size", "64"),
    )
    assert result.exit_code == 0, result.output
    assert out.is_file() and "PASS" in result.output


# ---- error cases: a clear message, a non-zero exit, nothing written ------------------------


def test_config_that_disagrees_lists_every_disagreement(tmp_path, swin_t_pth):
    result = run_cli(
        "--config", "swin_b_ssv2", "--pth", str(swin_t_pth), "--out", str(tmp_path / "x.weights.h5")
    )
    assert result.exit_code == 2
    assert "config 'swin_b_ssv2' disagrees with the checkpoint" in result.output
    for field in ("embed_dim", "depths", "num_heads", "window_size", "num_classes"):
        assert field in result.output
    assert files_in(tmp_path) == set()


def _delete(key):
    return lambda state: state.pop(key)


def _add(key, value):
    return lambda state: state.__setitem__(key, value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            _delete("backbone.layers.1.blocks.0.mlp.fc1.weight"),
            "backbone.layers.1.blocks.0.mlp.fc1.weight: missing from the checkpoint",
        ),
        (
            _add("backbone.layers.0.blocks.0.attn.extra", __import__("torch").zeros(3)),
            "backbone.layers.0.blocks.0.attn.extra [3]: left over",
        ),
        (
            _add("backbone.layers.0.blocks.1.mlp.fc2.bias", __import__("torch").zeros(15)),
            "backbone.layers.0.blocks.1.mlp.fc2.bias: wrong shape [15]",
        ),
    ],
    ids=["missing-key", "extra-key", "wrong-shape"],
)
def test_bad_checkpoint_is_refused_and_nothing_written(tmp_path, mini_config, edit, message):
    sources = tmp_path / "in"
    sources.mkdir()
    pth = write_checkpoint(sources, MINI, "authors", edit=edit)
    out_dir = tmp_path / "out"
    out_dir.mkdir()  # a missing --out folder is refused before the checkpoint is read
    result = run_cli(
        "--config", str(mini_config), "--pth", str(pth), "--out", str(out_dir / "mini.weights.h5")
    )
    assert result.exit_code == 2
    assert message in result.output
    assert files_in(out_dir) == set()


def test_missing_file_is_a_clear_error(tmp_path):
    result = run_cli(
        "--config",
        "swin_t_k400",
        "--pth",
        str(tmp_path / "nope.pth"),
        "--out",
        str(tmp_path / "x.weights.h5"),
    )
    assert result.exit_code == 2
    assert "nope.pth" in result.output and "not found" in result.output.lower()
    assert files_in(tmp_path) == set()


def test_existing_output_needs_force(tmp_path, mini_config):
    pth = write_checkpoint(tmp_path, MINI, "authors")
    out = tmp_path / "mini.weights.h5"
    out.write_bytes(b"keep me")
    result = run_cli("--config", str(mini_config), "--pth", str(pth), "--out", str(out))
    assert result.exit_code == 2 and "pass --force to overwrite it" in result.output
    assert out.read_bytes() == b"keep me"
    result = run_cli("--config", str(mini_config), "--pth", str(pth), "--out", str(out), "--force")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() != b"keep me"


def test_failed_parity_exits_1_and_writes_no_weights(tmp_path, mini_config):
    pth = write_checkpoint(tmp_path, MINI, "authors")
    out = tmp_path / "mini.weights.h5"
    result = run_cli(
        "--config", str(mini_config), "--pth", str(pth), "--out", str(out), "--atol", "1e-12"
    )
    assert result.exit_code == 1
    assert "parity failed" in result.output and "FAIL" in result.output
    assert not out.exists()
    assert json.loads((tmp_path / "mini.parity.json").read_text())["passed"] is False
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_help_explains_every_option_with_examples():
    result = run_cli("--help")
    assert result.exit_code == 0
    for option in (
        "--config",
        "--pth",
        "--out",
        "--force",
        "--no-parity",
        "--parity-frames",
        "--parity-size",
        "--atol",
        "--rtol",
        "Examples:",
        "vswin-convert --config",
    ):
        assert option in result.output


# ---- full size: CI runs these (make test-slow), the default run does not --------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["swin_t_k400", "swin_b_ssv2"])
def test_full_size_parity(tmp_path, name):
    from videoswin_tf.convert.configs.resolve import resolve_config

    spec = resolve_config(name)
    pth = write_checkpoint(tmp_path, spec, "authors", name=spec.source)
    result = convert(
        pth, config=name, out=tmp_path / f"{spec.release}.weights.h5", log=lambda _: None
    )
    report = result.report
    assert report.clip_shape == (1, 32, 224, 224, 3)
    assert report.passed, report.format()
    assert report.logits.max_abs < 1e-4 and report.logits.relative < 1e-5


def _swap_norms(model):
    block = model.stages[2].blocks[1]
    gamma1, gamma2 = block.norm1.gamma.numpy(), block.norm2.gamma.numpy()
    block.norm1.gamma.assign(gamma2)
    block.norm2.gamma.assign(gamma1)


def _shift_bias_index(model):
    table = model.stages[0].blocks[1].attn.relative_position_bias_table
    table.assign(np.roll(table.numpy(), 1, axis=0))


def _swap_qk(model):
    qkv = model.stages[1].blocks[0].attn.qkv.kernel
    q, k, v = np.split(qkv.numpy(), 3, axis=1)
    qkv.assign(np.concatenate([k, q, v], axis=1))


@pytest.mark.parametrize(
    "port_error",
    [_swap_norms, _shift_bias_index, _swap_qk],
    ids=["swapped-norms", "bias-index-off-by-one", "q-k-swapped"],
)
def test_parity_fails_on_typical_port_errors(tmp_path, mini_config, port_error):
    """The gate is not vacuous: each of these single mistakes fails it by a wide margin."""
    from videoswin_tf.convert.mapping.rules import assign
    from videoswin_tf.convert.mapping.spec import build_keras_model
    from videoswin_tf.convert.parity import run_parity
    from videoswin_tf.convert.sources.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(write_checkpoint(tmp_path, MINI, "authors"))
    model = build_keras_model(MINI)
    assign(model, checkpoint.state)
    port_error(model)
    weights = tmp_path / "broken.weights.h5"
    model.save_weights(str(weights))
    report = run_parity(MINI, checkpoint, weights, (2, 8, 48, 48, 3))
    assert not report.passed
    assert report.logits.max_abs > 100 * report.atol, report.format()


def test_cli_stderr_is_free_of_tensorflow_start_up_lines(tmp_path, mini_config):
    """TensorFlow writes its C++ start-up lines to fd 2, which only a fresh process shows."""
    import os
    import subprocess
    import sys

    pth = write_checkpoint(tmp_path, MINI, "authors")
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    command = "from videoswin_tf.convert.cli import main; main()"
    args = [
        "--config",
        str(mini_config),
        "--pth",
        str(pth),
        "--out",
        str(tmp_path / "m.weights.h5"),
    ]
    done = subprocess.run(
        [sys.executable, "-c", command, *args, "--no-parity"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "[write] done" in done.stdout
    assert done.stderr == ""
