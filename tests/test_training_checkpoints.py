"""Checkpoints as training runs leave them: averaged (EMA) weights beside the regular ones, the
run's argument and config objects, a Runner's filled ``message_hub``. Each file is made with the
upstream tools' own objects (mmengine's ``ExponentialMovingAverage`` and ``MessageHub``,
``argparse.Namespace``, yacs's ``CfgNode``, torch's optimizers) or, for mmcv 1.x's ``EMAHook``
(not installable beside mmcv 2), by registering its buffers exactly as its ``before_run`` does."""

from __future__ import annotations

import argparse
import fractions
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import SMALL_SPEC
from mmengine.logging import MessageHub
from mmengine.model import ExponentialMovingAverage
from upstream_checkpoints import SMALL, microsoft_layout, timm_layout, timm_swin, torchvision_swin3d
from yacs.config import CfgNode

from videoswin_tf.convert.cli import main
from videoswin_tf.convert.references.mmaction2 import build_reference
from videoswin_tf.convert.references.synthetic import (
    distinctive_state,
    make_checkpoint,
    save_checkpoint,
    stressed,
)
from videoswin_tf.convert.sources.checkpoint import (
    CheckpointError,
    load_checkpoint,
    resave_command,
)

SMALL_JSON = {
    "name": "small",
    "arch": None,
    "embed_dim": SMALL_SPEC.embed_dim,
    "depths": list(SMALL_SPEC.depths),
    "num_heads": list(SMALL_SPEC.num_heads),
    "window_size": list(SMALL_SPEC.window_size),
    "patch_size": list(SMALL_SPEC.patch_size),
    "drop_path_rate": 0.1,
    "num_classes": SMALL_SPEC.num_classes,
    "clip_frames": SMALL_SPEC.clip_frames,
    "clip_size": SMALL_SPEC.clip_size,
    "release": None,
    "source": None,
}
SMALL_FIELDS = {
    "embed_dim": SMALL["embed_dim"],
    "depths": list(SMALL["depths"]),
    "num_heads": list(SMALL["num_heads"]),
}
PARITY = ["--parity-frames", "4", "--parity-size", "32"]


def convert_cli(pth: Path, out: Path, *extra: str):
    config = out.with_name("small.json")
    config.write_text(json.dumps(SMALL_JSON))
    arguments = ["--pth", str(pth), "--config", str(config), "--out", str(out), *PARITY, *extra]
    return CliRunner().invoke(main, arguments, catch_exceptions=False)


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path, **kwargs)
    return str(error.value)


def filled_message_hub() -> dict:
    """mmengine's own ``MessageHub`` state after a few logged iterations: ``log_scalars`` holds
    ``HistoryBuffer`` objects (numpy arrays inside), as a Runner saves it."""
    hub = MessageHub("videoswin-tf-test")
    for step in range(3):
        hub.update_scalar("train/loss", 2.0 / (step + 1))
        hub.update_scalar("train/lr", np.float64(1e-3), count=8)
        hub.update_scalar("val/acc/top1", torch.tensor(0.25 * step))
    hub.update_info("epoch", 3)
    hub.update_info("iter", 30)
    return hub.state_dict()


