"""Other checkpoint sources: 2D ImageNet Swin (Microsoft's and timm's layouts) inflated to 3D, and
torchvision's swin3d. The checkpoints are written by timm's and torchvision's own models (random
init, stressed); parity runs mmaction2 inflating the 2D file itself, or torchvision's model."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from upstream_checkpoints import (
    SMALL,
    save_timm_pair,
    save_torchvision,
    torchvision_swin3d,
)

from videoswin_tf.convert.cli import main
from videoswin_tf.convert.converter import convert
from videoswin_tf.convert.errors import ConversionError
from videoswin_tf.convert.mapping.inference import infer_spec
from videoswin_tf.convert.mapping.inflation import bicubic_resize, inflate
from videoswin_tf.convert.mapping.spec import build_keras_model
from videoswin_tf.convert.outputs.preprocessing import ATTRIBUTE, read_preprocessing
from videoswin_tf.convert.parity import ParitySettings, parity_clip
from videoswin_tf.convert.references.registry import REFERENCES
from videoswin_tf.convert.sources.checkpoint import CheckpointError, load_checkpoint
from videoswin_tf.convert.sources.imagenet_2d import MICROSOFT_2D, TIMM_2D
from videoswin_tf.convert.sources.layout import rename
from videoswin_tf.convert.sources.torchvision import TORCHVISION

Result = collections.namedtuple("Result", "spec weights_path")
CLIP = ParitySettings(frames=8, size=64)
SMALL_3D = {
    "patch_size": [2, 4, 4],
    "embed_dim": SMALL["embed_dim"],
    "depths": list(SMALL["depths"]),
    "num_heads": list(SMALL["num_heads"]),
    "window_size": [8, 7, 7],
}


@pytest.fixture(scope="module")
def timm_window7(tmp_path_factory) -> tuple[Path, Path]:
    """A small Swin with timm's window-7 224 architecture: (Microsoft layout, timm layout)."""
    return save_timm_pair(tmp_path_factory.mktemp("w7"), "swin_tiny_patch4_window7_224", **SMALL)


@pytest.fixture(scope="module")
def timm_window12(tmp_path_factory) -> tuple[Path, Path]:
    """A small Swin with timm's window-12 384 architecture (2D window 12: bicubic path)."""
    return save_timm_pair(tmp_path_factory.mktemp("w12"), "swin_base_patch4_window12_384", **SMALL)


@pytest.fixture(scope="module")
def torchvision_small(tmp_path_factory) -> Path:
    model = torchvision_swin3d(**SMALL_3D, num_classes=7)
    return save_torchvision(tmp_path_factory.mktemp("tv") / "swin3d_small.pth", model)


# --- the pieces ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size_in, size_out",
    [(23, (13, 13)), (13, (23, 23)), (5, (9, 9)), (13, (13, 9)), (13, (13, 13))],
)
def test_bicubic_resize_is_torch_bicubic(size_in, size_out):
    images = np.random.default_rng(size_in).normal(0, 1.5, (3, size_in, size_in)).astype("f4")
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(images)[None], size=size_out, mode="bicubic", align_corners=False
    )[0].numpy()
    ours = bicubic_resize(images, size_out)
    assert ours.shape == (3, *size_out) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=0, atol=2e-5)
    if size_in == size_out[0] == size_out[1]:
        np.testing.assert_array_equal(ours, images)
    else:  # the clamped border taps matter: bilinear is far off
        bilinear = torch.nn.functional.interpolate(
            torch.from_numpy(images)[None], size=size_out, mode="bilinear"
        )[0].numpy()
        assert np.abs(bilinear - expected).max() > 0.05


def test_inflate_patch_and_tables():
    rng = np.random.default_rng(0)
    patch = rng.normal(size=(8, 3, 4, 4)).astype("f4")
    table = rng.normal(size=(13 * 13, 2)).astype("f4")
    small_table = rng.normal(size=(5 * 5, 2)).astype("f4")
    state = {
        "backbone.patch_embed.proj.weight": patch,
        "backbone.layers.0.blocks.0.attn.relative_position_bias_table": table,
        "backbone.layers.0.blocks.1.attn.relative_position_bias_table": small_table,
        "backbone.norm3.weight": np.ones(8, "f4"),
    }
    out, notes = inflate(state, (4, 7, 7), (3, 4, 4))
    torch_patch = torch.from_numpy(patch).unsqueeze(2).repeat(1, 1, 3, 1, 1) / 3
    np.testing.assert_array_equal(out["backbone.patch_embed.proj.weight"], torch_patch.numpy())
    tiled = out["backbone.layers.0.blocks.0.attn.relative_position_bias_table"]
    assert tiled.shape == (7 * 169, 2)
    np.testing.assert_array_equal(tiled, np.concatenate([table] * 7))
    resized = out["backbone.layers.0.blocks.1.attn.relative_position_bias_table"]
    expected = bicubic_resize(small_table.T.reshape(2, 5, 5), (13, 13)).reshape(2, 169).T
    np.testing.assert_array_equal(resized, np.concatenate([expected] * 7))
    np.testing.assert_array_equal(out["backbone.norm3.weight"], state["backbone.norm3.weight"])
    assert notes == [
        "inflated backbone.patch_embed.proj.weight to [8, 3, 3, 4, 4]: repeated over 3 frames, "
        "divided by 3",
        "tiled every relative_position_bias_table 7 times over time for window (4, 7, 7); "
        "1 resized bicubically to 13x13 first",
    ]


