"""mmaction2 ``.py`` configs are read as data, never run: the same dict as mmengine's
``Config.fromfile`` for every config mmaction2 ships, and a clear refusal naming the construct,
its file:line and ``--trust-config`` for a config that would have to run."""

from __future__ import annotations

import glob
import textwrap
from pathlib import Path

import mmaction
import pytest
from click.testing import CliRunner
from conftest import SMALL_SPEC
from mmengine.config import Config

from videoswin_tf.convert.cli import main
from videoswin_tf.convert.configs.mmaction2_reader import UnreadableConfig, read_config
from videoswin_tf.convert.configs.resolve import ConfigError, resolve_config
from videoswin_tf.convert.references.synthetic import make_checkpoint, save_checkpoint

MIM_CONFIGS = Path(mmaction.__file__).parent / ".mim" / "configs"
SWIN_CONFIGS = sorted((MIM_CONFIGS / "recognition" / "swin").glob("*.py"))
# Every config mmaction2 1.2.0 ships, bases aside: all of them read as data (none needs
# --trust-config), as the slow test below checks against mmengine.
ALL_CONFIGS = sorted(
    Path(f)
    for f in glob.glob(str(MIM_CONFIGS / "**" / "*.py"), recursive=True)
    if "/_base_/" not in f
)


def mmengine_dict(path: Path) -> dict:
    return Config.fromfile(str(path)).to_dict()


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_mmaction2_ships_six_swin_configs():
    assert len(SWIN_CONFIGS) == 6


@pytest.mark.parametrize("path", SWIN_CONFIGS, ids=lambda p: p.name.split("_")[0])
def test_every_shipped_swin_config_reads_as_mmengine_runs_it(path):
    """All six shipped swin configs read without running: none imports, calls anything but
    dict() and .copy(), or uses read_base(); the Kinetics-710 one copies and edits dicts."""
    mine = read_config(path)
    assert mine["model"] == mmengine_dict(path)["model"]
    assert mine == mmengine_dict(path)
    assert resolve_config(str(path)) == resolve_config(str(path), trust_config=True)


@pytest.mark.slow
def test_every_config_in_the_wheel_reads_as_mmengine_runs_it():
    assert len(ALL_CONFIGS) == 215
    for path in ALL_CONFIGS:
        assert read_config(path) == mmengine_dict(path), path


# The authors' Video-Swin tree: configs/_base_/models/swin/swin_tiny.py and a recognition config
# inheriting it and default_runtime.py, overriding parts of the model.
VIDEO_SWIN_TREE = {
    "configs/_base_/models/swin/swin_tiny.py": """
        # model settings
        model = dict(
            type='Recognizer3D',
            backbone=dict(
                type='SwinTransformer3D',
                patch_size=(4, 4, 4),
                embed_dim=96,
                depths=[2, 2, 6, 2],
                num_heads=[3, 6, 12, 24],
                window_size=(8, 7, 7),
                mlp_ratio=4.,
                qkv_bias=True,
                qk_scale=None,
                drop_rate=0.,
                attn_drop_rate=0.,
                drop_path_rate=0.2,
                patch_norm=True),
            cls_head=dict(
                type='I3DHead',
                in_channels=768,
                num_classes=400,
                spatial_type='avg',
                dropout_ratio=0.5),
            test_cfg = dict(average_clips='prob'))
        """,
    "configs/_base_/default_runtime.py": """
        checkpoint_config = dict(interval=1)
        log_config = dict(interval=20, hooks=[dict(type='TextLoggerHook')])
        dist_params = dict(backend='nccl')
        log_level = 'INFO'
        load_from = None
        resume_from = None
        workflow = [('train', 1)]
        """,
    "configs/_base_/models/swin/swin_base.py": """
        _base_ = "swin_tiny.py"
        model = dict(backbone=dict(depths=[2, 2, 18, 2],
                                   embed_dim=128,
                                   num_heads=[4, 8, 16, 32]),
                     cls_head=dict(in_channels=1024))
        """,
    "configs/recognition/swin/swin_tiny_patch244_window877_kinetics400_1k.py": """
        _base_ = [
            '../../_base_/models/swin/swin_tiny.py', '../../_base_/default_runtime.py'
        ]
        model=dict(backbone=dict(patch_size=(2,4,4), drop_path_rate=0.1),
                   test_cfg=dict(max_testing_views=4))
        total_epochs = 30
        work_dir = work_dir = './work_dirs/k400_swin_tiny_patch244_window877.py'
        find_unused_parameters = False
        fp16 = None
        """,
    "configs/recognition/swin/swin_base_patch244_window877_kinetics600_22k.py": """
        _base_ = [
            '../../_base_/models/swin/swin_base.py', '../../_base_/default_runtime.py'
        ]
        model=dict(backbone=dict(patch_size=(2,4,4), drop_path_rate=0.4),
                   cls_head=dict(num_classes=600),
                   test_cfg=dict(max_testing_views=2))
        """,
    "configs/recognition/swin/swin_base_patch244_window877_kinetics400_22k.py": """
        _base_ = [
            '../../_base_/models/swin/swin_tiny.py', '../../_base_/default_runtime.py'
        ]
        model = dict(
            backbone=dict(patch_size=(2, 4, 4), embed_dim=128, depths=[2, 2, 18, 2],
                          num_heads=[4, 8, 16, 32], drop_path_rate=0.2),
            cls_head=dict(in_channels=1024),
            test_cfg=dict(max_testing_views=4))
        img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                            to_bgr=False)
        work_dir = './work_dirs/k400_swin_base_22k_patch244_window877.py'
        workflow = [('train', 1)]
        """,
}


