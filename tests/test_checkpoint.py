"""Reading checkpoints in every published layout, and refusing bad ones with clear messages."""

import os
import pathlib
import pickle
import struct

import numpy as np
import pytest
import torch
from conftest import SMALL_SPEC

from videoswin_tf.convert.references.synthetic import (
    LAYOUTS,
    distinctive_state,
    make_checkpoint,
    save_checkpoint,
)
from videoswin_tf.convert.sources.checkpoint import (
    CheckpointError,
    load_checkpoint,
    numpy_globals,
    resave_command,
)
from videoswin_tf.convert.sources.training_objects import training_object_globals

RENAMED = (
    "renamed backbone.norm.bias, backbone.norm.weight to backbone.norm3.* (mmaction2 1.x name)"
)
AUTHORS = "authors' Video-Swin layout"


@pytest.fixture(scope="module")
def canonical():
    """The values every layout holds, in canonical form."""
    return {key: value.numpy() for key, value in distinctive_state(SMALL_SPEC, seed=0).items()}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("layouts")
    paths = {}
    for layout in LAYOUTS:
        paths[layout] = folder / f"{layout}.pth"
        save_checkpoint(make_checkpoint(SMALL_SPEC, layout=layout, seed=0), paths[layout])
    return paths


def float_count(state):
    return sum(1 for value in state.values() if value.dtype == np.float32)


def test_layouts_constant():
    assert LAYOUTS == ("authors", "mmaction", "module", "bare", "backbone_only", "half")


@pytest.mark.parametrize(
    "layout, source_layout, has_head",
    [
        ("authors", f"{AUTHORS} (state_dict, backbone.norm)", True),
        ("mmaction", "mmaction2 1.x layout (state_dict, backbone.norm3)", True),
        ("module", f"{AUTHORS} (state_dict, module. prefix, backbone.norm)", True),
        ("bare", f"{AUTHORS} (bare state dict, backbone.norm)", True),
        ("backbone_only", f"{AUTHORS} (state_dict, backbone.norm)", False),
        ("half", f"{AUTHORS} (state_dict, backbone.norm)", True),
    ],
)
def test_every_layout_loads_to_the_same_canonical_state(
    saved, canonical, layout, source_layout, has_head
):
    loaded = load_checkpoint(saved[layout])
    expected = canonical
    if layout == "backbone_only":
        expected = {k: v for k, v in canonical.items() if not k.startswith("cls_head.")}
    if layout == "half":
        expected = {
            k: v.astype(np.float16).astype(np.float32) if v.dtype == np.float32 else v
            for k, v in canonical.items()
        }
    assert list(loaded.state) == list(expected)
    for key, value in expected.items():
        assert loaded.state[key].dtype == value.dtype, key
        np.testing.assert_array_equal(loaded.state[key], value, err_msg=key)
    assert loaded.source_layout == source_layout
    assert loaded.has_head is has_head
    notes = {
        "authors": [RENAMED],
        "mmaction": [
            "dropped data_preprocessor.mean, data_preprocessor.std "
            "(input normalisation buffers, not weights)"
        ],
        "module": [f"stripped the module. prefix (DDP) from {len(canonical)} keys", RENAMED],
        "bare": [RENAMED],
        "backbone_only": [RENAMED, "no cls_head.* keys: backbone-only checkpoint"],
        "half": [RENAMED, f"cast {float_count(canonical)} float16 tensors to float32"],
    }[layout]
    assert loaded.notes == notes