@pytest.mark.parametrize(
    "source, key, canonical",
    [
        (TORCHVISION, "features.0.1.mlp.0.weight", "backbone.layers.0.blocks.1.mlp.fc1.weight"),
        (TORCHVISION, "features.6.1.mlp.3.bias", "backbone.layers.3.blocks.1.mlp.fc2.bias"),
        (
            TORCHVISION,
            "features.4.12.attn.qkv.weight",
            "backbone.layers.2.blocks.12.attn.qkv.weight",
        ),
        (
            TORCHVISION,
            "features.5.reduction.weight",
            "backbone.layers.2.downsample.reduction.weight",
        ),
        (TORCHVISION, "features.1.norm.bias", "backbone.layers.0.downsample.norm.bias"),
        (TORCHVISION, "norm.weight", "backbone.norm3.weight"),
        (TORCHVISION, "head.bias", "cls_head.fc_cls.bias"),
        (
            MICROSOFT_2D,
            "layers.0.downsample.norm.weight",
            "backbone.layers.0.downsample.norm.weight",
        ),
        (MICROSOFT_2D, "norm.bias", "backbone.norm3.bias"),
        (
            TIMM_2D,
            "layers.3.downsample.reduction.weight",
            "backbone.layers.2.downsample.reduction.weight",
        ),
        (TIMM_2D, "layers.3.blocks.1.norm2.bias", "backbone.layers.3.blocks.1.norm2.bias"),
    ],
)
def test_rename_rows(source, key, canonical):
    assert rename(source, {key: 0}) == ({canonical: 0}, [])


def test_rename_drops_and_refuses():
    assert rename(TIMM_2D, {"head.fc.weight": 0, "layers.0.blocks.1.attn_mask": 0}) == (
        {},
        ["head.fc.weight", "layers.0.blocks.1.attn_mask"],
    )
    with pytest.raises(
        ValueError,
        match=r"1 key of a torchvision swin3d layout .* match no "
        r"known name: features\.0\.0\.mlp\.1\.weight",
    ):
        rename(TORCHVISION, {"features.0.0.mlp.1.weight": 0})


def test_detection_and_layouts(timm_window7, torchvision_small, tmp_path):
    microsoft, timm_file = timm_window7
    loaded = load_checkpoint(microsoft)
    assert loaded.source is MICROSOFT_2D and not loaded.has_head
    assert loaded.source_layout == (
        "2D ImageNet Swin, Microsoft layout (layers.<i>.downsample ends stage i) (model)"
    )
    assert loaded.state["backbone.patch_embed.proj.weight"].shape == (32, 3, 4, 4)
    assert "backbone.norm3.weight" in loaded.state and "head.weight" in loaded.original
    assert load_checkpoint(timm_file).source_layout == (
        "2D ImageNet Swin, timm >= 0.9 layout (layers.<i+1>.downsample ends stage i) "
        "(bare state dict)"
    )
    # timm < 0.9 used Microsoft's names without the model entry; DDP prefixes are stripped first
    wrapped = torch.load(microsoft, weights_only=True)["model"]
    torch.save({"state_dict": {f"module.{k}": v for k, v in wrapped.items()}}, tmp_path / "a.pth")
    assert load_checkpoint(tmp_path / "a.pth").source_layout == (
        "2D ImageNet Swin, Microsoft layout (layers.<i>.downsample ends stage i) "
        "(state_dict, module. prefix)"
    )
    tv = load_checkpoint(torchvision_small)
    assert tv.source is TORCHVISION and tv.has_head
    assert tv.source_layout == (
        "torchvision swin3d layout (features.<2i> stages, features.<2i+1> patch merging) "
        "(bare state dict)"
    )
    extra = {
        **torch.load(torchvision_small, weights_only=True),
        "features.0.0.extra": torch.ones(1),
    }
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path / "extra.pth")
    assert str(error.value) == (
        f"{tmp_path / 'extra.pth'}: 1 key of a torchvision swin3d layout (features.<2i> stages, "
        f"features.<2i+1> patch merging) checkpoint match no known name: features.0.0.extra; is "
        f"it a modified or unsupported layout?"
    )


