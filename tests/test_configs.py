"""Named configs, config files, and the architecture a checkpoint's shapes describe."""

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL_SPEC
from convert_runs import convert_cli

from videoswin_tf.convert.configs.resolve import (
    ConfigError,
    describe,
    named_configs,
    resolve_config,
)
from videoswin_tf.convert.mapping.inference import infer_spec, spec_disagreements
from videoswin_tf.convert.mapping.spec import ModelSpec
from videoswin_tf.convert.references.mmaction2 import build_reference
from videoswin_tf.convert.sources.checkpoint import CheckpointError

T = {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24)}
S = {"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24)}
B = {"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32)}

# The published checkpoints of docs/reference.md: architecture, window, drop path, classes, release
# name and official file name. Every one has patch (2, 4, 4) and a 32x224x224 clip.
PUBLISHED = [
    ("swin_t_k400", T, (8, 7, 7), 0.1, 400, "TFVideoSwinT_K400_IN1K_P244_W877_32x224",
     "swin_tiny_patch244_window877_kinetics400_1k.pth"),
    ("swin_s_k400", S, (8, 7, 7), 0.1, 400, "TFVideoSwinS_K400_IN1K_P244_W877_32x224",
     "swin_small_patch244_window877_kinetics400_1k.pth"),
    ("swin_b_k400", B, (8, 7, 7), 0.3, 400, "TFVideoSwinB_K400_IN1K_P244_W877_32x224",
     "swin_base_patch244_window877_kinetics400_1k.pth"),
    ("swin_b_k400_in22k", B, (8, 7, 7), 0.2, 400, "TFVideoSwinB_K400_IN22K_P244_W877_32x224",
     "swin_base_patch244_window877_kinetics400_22k.pth"),
    ("swin_b_k600_in22k", B, (8, 7, 7), 0.2, 600, "TFVideoSwinB_K600_IN22K_P244_W877_32x224",
     "swin_base_patch244_window877_kinetics600_22k.pth"),
    ("swin_b_ssv2", B, (16, 7, 7), 0.4, 174, "TFVideoSwinB_SSV2_K400_P244_W1677_32x224",
     "swin_base_patch244_window1677_sthv2.pth"),
]  # fmt: skip
NAMED = {
    name: ModelSpec(
        name,
        **arch,
        window_size=window,
        patch_size=(2, 4, 4),
        num_classes=classes,
        drop_path_rate=drop_path_rate,
        clip_frames=32,
        clip_size=224,
        release=release,
        source=source,
    )
    for name, arch, window, drop_path_rate, classes, release, source in PUBLISHED
}
DESCRIBED = {
    "swin_t_k400": ("IN-1K", "Kinetics-400", 78.8, 93.6, 28_158_070, "87.9G"),
    "swin_s_k400": ("IN-1K", "Kinetics-400", 80.6, 94.5, 49_816_678, "165.9G"),
    "swin_b_k400": ("IN-1K", "Kinetics-400", 80.6, 94.6, 88_048_984, "281.6G"),
    "swin_b_k400_in22k": ("IN-22K", "Kinetics-400", 82.7, 95.5, 88_048_984, "281.6G"),
    "swin_b_k600_in22k": ("IN-22K", "Kinetics-600", 84.0, 96.5, 88_253_984, "281.6G"),
    "swin_b_ssv2": ("K400", "Something-Something V2", 69.6, 92.7, 88_834_038, "320.6G"),
}


def mmaction_config(stem: str) -> str:
    import mmaction

    return os.path.join(
        os.path.dirname(mmaction.__file__), ".mim", "configs", "recognition", "swin", stem + ".py"
    )


def shapes_of(spec: ModelSpec, keep_index: bool = True) -> dict[str, np.ndarray]:
    """A canonical state with the reference's shapes: zero floats (no memory), real index
    buffers."""
    state = {}
    for key, tensor in build_reference(spec).state_dict().items():
        if key.endswith("relative_position_index"):
            if keep_index:
                state[key] = tensor.numpy()
        else:
            state[key] = np.broadcast_to(np.float32(0), tuple(tensor.shape))
    return state


@pytest.fixture(scope="module")
def published_states():
    return {name: shapes_of(spec) for name, spec in NAMED.items()}


def test_the_six_named_configs_exactly():
    assert named_configs() == NAMED
    for name, (pretrain, dataset, acc1, acc5, params, flops) in DESCRIBED.items():
        assert describe(name) == {
            "pretrain": pretrain,
            "dataset": dataset,
            "acc1": acc1,
            "acc5": acc5,
            "params": params,
            "flops": flops,
        }


def test_resolve_by_name_and_by_json_path(tmp_path):
    assert resolve_config("swin_b_ssv2") == NAMED["swin_b_ssv2"]
    shipped = os.path.join(os.path.dirname(__file__), "..", "configs", "swin_t_k400.json")
    assert resolve_config(shipped) == NAMED["swin_t_k400"]

    custom = json.loads(open(shipped).read()) | {
        "name": "mine",
        "num_classes": 7,
        "window_size": [4, 7, 7],
    }
    (tmp_path / "mine.json").write_text(json.dumps(custom))
    assert resolve_config(str(tmp_path / "mine.json")) == NAMED["swin_t_k400"].replace(
        name="mine", num_classes=7, window_size=(4, 7, 7)
    )


def test_bad_json_configs_are_explained(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", "arch": "huge", "windowsize": [8, 7, 7]}))
    with pytest.raises(
        ConfigError,
        match=(
            rf"^{path}: missing window_size, patch_size, drop_path_rate, num_classes, clip_frames, "
            r"clip_size, release, source; unknown windowsize \(fields: name, arch, "
        ),
    ):
        resolve_config(str(path))
    shipped = os.path.join(os.path.dirname(__file__), "..", "configs", "swin_t_k400.json")
    path.write_text(
        json.dumps(json.loads(open(shipped).read()) | {"arch": "huge", "num_classes": 0})
    )
    with pytest.raises(
        ConfigError, match=rf"^{path}: num_classes must be a positive integer or null, got 0$"
    ):
        resolve_config(str(path))
    path.write_text(json.dumps(json.loads(open(shipped).read()) | {"arch": "huge"}))
    with pytest.raises(
        ConfigError, match=rf"^{path}: unknown arch 'huge'; choose one of tiny, small, base, large$"
    ):
        resolve_config(str(path))


def test_json_config_with_a_custom_architecture(tmp_path):
    shipped = json.loads(
        open(os.path.join(os.path.dirname(__file__), "..", "configs", "swin_t_k400.json")).read()
    )
    path = tmp_path / "custom.json"
    custom = shipped | {
        "name": "custom",
        "arch": None,
        "embed_dim": 32,
        "depths": [1, 1, 2, 1],
        "num_heads": [1, 2, 4, 8],
    }
    path.write_text(json.dumps(custom))
    spec = resolve_config(str(path))
    assert (spec.arch, spec.embed_dim, spec.depths, spec.num_heads) == (
        None,
        32,
        (1, 1, 2, 1),
        (1, 2, 4, 8),
    )

    path.write_text(json.dumps(shipped | {"arch": None, "embed_dim": 32}))
    with pytest.raises(
        ConfigError,
        match=rf'^{path}: "arch": null needs depths, num_heads for a custom architecture$',
    ):
        resolve_config(str(path))
    path.write_text(json.dumps(shipped | {"depths": [2, 2, 18, 2]}))
    with pytest.raises(
        ConfigError,
        match=(
            rf"^{path}: depths \[2, 2, 18, 2\] contradicts arch 'tiny' \(depths \[2, 2, 6, 2\]\); "
            rf"drop one of them$"
        ),
    ):
        resolve_config(str(path))


def test_unknown_name_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigError) as error:
        resolve_config("swin_x_k400")
    assert str(error.value) == (
        "unknown config 'swin_x_k400'; named configs: swin_b_k400, swin_b_k400_in22k, "
        "swin_b_k600_in22k, swin_b_ssv2, swin_s_k400, swin_t_k400. Or pass a path to a .json "
        "config like those in configs/, or to an mmaction2 recognition config (.py)"
    )
    with pytest.raises(ConfigError, match=f"^{tmp_path / 'gone.json'}: no such config file$"):
        resolve_config(str(tmp_path / "gone.json"))


def test_a_missing_mmaction2_config_says_where_mmaction2_keeps_them(tmp_path):
    """The folder is the installed package's; a path under /.mim is a ``$(python ...)`` that
    printed nothing (a python without mmaction2), and the message says so."""
    package = importlib.util.find_spec("mmaction").submodule_search_locations[0]
    swin = Path(package) / ".mim/configs/recognition/swin"
    with pytest.raises(ConfigError) as error:
        resolve_config(str(tmp_path / "gone.py"))
    assert str(error.value) == (
        f"{tmp_path / 'gone.py'}: no such config file; mmaction2's Swin configs are in {swin}"
    )
    with pytest.raises(ConfigError) as error:
        resolve_config("/.mim/configs/recognition/swin/swin-tiny.py")
    assert str(error.value) == (
        "/.mim/configs/recognition/swin/swin-tiny.py: no such config file; the $(python ...) "
        "meant to print mmaction2's folder printed nothing: run it alone to see why (that "
        f"python may lack mmaction2); mmaction2's Swin configs are in {swin}"
    )


def test_a_bad_config_is_refused_before_the_checkpoint_is_read(tmp_path):
    """The checkpoint is missing too: the config's error comes first."""
    for config, said in (
        ("swin_x_k400", "error: unknown config 'swin_x_k400'; named configs: "),
        (str(tmp_path / "gone.py"), f"error: {tmp_path / 'gone.py'}: no such config file; "),
    ):
        result = convert_cli("--pth", tmp_path / "missing.pth", "--config", config)
        assert result.exit_code == 2
        assert result.output.startswith(said), result.output


def test_mmaction2_shipped_config_resolves_to_tiny_400():
    stem = "swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb"
    assert resolve_config(mmaction_config(stem)) == ModelSpec(
        stem,
        **T,
        window_size=(8, 7, 7),
        patch_size=(2, 4, 4),
        num_classes=400,
        drop_path_rate=0.1,
        release=None,
        source=None,
    )


def test_mmaction2_config_inheritance_two_levels_deep():
    # kinetics700 config: _base_ is the large kinetics400 config, which sets arch and drop path
    spec = resolve_config(
        mmaction_config("swin-large-p244-w877_in22k-pre_16xb8-amp-32x2x1-30e_kinetics700-rgb")
    )
    assert (spec.arch, spec.num_classes, spec.drop_path_rate, spec.window_size) == (
        "large",
        700,
        0.4,
        (8, 7, 7),
    )


def test_non_swin_mmaction2_config_is_refused(tmp_path):
    path = tmp_path / "tsn.py"
    path.write_text("model = dict(type='Recognizer2D', backbone=dict(type='ResNet', depth=50))\n")
    with pytest.raises(
        ConfigError,
        match=(
            rf"^{path}: model.backbone.type is 'ResNet'; only SwinTransformer3D configs describe "
            rf"a Video Swin model$"
        ),
    ):
        resolve_config(str(path))


@pytest.mark.parametrize("name", list(NAMED))
def test_infer_spec_recovers_every_named_config(published_states, name):
    state = published_states[name]
    spec = NAMED[name]
    assert infer_spec(state) == ModelSpec(
        "inferred",
        spec.embed_dim,
        spec.depths,
        spec.num_heads,
        spec.window_size,
        spec.patch_size,
        spec.num_classes,
    )
    assert spec_disagreements(spec, state) == []
    without_index = {k: v for k, v in state.items() if not k.endswith("relative_position_index")}
    assert infer_spec(without_index).window_size == spec.window_size  # Wh == Ww == 7 preferred
    backbone_only = {k: v for k, v in state.items() if not k.startswith("cls_head.")}
    assert infer_spec(backbone_only).num_classes is None
    assert spec_disagreements(spec, backbone_only) == []  # a backbone-only file fits any head


def test_the_index_buffer_pins_a_permuted_window():
    for window in [(2, 3, 3), (3, 2, 3), (3, 3, 2)]:  # same table length, same token count
        assert infer_spec(shapes_of(SMALL_SPEC.replace(window_size=window))).window_size == window


def test_a_window_the_table_alone_cannot_pin_down():
    state = shapes_of(SMALL_SPEC, keep_index=False)  # table of 75 rows: (2, 3, 3) or (38, 1, 1)
    with pytest.raises(CheckpointError) as error:
        infer_spec(state)
    assert str(error.value) == (
        "cannot tell the window size from backbone.layers.0.blocks.0.attn."
        "relative_position_bias_table [75, 1]: matching windows (2, 3, 3), (38, 1, 1); pass a "
        "config (--config) that names it"
    )
    assert spec_disagreements(SMALL_SPEC, state) == []  # the config settles it
    assert spec_disagreements(SMALL_SPEC.replace(window_size=(8, 7, 7)), state) == [
        "window_size: config (8, 7, 7) needs a bias table of 2535 rows, checkpoint has "
        "backbone.layers.0.blocks.0.attn.relative_position_bias_table [75, 1]"
    ]


def test_disagreements_are_listed_with_their_evidence(published_states):
    assert spec_disagreements(NAMED["swin_t_k400"], published_states["swin_b_ssv2"]) == [
        "embed_dim: config 96, checkpoint 128 (from backbone.patch_embed.proj.weight [128, 3, 2, "
        "4, 4])",
        "depths: config (2, 2, 6, 2), checkpoint (2, 2, 18, 2) (from "
        "backbone.layers.<i>.blocks.<j>.* keys)",
        "num_heads: config (3, 6, 12, 24), checkpoint (4, 8, 16, 32) (from "
        "backbone.layers.<i>.blocks.0."
        "attn.relative_position_bias_table [rows, heads])",
        "window_size: config (8, 7, 7), checkpoint (16, 7, 7) (from "
        "backbone.layers.0.blocks.0.attn."
        "relative_position_bias_table [5239, 4] and backbone.layers.0.blocks.0.attn."
        "relative_position_index [784, 784])",
        "num_classes: config 400, checkpoint 174 (from cls_head.fc_cls.weight [174, 1024])",
    ]
    assert spec_disagreements(NAMED["swin_b_k400"], published_states["swin_b_k600_in22k"]) == [
        "num_classes: config 400, checkpoint 600 (from cls_head.fc_cls.weight [600, 1024])",
    ]
    backbone_only = NAMED["swin_b_k400"].replace(num_classes=None)
    assert spec_disagreements(backbone_only, published_states["swin_b_k400"]) == [
        "num_classes: config None (backbone only), checkpoint 400 (from cls_head.fc_cls.weight "
        "[400, 1024])",
    ]


def test_patch_size_disagreement():
    state = shapes_of(SMALL_SPEC.replace(patch_size=(1, 2, 2)))
    assert infer_spec(state).patch_size == (1, 2, 2)
    assert spec_disagreements(SMALL_SPEC, state) == [
        "patch_size: config (2, 4, 4), checkpoint (1, 2, 2) (from "
        "backbone.patch_embed.proj.weight [32, 3, 1, 2, 2])",
    ]


def test_a_state_without_a_patch_embedding_is_no_video_swin():
    with pytest.raises(
        CheckpointError,
        match=(
            r"^cannot read the architecture: backbone.patch_embed.proj.weight is missing \(not a "
            r"Video Swin backbone\?\)$"
        ),
    ):
        infer_spec({"backbone.norm3.weight": np.ones(4, np.float32)})