def test_video_swin_style_configs_read_as_mmengine_runs_them(tmp_path):
    write_tree(tmp_path, VIDEO_SWIN_TREE)
    path = tmp_path / "configs/recognition/swin/swin_base_patch244_window877_kinetics400_22k.py"
    mine = read_config(path)
    assert mine == mmengine_dict(path)
    assert mine["model"]["backbone"]["embed_dim"] == 128
    assert mine["model"]["backbone"]["qkv_bias"] is True  # merged from the base
    assert mine["model"]["test_cfg"] == {"average_clips": "prob", "max_testing_views": 4}


@pytest.mark.parametrize(
    ("name", "embed_dim", "depths", "num_heads", "classes", "drop_path"),
    [
        ("swin_tiny_patch244_window877_kinetics400_1k", 96, (2, 2, 6, 2), (3, 6, 12, 24), 400, 0.1),
        (
            "swin_base_patch244_window877_kinetics600_22k",
            128,
            (2, 2, 18, 2),
            (4, 8, 16, 32),
            600,
            0.4,
        ),
    ],
)
def test_the_authors_configs_give_the_architecture_by_explicit_fields(
    tmp_path, name, embed_dim, depths, num_heads, classes, drop_path
):
    """No arch: embed_dim/depths/num_heads in the base (swin_base.py inherits swin_tiny.py),
    patch_size overridden in the child, a runtime base beside it; read as mmengine runs it."""
    write_tree(tmp_path, VIDEO_SWIN_TREE)
    path = tmp_path / f"configs/recognition/swin/{name}.py"
    spec = resolve_config(str(path))
    assert (spec.embed_dim, spec.depths, spec.num_heads) == (embed_dim, depths, num_heads)
    assert (spec.window_size, spec.patch_size) == ((8, 7, 7), (2, 4, 4))
    assert (spec.num_classes, spec.drop_path_rate) == (classes, drop_path)
    assert spec == resolve_config(str(path), trust_config=True)


def test_an_authors_backbone_takes_their_defaults_for_fields_it_leaves_out(tmp_path):
    """Their SwinTransformer3D defaults to patch (4, 4, 4) and window (2, 7, 7), unlike
    mmaction2 1.x's (2, 4, 4) and (8, 7, 7)."""
    write_tree(
        tmp_path,
        {
            "c.py": """
            model = dict(backbone=dict(type='SwinTransformer3D', embed_dim=96),
                         cls_head=dict(type='I3DHead', num_classes=7))
            """
        },
    )
    spec = resolve_config(str(tmp_path / "c.py"))
    assert (spec.depths, spec.num_heads) == ((2, 2, 6, 2), (3, 6, 12, 24))
    assert (spec.patch_size, spec.window_size, spec.drop_path_rate) == ((4, 4, 4), (2, 7, 7), 0.2)