# --- parity against the upstream models ------------------------------------------------------


def pooled_difference(path: Path, result, clip_shape=(1, 8, 64, 64, 3)) -> float:
    """Largest difference between the pooled features of the Keras model loaded from the written
    file and the reference's (for ``path``'s source), on the parity clip."""
    clip = parity_clip(clip_shape, 0)
    checkpoint = load_checkpoint(path)
    reference = REFERENCES[checkpoint.source.reference].forward(result.spec, checkpoint, clip)
    model = build_keras_model(result.spec)
    model.load_weights(str(result.weights_path))
    pooled = np.asarray(model.stage_features(clip)[-1]).mean(axis=(1, 2, 3))
    if not model.include_top:
        np.testing.assert_allclose(np.asarray(model(clip)), pooled, atol=1e-6)
    return float(np.abs(pooled - reference["pooled"]).max())


# Parameters of the small 3D backbone: timm's 2D model has 1,685,171, less its 1000-class head
# (257,000), plus the patch embedding's second frame (1,536) and 14 more copies of each bias
# table (169 rows, 19 heads in all): 1,428,171 + 1,536 + 14 * 169 * 19 = 1,474,661.
SMALL_BACKBONE_PARAMETERS = 1_474_661


@pytest.mark.parametrize("window", ["timm_window7", "timm_window12"])
def test_inflated_parity_both_layouts(window, request, tmp_path):
    microsoft, timm_file = request.getfixturevalue(window)
    results = [
        convert(path, out=tmp_path / f"{path.stem}.weights.h5", log=lambda line: None, parity=CLIP)
        for path in (microsoft, timm_file)
    ]
    for result in results:
        assert result.report.passed and result.report.logits is None
        assert len(result.report.stages) == 4
        assert result.report.judged.max_abs < 2e-5
        assert result.spec.num_classes is None and result.spec.window_size == (8, 7, 7)
        assert result.parameters == SMALL_BACKBONE_PARAMETERS
    assert pooled_difference(microsoft, results[0]) < 2e-5
    with h5py.File(results[0].weights_path) as a, h5py.File(results[1].weights_path) as b:
        names = []
        a.visititems(
            lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
        )
        assert len(names) == 80
        for name in names:  # Microsoft's and timm's layouts of one model give one Keras file
            np.testing.assert_array_equal(a[name][()], b[name][()])
        assert ATTRIBUTE not in a.attrs


# A config for the small 2D models: the 3D window, and a release name an inflated file must not
# take.
MINI_2D_CONFIG = {
    "name": "small_in1k_inflated",
    "arch": None,
    **{k: SMALL_3D[k] for k in ("embed_dim", "depths", "num_heads", "patch_size")},
    "window_size": [4, 7, 7],
    "drop_path_rate": 0.1,
    "num_classes": 5,
    "clip_frames": 8,
    "clip_size": 64,
    "release": "SHOULD_NOT_BE_USED",
    "source": None,
}


def test_a_config_names_the_3d_model_and_must_agree(timm_window7, tmp_path):
    microsoft, _ = timm_window7
    config = MINI_2D_CONFIG
    path = tmp_path / "small.json"
    path.write_text(json.dumps(config))
    result = convert(microsoft, config=str(path), out=tmp_path / "x.weights.h5", log=print)
    assert result.report.passed and result.spec.window_size == (4, 7, 7)
    assert result.spec.num_classes is None and result.report.clip_shape == (1, 8, 64, 64, 3)
    with pytest.raises(
        ConversionError,
        match=r"config 'swin_t_k400' disagrees with the "
        r"checkpoint in 3 ways:\n  - embed_dim: config 96, checkpoint 32",
    ):
        convert(microsoft, config="swin_t_k400", out=tmp_path / "y.weights.h5", log=print)
    assert not (tmp_path / "y.weights.h5").exists()