def canonical(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {key: value.float().numpy() for key, value in state.items()}


def assert_state_equal(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(actual[key], value, err_msg=key)


# --- mmcv 1.x EMAHook: ema_* buffers in the state dict -------------------------------------------


@pytest.fixture(scope="module")
def mmcv_ema(tmp_path_factory) -> tuple[Path, dict, dict]:
    """(file, regular weights, averaged weights) of a run with mmcv 1.x's EMAHook: its
    ``before_run`` registers, on the (unwrapped) model, one buffer per parameter named
    ``"ema_" + name.replace(".", "_")``; here the buffers then hold other (averaged) values."""
    model = build_reference(SMALL_SPEC)
    model.load_state_dict(distinctive_state(SMALL_SPEC, 0))
    averaged = distinctive_state(SMALL_SPEC, 1)
    parameters = dict(model.named_parameters(recurse=True))
    for name in parameters:
        model.register_buffer(f"ema_{name.replace('.', '_')}", averaged[name].clone())
    path = tmp_path_factory.mktemp("mmcv_ema") / "epoch_3.pth"
    save_checkpoint({"meta": {"epoch": 3, "iter": 30}, "state_dict": model.state_dict()}, path)
    regular = canonical(distinctive_state(SMALL_SPEC, 0))
    ema = dict(regular) | canonical({name: averaged[name] for name in parameters})
    return path, regular, ema


def test_mmcv_ema_buffers_follow_the_hook_naming(mmcv_ema):
    path, regular, _ = mmcv_ema
    saved = torch.load(path, weights_only=True)["state_dict"]
    buffers = [key for key in saved if key.startswith("ema_")]
    assert "ema_backbone_layers_0_blocks_0_attn_qkv_weight" in buffers
    assert "ema_cls_head_fc_cls_bias" in buffers
    assert not any("relative_position_index" in key for key in buffers)  # parameters only
    assert len(buffers) == len(regular) - 5  # one relative_position_index per block: 5 blocks


def test_mmcv_ema_converts_the_regular_weights_with_a_note(mmcv_ema):
    path, regular, _ = mmcv_ema
    loaded = load_checkpoint(path)
    assert_state_equal(loaded.state, regular)
    buffers = len(regular) - 5
    assert (
        f"converted the regular weights and dropped {buffers} ema_* buffers (mmcv EMAHook): "
        f"pass --ema to convert the averaged weights instead"
    ) in loaded.notes


def test_mmcv_ema_gives_the_averaged_weights_with_ema(mmcv_ema):
    path, _, ema = mmcv_ema
    loaded = load_checkpoint(path, ema=True)
    assert_state_equal(loaded.state, ema)
    assert loaded.notes[0] == (
        f"converted the averaged (EMA) weights of {len(ema) - 5} ema_* buffers (mmcv EMAHook); "
        f"buffers as saved"
    )


@pytest.mark.parametrize("ema", [False, True])
def test_mmcv_ema_converts_with_parity_either_way(mmcv_ema, tmp_path, ema):
    path, _, _ = mmcv_ema
    out = tmp_path / "small.weights.h5"
    result = convert_cli(path, out, *(["--ema"] if ema else []))
    assert result.exit_code == 0, result.output
    assert ("averaged (EMA) weights of" in result.output) is ema
    report = json.loads(out.with_name("small.parity.json").read_text())
    assert report["passed"] and report["logits"]["max_abs"] < 1e-4


def test_an_ema_buffer_matching_no_weight_is_refused(tmp_path):
    checkpoint = make_checkpoint(SMALL_SPEC, "mmaction")
    state = checkpoint["state_dict"]
    state["ema_backbone_patch_embed_proj_weight"] = state["backbone.patch_embed.proj.weight"]
    state["ema_backbone_layers_9_weight"] = torch.zeros(1)
    path = tmp_path / "stray.pth"
    save_checkpoint(checkpoint, path)
    assert error_of(path) == (
        f"{path}: 1 EMA buffer matches no weight: ema_backbone_layers_9_weight; an mmcv EMAHook "
        f"buffer is ema_ + a parameter's name with its dots as underscores. Remove the stray "
        f"buffers and re-save"
    )


def test_ema_on_a_file_without_averaged_weights_is_refused(tmp_path):
    path = tmp_path / "plain.pth"
    save_checkpoint(make_checkpoint(SMALL_SPEC, "authors"), path)
    assert error_of(path, ema=True) == (
        f"{path}: --ema asks for averaged weights, but the file holds none (neither mmcv's "
        f"ema_* buffers nor mmengine's ema_state_dict); leave --ema out"
    )


# --- mmengine Runner: ema_state_dict and a filled message_hub -----------------------------------


@pytest.fixture(scope="module")
def mmengine_run(tmp_path_factory) -> tuple[Path, dict, dict]:
    """(file, regular, averaged) as mmengine's Runner saves a run with ``EMAHook``:
    ``meta``, ``state_dict``, ``ema_state_dict`` (mmengine's own ExponentialMovingAverage of
    the model), ``message_hub`` (mmengine's own MessageHub, filled), ``optimizer``."""
    model = build_reference(SMALL_SPEC)
    model.load_state_dict(distinctive_state(SMALL_SPEC, 0))
    averaged_model = ExponentialMovingAverage(model, momentum=0.5)
    averaged_model.update_parameters(model)  # the first update copies the model (steps 0 -> 1)
    averaged_model.module.load_state_dict(distinctive_state(SMALL_SPEC, 2))  # as if averaged
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(1, 3, 4, 32, 32)).sum().backward()
    optimizer.step()
    state = {key: value.clone() for key, value in distinctive_state(SMALL_SPEC, 0).items()}
    checkpoint = {
        "meta": {"epoch": 3, "iter": 30, "seed": 0, "experiment_name": "swin"},
        "state_dict": state,
        "ema_state_dict": averaged_model.state_dict(),
        "message_hub": filled_message_hub(),
        "optimizer": optimizer.state_dict(),
    }
    path = tmp_path_factory.mktemp("mmengine") / "epoch_3.pth"
    save_checkpoint(checkpoint, path)
    return path, canonical(state), canonical(averaged_model.module.state_dict())


def test_the_message_hub_holds_mmengine_history_buffers(mmengine_run):
    path, _, _ = mmengine_run
    with pytest.raises(Exception, match="HistoryBuffer"):
        torch.load(path, weights_only=True)  # torch alone refuses the real layout
    ema_keys = set(torch.load(path, weights_only=False)["ema_state_dict"])
    assert "steps" in ema_keys and "module.backbone.patch_embed.proj.weight" in ema_keys


def test_mmengine_run_converts_the_regular_weights_and_names_the_averaged(mmengine_run):
    path, regular, averaged = mmengine_run
    loaded = load_checkpoint(path)
    assert_state_equal(loaded.state, regular)
    assert (
        "converted the regular weights; the file also holds averaged (EMA) weights in "
        "ema_state_dict (mmengine EMAHook): pass --ema to convert those"
    ) in loaded.notes
    chosen = load_checkpoint(path, ema=True)
    assert_state_equal(chosen.state, averaged)
    assert not np.array_equal(
        chosen.state["backbone.patch_embed.proj.weight"],
        loaded.state["backbone.patch_embed.proj.weight"],
    )
    assert "converted the averaged (EMA) weights of ema_state_dict (mmengine EMAHook)" in (
        chosen.notes
    )


def test_mmengine_run_converts_with_parity(mmengine_run, tmp_path):
    path, _, _ = mmengine_run
    result = convert_cli(path, tmp_path / "small.weights.h5", "--ema")
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output


def test_the_synthetic_mmaction_layout_carries_a_filled_message_hub():
    hub = make_checkpoint(SMALL_SPEC, "mmaction")["message_hub"]
    assert type(hub["log_scalars"]["train/loss"]).__name__ == "HistoryBuffer"


# --- the run's arguments beside the weights -----------------------------------------------------


def torchvision_training_checkpoint(arguments: object) -> tuple[dict, dict]:
    """torchvision's video_classification/train.py ``checkpoint`` dict: model, optimizer,
    lr_scheduler, epoch, args; and the model's weights."""
    model = torchvision_swin3d(
        patch_size=[2, 4, 4], window_size=[8, 7, 7], num_classes=7, **SMALL_FIELDS
    )
    model.load_state_dict(stressed(model.state_dict(), "torchvision:0", head_prefix="head."))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.64, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[20, 30], gamma=0.1)
    model(torch.zeros(1, 3, 8, 64, 64)).sum().backward()
    optimizer.step()
    scheduler.step()
    weights = model.state_dict()
    checkpoint = {
        "model": weights,
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": scheduler.state_dict(),
        "epoch": 3,
        "args": arguments,
    }
    return checkpoint, weights