@pytest.mark.parametrize(
    ("backbone", "message"),
    [
        (
            "type='SwinTransformer3D'",
            "model.backbone names no architecture; give arch (mmaction2 1.x, e.g. "
            "arch='tiny') or embed_dim, depths and num_heads (the authors' configs)",
        ),
        (
            "type='SwinTransformer3D', arch='tiny', embed_dim=96",
            "model.backbone has both arch and embed_dim; mmaction2 1.x configs use arch, the "
            "authors' configs the explicit fields: keep one form",
        ),
        (
            "type='SwinTransformer3D', embed_dim=96, depths=[2, 2], num_heads=[3]",
            "embed_dim must be a positive integer, depths and num_heads lists of positive "
            "integers of the same length; got 96, [2, 2], [3]",
        ),
    ],
)
def test_a_backbone_without_one_clear_architecture_is_refused(tmp_path, backbone, message):
    write_tree(tmp_path, {"c.py": f"model = dict(backbone=dict({backbone}))\n"})
    with pytest.raises(ConfigError) as error:
        resolve_config(str(tmp_path / "c.py"))
    assert str(error.value) == f"{tmp_path / 'c.py'}: {message}"


# Every feature the reader evaluates, in a base, a second base and a child; compared with
# mmengine as a whole.
FEATURE_TREE = {
    "base/model.py": """
        '''A docstring is fine.'''
        depth = 2
        model = dict(
            type='Recognizer3D',
            backbone=dict(type='SwinTransformer3D', arch='tiny', window_size=(8, 7, 7),
                          drop_path_rate=0.1, extra=dict(a=1, b=2), stages=[1, 2, 3]),
            cls_head=dict(type='I3DHead', num_classes=400, in_channels=768))
        """,
    "base/data.py": """
        clip_len = 32
        scales = [128, 128] * 2
        """,
    "child.py": """
        _base_ = ['base/model.py', 'base/data.py']
        width = 96 * 2 - 64 // 2 + 7 % 4 - -1
        ratio = 3 / 4
        name = 'swin' + '_' + f"{width:04d}x{ratio!r}"
        frames = [1, 2] + [3]
        shared = dict(k=1)
        more = dict(shared, extra=2)
        copied = shared.copy()
        copied['k'] = 5
        aliased = shared
        aliased['j'] = 6
        triple = (*frames, 4)[1:3]
        model = dict(
            backbone=dict(
                window_size={{_base_.model.backbone.window_size}},
                drop_path_rate=_base_.model.backbone.drop_path_rate * 2,
                extra=dict(_delete_=True, c=3),
                stages=[9],
                depth=_base_['depth'],
                **{'embed': width}),
            cls_head=dict(num_classes=frames[-1] + 397),
            new=dict(_delete_=True, x=1))
        clip = f'{_base_.clip_len}x224'
        """,
}


def test_every_evaluated_construct_reads_as_mmengine_runs_it(tmp_path):
    write_tree(tmp_path, FEATURE_TREE)
    mine = read_config(tmp_path / "child.py")
    assert mine == mmengine_dict(tmp_path / "child.py")
    backbone = mine["model"]["backbone"]
    assert backbone["extra"] == {"c": 3}  # _delete_: replaced, not merged
    assert backbone["stages"] == [9]  # lists replace
    assert backbone["drop_path_rate"] == 0.2 and backbone["window_size"] == (8, 7, 7)
    assert mine["model"]["new"] == {"_delete_": True, "x": 1}  # kept where nothing is replaced
    assert mine["shared"] == {"k": 1, "j": 6} and mine["copied"] == {"k": 5}
    assert mine["name"] == "swin_0164x0.75" and mine["clip"] == "32x224"