def test_torchvision_parity_via_cli(torchvision_small, tmp_path):
    out = tmp_path / "tv.weights.h5"
    result = CliRunner().invoke(
        main,
        [
            "--pth",
            str(torchvision_small),
            "--out",
            str(out),
            "--parity-frames",
            "8",
            "--parity-size",
            "64",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "torchvision swin3d layout (features.<2i> stages" in result.output
    assert "[parity] torchvision SwinTransformer3d vs Keras model loaded from the file" in (
        result.output
    )
    report = json.loads((tmp_path / "tv.parity.json").read_text())
    assert report["passed"] and report["logits"]["shape"] == [1, 7]
    assert report["logits"]["max_abs"] < 1e-5 and report["logits"]["reference_scale"] > 0.5
    assert read_preprocessing(out) == TORCHVISION.preprocessing
    assert read_preprocessing(out)["resize_short_side"] == 256
    assert read_preprocessing(out)["frame_rate"] == 15
    spec = infer_spec(load_checkpoint(torchvision_small).state)
    assert (
        pooled_difference(torchvision_small, Result(spec, out)) < 1e-5
    )  # loads despite the attribute


# --- full size (make test-slow) --------------------------------------------------------------


def mmaction_config(stem: str) -> str:
    import mmaction

    return str(Path(mmaction.__file__).parent / ".mim/configs/recognition/swin" / f"{stem}.py")


@pytest.mark.slow
def test_paper_2d_tiny_with_a_named_config(tmp_path, monkeypatch):
    """The done criterion: the paper's 2D file name, --config swin_t_k400, default output."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    microsoft, _ = save_timm_pair(folder, "swin_tiny_patch4_window7_224")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main, ["--pth", str(microsoft), "--config", "swin_t_k400"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    out = Path("checkpoints/swin_tiny_patch4_window7_224_backbone.weights.h5")
    assert f"wrote {out}" in result.output
    report = json.loads(out.with_name(out.name.replace(".weights.h5", ".parity.json")).read_text())
    assert report["passed"] and report["clip_shape"] == [1, 32, 224, 224, 3]
    assert report["stages"][3]["shape"] == [1, 16, 7, 7, 768]
    assert report["stages"][3]["max_abs"] < 1e-4


@pytest.mark.slow
def test_window12_base_with_mmaction_in1k_pre_config(tmp_path):
    """A full-size 2D window-12 Swin-B (bicubic path) in timm's layout, with mmaction2's own
    in1k-pre config."""
    _, timm_file = save_timm_pair(tmp_path, "swin_base_patch4_window12_384")
    config = mmaction_config("swin-base-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb")
    result = convert(
        timm_file,
        config=config,
        out=tmp_path / "b.weights.h5",
        parity=ParitySettings(frames=16, size=112),
        log=print,
    )
    assert result.report.passed and result.spec.embed_dim == 128
    assert result.spec.window_size == (8, 7, 7) and result.spec.num_classes is None
    # timm's 87,903,584 less the head (1,025,000), plus the patch's second frame (6,144) and each
    # 529-row table (376 heads in all) resized to 169 rows and tiled 15 times: Swin-B's backbone
    # (88,048,984 with a 400-class head).
    assert result.parameters == 87_903_584 - 1_025_000 + 6_144 + (15 * 169 - 529) * 376
    assert result.parameters == 88_048_984 - (1024 * 400 + 400)


@pytest.mark.slow
@pytest.mark.parametrize(
    "builder, file_name, parameters, clip",
    [
        ("swin3d_t", "swin3d_t-7615ae03.pth", 28_158_070, (32, 224)),
        ("swin3d_s", "swin3d_s-da41c237.pth", 49_816_678, (16, 112)),
        ("swin3d_b", "swin3d_b_1k-24f7c7c6.pth", 88_048_984, (16, 112)),
    ],
)
def test_torchvision_full_size(builder, file_name, parameters, clip, tmp_path):
    path = save_torchvision(tmp_path / file_name, torchvision_swin3d(builder))
    result = CliRunner().invoke(
        main,
        [
            "--pth",
            str(path),
            "--out",
            str(tmp_path / "tv.weights.h5"),
            "--parity-frames",
            str(clip[0]),
            "--parity-size",
            str(clip[1]),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "tv.parity.json").read_text())
    assert report["passed"] and report["logits"]["shape"] == [1, 400]
    model = build_keras_model(infer_spec(load_checkpoint(path).state))
    model.load_weights(str(tmp_path / "tv.weights.h5"))
    assert model.count_params() == parameters


def test_a_2d_patch_that_cannot_become_the_configs(timm_window7, tmp_path):
    microsoft, _ = timm_window7
    config = {**MINI_2D_CONFIG, "patch_size": [2, 8, 8]}
    path = tmp_path / "wide_patch.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ConversionError) as error:
        convert(microsoft, config=str(path), out=tmp_path / "z.weights.h5", log=lambda _: None)
    assert str(error.value) == (
        "cannot inflate the 2D checkpoint: backbone.patch_embed.proj.weight [32, 3, 4, 4] has a "
        "4x4 patch; the 3D patch (2, 8, 8) needs 8x8"
    )
    assert not (tmp_path / "z.weights.h5").exists()