def test_published_containers_are_exact(saved):
    authors = torch.load(saved["authors"], weights_only=True)
    assert set(authors) == {"meta", "state_dict"}
    assert "backbone.norm.weight" in authors["state_dict"]
    assert "backbone.norm3.weight" not in authors["state_dict"]

    # the message hub holds mmengine HistoryBuffers, read through the converter's stand-ins
    with torch.serialization.safe_globals(numpy_globals() + training_object_globals()):
        mmaction = torch.load(saved["mmaction"], weights_only=True)
    assert set(mmaction) == {"meta", "state_dict", "message_hub"}
    assert mmaction["meta"]["seed"] == 0 and "not trained weights" in mmaction["meta"]["note"]
    assert isinstance(mmaction["message_hub"], dict)
    assert len(mmaction["message_hub"]["log_scalars"]["train/loss"]._log_history) == 3
    mean, std = (
        mmaction["state_dict"]["data_preprocessor.mean"],
        mmaction["state_dict"]["data_preprocessor.std"],
    )
    assert mean.shape == std.shape == (3, 1, 1, 1)
    np.testing.assert_allclose(mean.flatten(), [123.675, 116.28, 103.53], rtol=1e-6)
    np.testing.assert_allclose(std.flatten(), [58.395, 57.12, 57.375], rtol=1e-6)

    module = torch.load(saved["module"], weights_only=True)["state_dict"]
    assert all(
        key.startswith("module.backbone.") or key.startswith("module.cls_head.") for key in module
    )

    bare = torch.load(saved["bare"], weights_only=True)
    assert all(isinstance(value, torch.Tensor) for value in bare.values())

    half = torch.load(saved["half"], weights_only=True)["state_dict"]
    assert half["backbone.norm.weight"].dtype == torch.float16
    assert half["backbone.layers.0.blocks.0.attn.relative_position_index"].dtype == torch.int64


def test_make_checkpoint_rejects_an_unknown_layout():
    with pytest.raises(
        ValueError,
        match="unknown layout 'ddp'; choose one of authors, mmaction, module, bare, "
        "backbone_only, half",
    ):
        make_checkpoint(SMALL_SPEC, layout="ddp")


def test_save_checkpoint_is_atomic(tmp_path):
    target = tmp_path / "model.pth"
    save_checkpoint({"state_dict": {"backbone.x": torch.ones(2)}}, target)
    with pytest.raises((pickle.PicklingError, AttributeError)):  # torch raises either
        save_checkpoint({"state_dict": {"backbone.x": lambda: 0}}, target)  # cannot be pickled
    assert torch.equal(
        torch.load(target, weights_only=True)["state_dict"]["backbone.x"], torch.ones(2)
    )
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]