@pytest.mark.parametrize(
    "line, construct",
    [
        ("import os", "an import"),
        ("from os import path", "an import"),
        ("x = open('f')", "the call open('f')"),
        ("x = __import__('os')", "the call __import__('os')"),
        ("x = dict(a=1).items()", "the call dict(a=1).items()"),
        ("x = (lambda: 1)", "a lambda"),
        ("x = [i for i in range(3)]", "a comprehension"),
        ("x = os.sep", "the attribute access os.sep"),
        ("x = dict().__class__", "the attribute access dict().__class__"),
        ("x = unknown", "the name 'unknown', not assigned earlier in the file,"),
        ("x = 2 ** 1000", "the operation 2 ** 1000 on int and int"),
        ("x = [0] * 200000", "a sequence of over 100000 items"),
        ("x = [0] * 10 ** 9", "the operation 10 ** 9 on int and int"),
        ("def f():\n    pass", "a function definition"),
        ("with read_base():\n    pass", "a with block (read_base() or another context manager)"),
        ("for i in []:\n    pass", "a loop"),
        (
            "x = '{{ fileDirname }}'",
            "the template {{ fileDirname }} (predefined or environment variable)",
        ),
    ],
)
def test_a_config_that_needs_running_is_refused_naming_construct_and_line(
    tmp_path, line, construct
):
    path = tmp_path / "cfg.py"
    path.write_text(f"model = dict(type='Recognizer3D')\n\n{line}\n")
    with pytest.raises(UnreadableConfig) as caught:
        read_config(path)
    assert str(caught.value) == (
        f"{path}:3: {construct} can only be run, not read; configs are read as data and never "
        f"executed. If you trust the file, pass --trust-config to let mmengine run it"
    )
    with pytest.raises(ConfigError, match="pass --trust-config"):
        resolve_config(str(path))


def test_a_refusal_in_a_base_names_the_base(tmp_path):
    write_tree(
        tmp_path, {"base.py": "import os\nmodel = dict()\n", "child.py": "_base_ = 'base.py'\n"}
    )
    with pytest.raises(UnreadableConfig, match=rf"^{tmp_path / 'base.py'}:1: an import"):
        read_config(tmp_path / "child.py")


def test_bases_defining_one_name_twice_are_refused_as_mmengine_does(tmp_path):
    write_tree(
        tmp_path, {"a.py": "x = 1\n", "b.py": "x = 2\n", "c.py": "_base_ = ['a.py', 'b.py']\n"}
    )
    with pytest.raises(KeyError, match="Duplicate key"):
        mmengine_dict(tmp_path / "c.py")
    with pytest.raises(UnreadableConfig, match="the bases both define 'x'"):
        read_config(tmp_path / "c.py")


def test_a_base_cycle_is_refused(tmp_path):
    write_tree(tmp_path, {"a.py": "_base_ = 'b.py'\n", "b.py": "_base_ = 'a.py'\n"})
    with pytest.raises(UnreadableConfig, match="deeper than 32"):
        read_config(tmp_path / "a.py")


MARKER_CONFIG = """
open({marker!r}, 'w').close()
model = dict(
    type='Recognizer3D',
    backbone=dict(type='SwinTransformer3D', arch=dict(embed_dims=32, depths=[1, 1, 2, 1],
                  num_heads=[1, 2, 4, 8]), window_size=(2, 3, 3), patch_size=(2, 4, 4)),
    cls_head=dict(type='I3DHead', num_classes=10, in_channels=256))
"""


def test_a_config_runs_only_with_trust_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the config writes ./ran when run
    marker = tmp_path / "ran"
    config = tmp_path / "small_config.py"
    config.write_text(MARKER_CONFIG.format(marker="ran"))
    pth = tmp_path / "small.pth"
    save_checkpoint(make_checkpoint(SMALL_SPEC, layout="authors"), pth)
    out = tmp_path / "small.weights.h5"
    args = ["--pth", str(pth), "--config", str(config), "--out", str(out), "--no-parity"]

    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2
    assert refused.output.strip().splitlines()[-1] == (
        f"error: {config}:2: the call open('ran', 'w').close() can only be run, not read; configs "
        "are read as data and "
        f"never executed. If you trust the file, pass --trust-config to let mmengine run it"
    )
    assert not marker.exists() and not out.exists()

    trusted = CliRunner().invoke(main, [*args, "--trust-config"])
    assert trusted.exit_code == 0, trusted.output
    assert marker.exists() and out.exists()


def test_help_names_trust_config():
    result = CliRunner().invoke(main, ["--help"])
    assert "--trust-config" in result.output and "Let mmengine run a .py --config" in result.output