TORCHVISION_ARGS = argparse.Namespace(
    data_path="/datasets01/kinetics/070618/",
    model="swin3d_t",
    device="cuda",
    clip_len=16,
    frame_rate=15,
    clips_per_video=5,
    batch_size=24,
    epochs=45,
    workers=10,
    lr=0.64,
    momentum=0.9,
    weight_decay=1e-4,
    lr_milestones=[20, 30, 40],
    lr_gamma=0.1,
    lr_warmup_epochs=10,
    lr_warmup_method="linear",
    lr_warmup_decay=0.001,
    output_dir=".",
    resume="",
    start_epoch=0,
    cache_dataset=False,
    sync_bn=False,
    test_only=False,
    use_deterministic_algorithms=False,
    world_size=1,
    dist_url="env://",
    val_resize_size=(128, 171),
    val_crop_size=(112, 112),
    train_resize_size=(128, 171),
    train_crop_size=(112, 112),
    weights=None,
    amp=True,
)


def yacs_config() -> CfgNode:
    """A frozen yacs config shaped like Microsoft's Swin ``config.py`` (``_C``), merged and
    frozen as their ``main.py`` does before training."""
    config = CfgNode()
    config.BASE = [""]
    config.DATA = CfgNode()
    config.DATA.BATCH_SIZE = 128
    config.DATA.IMG_SIZE = 224
    config.MODEL = CfgNode()
    config.MODEL.TYPE = "swin"
    config.MODEL.NAME = "swin_tiny_patch4_window7_224"
    config.MODEL.NUM_CLASSES = 1000
    config.MODEL.SWIN = CfgNode()
    config.MODEL.SWIN.PATCH_SIZE = 4
    config.MODEL.SWIN.EMBED_DIM = SMALL["embed_dim"]
    config.MODEL.SWIN.DEPTHS = list(SMALL["depths"])
    config.MODEL.SWIN.NUM_HEADS = list(SMALL["num_heads"])
    config.MODEL.SWIN.WINDOW_SIZE = 7
    config.TRAIN = CfgNode()
    config.TRAIN.EPOCHS = 300
    config.TRAIN.BASE_LR = 5e-4
    config.freeze()
    return config