def test_model_container_and_other_casts(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(
        {
            "model": {
                "backbone.norm3.weight": torch.ones(4, dtype=torch.bfloat16),
                "backbone.norm3.bias": torch.zeros(4, dtype=torch.bfloat16),
                "backbone.layers.0.blocks.0.attn.relative_position_index": torch.zeros(
                    2, 2, dtype=torch.int32
                ),
                "epoch": 3,
            }
        },
        path,
    )
    loaded = load_checkpoint(path)
    assert loaded.source_layout == "mmaction2 1.x layout (model, backbone.norm3)"
    assert loaded.notes == [
        "ignored model entries that are not tensors: epoch",
        "cast 2 bfloat16 tensors to float32",
        "cast 1 int32 tensor to int64",
        "no cls_head.* keys: backbone-only checkpoint",
    ]
    assert loaded.state["backbone.layers.0.blocks.0.attn.relative_position_index"].dtype == np.int64
    assert loaded.state["backbone.norm3.weight"].dtype == np.float32


def error_of(path) -> str:
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    return str(error.value)


def test_missing_file_and_directory(tmp_path):
    assert error_of(tmp_path / "nope.pth") == (
        f"{tmp_path / 'nope.pth'}: file not found; check the path of the .pth checkpoint"
    )
    assert error_of(tmp_path) == (
        f"{tmp_path}: is a directory but not a TensorFlow SavedModel folder (that holds "
        "saved_model.pb and variables/); pass the .pth checkpoint file itself, or a SavedModel "
        "folder such as the seed's model.save(folder) writes"
    )


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    message = error_of(path)
    assert message.startswith(f"{path}: could not be read as a PyTorch checkpoint (")
    assert message.endswith("); pass a file written by torch.save")


def test_a_checkpoint_cut_short(tmp_path):
    """torch.save's zip and its legacy pickle stream, each cut in half: the HDF5 wording,
    torch's first sentence only (not miniz's advice after it)."""
    for legacy in (False, True):
        path = tmp_path / f"cut{int(legacy)}.pth"
        torch.save({"w": torch.ones(1000)}, path, _use_new_zipfile_serialization=not legacy)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        detail = (
            "RuntimeError: unexpected EOF, expected 2176 more bytes"
            if legacy
            else "RuntimeError: PytorchStreamReader failed reading zip archive: failed finding "
            "central directory"
        )
        assert error_of(path) == (
            f"{path}: cannot be read ({detail}); it is probably cut short (an interrupted "
            "download or copy): fetch or write the file again"
        )


CUT_SHORT = (
    "it is probably cut short (an interrupted download or copy): fetch or write the file again"
)


def test_a_legacy_checkpoint_cut_at_any_byte_is_cut_short(tmp_path):
    """torch's legacy format (a pickle stream, as torch before 1.6 wrote) of the authors'
    Video-Swin layout (meta and state_dict), cut at every byte. Inside its pickles torch's safe
    loader fails with an EOFError, IndexError or struct.error, or refuses a global whose name
    the cut clipped (``collections.OrderedDic``): one cut-short text for all. Inside the
    tensor's data (its element count, 8 bytes, then 3 float32) torch's own count of missing
    bytes."""
    checkpoint = make_checkpoint(SMALL_SPEC, layout="authors", seed=0)
    checkpoint["state_dict"] = {"cls_head.fc_cls.bias": torch.arange(3.0)}
    path = tmp_path / "legacy.pth"
    torch.save(checkpoint, path, _use_new_zipfile_serialization=False)
    whole = path.stat().st_size
    assert load_checkpoint(path).state["cls_head.fc_cls.bias"].tolist() == [0.0, 1.0, 2.0]
    data = whole - 8 - 3 * 4  # where the pickles end and the storage begins
    torch_errors = set()
    for size in range(whole - 1, 0, -1):
        os.truncate(path, size)
        with pytest.raises(CheckpointError) as error:
            load_checkpoint(path)
        if size < data:
            detail = f"the file ends inside its pickled objects, at byte {size}"
            torch_errors.add(type(error.value.__cause__).__name__)
        else:
            missing = data + 8 - size if size < data + 8 else whole - size
            detail = f"RuntimeError: unexpected EOF, expected {missing} more bytes"
        assert str(error.value) == f"{path}: cannot be read ({detail}); {CUT_SHORT}", size
    assert torch_errors == {"EOFError", "IndexError", "UnpicklingError", "error"}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
def test_a_pickle_claiming_more_bytes_than_the_file_holds(tmp_path):
    """A length the pickle claims (BINBYTES8 of 2**40 bytes) is read up to the file's end, never
    allocated first: the file is cut short, said in one line."""
    path = tmp_path / "claims.pth"
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"abc")
    assert error_of(path) == (
        f"{path}: cannot be read (the file ends inside its pickled objects, at byte 14); "
        f"{CUT_SHORT}"
    )


def test_a_whole_legacy_checkpoint_holding_objects_is_still_refused(tmp_path):
    """A legacy-format file whose pickles are whole but hold an object the safe loader refuses:
    refused as before, cut inside its tensors' data too; cut before the object, cut short. The
    object's code never runs."""
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    path = tmp_path / "payload.pth"
    checkpoint = {"state_dict": {"backbone.norm3.weight": torch.ones(4)}, "extra": Payload()}
    torch.save(checkpoint, path, _use_new_zipfile_serialization=False)
    whole = path.read_bytes()
    refusal = (
        f"{path}: holds Python objects that torch's safe loader (weights_only=True) refuses "
        "(Unsupported global: GLOBAL pathlib.Path was not an allowed global by default); "
        "this converter never lets a checkpoint run code. If you trust the file, re-save its "
        f"weights as a plain state dict and convert that: {resave_command(path)}"
    )
    assert error_of(path) == refusal
    path.write_bytes(whole[:-5])  # inside the tensor's 16 bytes of data
    assert error_of(path) == refusal
    cut = whole.index(b"pathlib")
    path.write_bytes(whole[:cut])
    assert error_of(path) == (
        f"{path}: cannot be read (the file ends inside its pickled objects, at byte {cut}); "
        f"{CUT_SHORT}"
    )
    assert not marker.exists()