def test_torchvision_training_checkpoint_with_its_args_converts(tmp_path):
    checkpoint, weights = torchvision_training_checkpoint(TORCHVISION_ARGS)
    path, plain = tmp_path / "checkpoint.pth", tmp_path / "model_3.pth"
    save_checkpoint(checkpoint, path)
    save_checkpoint(weights, plain)
    loaded = load_checkpoint(path)
    assert_state_equal(loaded.state, load_checkpoint(plain).state)
    assert loaded.source_layout.startswith("torchvision swin3d layout (")
    assert loaded.source_layout.endswith(" (model)")
    out = str(tmp_path / "tv.weights.h5")
    arguments = ["--pth", str(path), "--out", out, "--parity-frames", "8", "--parity-size", "64"]
    result = CliRunner().invoke(main, arguments, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "tv.parity.json").read_text())["passed"]


def test_microsoft_swin_checkpoint_with_its_yacs_config_reads(tmp_path):
    model = timm_swin("swin_tiny_patch4_window7_224", **SMALL)
    published = microsoft_layout(model, timm_layout(model, seed=0))
    training = {
        **published,
        "optimizer": torch.optim.AdamW(model.parameters(), lr=5e-4).state_dict(),
        "lr_scheduler": {"t_initial": 300, "warmup_t": 20},
        "max_accuracy": 81.2,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0},
        "epoch": 299,
        "config": yacs_config(),
    }
    path, plain = tmp_path / "ckpt_epoch_299.pth", tmp_path / "published.pth"
    save_checkpoint(training, path)
    save_checkpoint(published, plain)
    with pytest.raises(Exception, match=r"yacs\.config\.CfgNode"):
        torch.load(path, weights_only=True)  # torch alone refuses it
    assert_state_equal(load_checkpoint(path).state, load_checkpoint(plain).state)


def test_training_objects_are_read_without_importing_their_packages(tmp_path):
    """The stand-ins replace the classes: neither yacs nor mmengine is imported to read them."""
    checkpoint = make_checkpoint(SMALL_SPEC, "mmaction")
    checkpoint |= {"config": yacs_config(), "args": TORCHVISION_ARGS}
    path = tmp_path / "run.pth"
    save_checkpoint(checkpoint, path)
    program = (
        "import sys; from videoswin_tf.convert.sources.checkpoint import load_checkpoint; "
        f"c = load_checkpoint({str(path)!r}); "
        "print(len(c.state), sorted(m for m in sys.modules if m.startswith(('yacs', 'mmengine'))))"
    )
    output = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == f"{len(make_checkpoint(SMALL_SPEC, 'authors')['state_dict'])} []"


@pytest.mark.parametrize("container", ["model", "state_dict"])
def test_the_printed_resave_command_works_on_the_refused_file(tmp_path, container):
    """An argument object of a class that stays refused (here ``fractions.Fraction``): the
    command the message prints re-saves the weights, and the result converts."""
    checkpoint = make_checkpoint(SMALL_SPEC, "authors")
    weights = checkpoint["state_dict"]
    path = tmp_path / "odd run.pth"
    save_checkpoint(
        {container: weights, "epoch": 3, "args": {"lr": fractions.Fraction(1, 3)}}, path
    )
    message = error_of(path)
    command = resave_command(path)
    assert message.endswith(
        f"re-save its weights as a plain state dict and convert that: {command}"
    )
    assert command.startswith(f"{shlex.quote(sys.executable)} -c ")
    subprocess.run(
        command,
        shell=True,
        cwd=tmp_path,
        check=True,
    )
    assert_state_equal(load_checkpoint(tmp_path / "plain.pth").state, load_checkpoint_of(weights))
    result = convert_cli(tmp_path / "plain.pth", tmp_path / "small.weights.h5")
    assert result.exit_code == 0, result.output


def load_checkpoint_of(weights: dict) -> dict[str, np.ndarray]:
    """The canonical state of a plain authors' state dict (final norm renamed)."""
    return {
        key.replace("backbone.norm.", "backbone.norm3."): value.float().numpy()
        for key, value in weights.items()
    }


def test_getattr_answers_only_for_stand_ins_and_never_looks_up(tmp_path):
    """``getattr`` is allowed for a HistoryBuffer's pickled methods only: on anything else
    (here ``OrderedDict.fromkeys``, a global torch allows) it refuses."""
    import collections

    class Lookup:
        def __reduce__(self):
            return (getattr, (collections.OrderedDict, "fromkeys"))

    path = tmp_path / "lookup.pth"
    torch.save(
        {"state_dict": make_checkpoint(SMALL_SPEC, "authors")["state_dict"]} | {"meta": Lookup()},
        path,
    )
    message = error_of(path)
    assert message.startswith(
        f"{path}: holds Python objects that torch's safe loader (weights_only=True) refuses "
        f"(getattr(type, 'fromkeys') refused: only attributes of allow-listed training-run "
        f"objects are read, as None)"
    )