def test_not_a_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.ones(1)], path)
    assert error_of(path) == (
        f"{path}: holds a list, not a dict; expected a checkpoint dict (with 'state_dict' or "
        f"'model') or a state dict of tensors"
    )


def test_no_tensors(tmp_path):
    path = tmp_path / "meta.pth"
    torch.save({"meta": {"epoch": 1}, "optimizer": {}}, path)
    assert error_of(path) == (
        f"{path}: no tensors found at the top level (top-level keys: meta, optimizer); expected "
        f"weights under 'state_dict' or 'model', or a bare state dict of tensors"
    )
    torch.save({"meta": {}, "state_dict": {}}, path)
    assert error_of(path).startswith(f"{path}: no tensors found in its 'state_dict' entry (")


def test_both_final_norm_names(tmp_path):
    path = tmp_path / "both.pth"
    torch.save(
        {
            "state_dict": {
                "backbone.norm.weight": torch.ones(2),
                "backbone.norm3.weight": torch.ones(2),
            }
        },
        path,
    )
    assert error_of(path) == (
        f"{path}: holds both backbone.norm.weight and backbone.norm3.weight; the final norm must "
        f"be one or the other (authors' files use backbone.norm, mmaction2 1.x backbone.norm3). "
        f"Remove the stale copy and re-save"
    )


def test_keys_outside_backbone_and_head(tmp_path):
    path = tmp_path / "unprefixed.pth"
    keys = [f"layers.0.blocks.{j}.norm1.weight" for j in range(10)] + ["patch_embed.proj.bias"]
    torch.save({"backbone.norm3.weight": torch.ones(1), **{k: torch.ones(1) for k in keys}}, path)
    assert error_of(path) == (
        f"{path}: 11 keys neither backbone.* nor cls_head.*: "
        + ", ".join(keys[:8])
        + " and 3 more. They look like a Swin backbone saved without the 'backbone.' prefix, "
        "mixed with prefixed keys; re-save the keys with 'backbone.' in front"
    )
    torch.save(
        {"state_dict": {"backbone.norm3.weight": torch.ones(1), "fc.weight": torch.ones(1)}}, path
    )
    assert error_of(path) == (
        f"{path}: 1 key neither backbone.* nor cls_head.*: fc.weight. This does not look like a "
        "Video Swin recognizer checkpoint; --pth takes a Video Swin recognizer's or backbone's "
        "checkpoint (mmaction2's or the authors' Video-Swin .pth: backbone.* and cls_head.* "
        "keys), torchvision's swin3d_t/s/b, a 2D ImageNet Swin (Microsoft's or timm's), or the "
        "seed's, the Keras 3 rewrite's or KerasCV's Keras files (vswin-convert --help, under "
        "Sources, says what each needs)"
    )


def test_pickled_objects_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    path = tmp_path / "payload.pth"
    torch.save({"state_dict": {"backbone.norm3.weight": torch.ones(1)}, "extra": Payload()}, path)
    message = error_of(path)
    assert not marker.exists()
    assert message.startswith(
        f"{path}: holds Python objects that torch's safe loader (weights_only=True) refuses "
        f"(Unsupported global: GLOBAL "
    )
    assert "this converter never lets a checkpoint run code" in message
    assert message.endswith(f"convert that: {resave_command(path)}")


def test_a_key_both_with_and_without_the_ddp_prefix(tmp_path):
    path = tmp_path / "clash.pth"
    torch.save(
        {"module.backbone.norm3.weight": torch.ones(1), "backbone.norm3.weight": torch.ones(1)},
        path,
    )
    assert error_of(path) == (
        f"{path}: holds both module.backbone.norm3.weight and the same keys without the module. "
        f"prefix; keep one copy and re-save"
    )
