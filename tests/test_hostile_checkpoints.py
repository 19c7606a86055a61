"""Checkpoints as training runs and attackers leave them: numpy objects in ``meta`` (accepted,
under numpy 2's and numpy 1's module names), code hidden beside them (refused, never run) and
NaN or infinite weights (refused, nothing written)."""

from __future__ import annotations

import builtins
import os
import pickletools
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import SMALL_SPEC
from zip_members import members, rewrite_pickle

from videoswin_tf.convert.cli import main
from videoswin_tf.convert.references.synthetic import (
    distinctive_state,
    make_checkpoint,
    save_checkpoint,
)
from videoswin_tf.convert.sources.checkpoint import CheckpointError, load_checkpoint

NUMPY2 = b"numpy._core.multiarray"
NUMPY1 = b"numpy.core.multiarray"


def training_meta() -> dict:
    """``meta`` as an mmcv/mmengine training run writes it, with every kind of numpy object."""
    return {
        "epoch": 30,
        "iter": np.int64(12345),
        "hook_msgs": {"best_score": np.float64(0.788), "improved": np.bool_(True)},
        "lr": np.array(0.001),
        "confusion": np.arange(12, dtype=np.int32).reshape(3, 4),
        "dtype": np.dtype("float16"),
        "labels": np.array(["a", "bb"]),
        "empty": np.zeros((0, 3)),  # its data pickles as bytes() (fuzz case 53 found it)
    }


def pickle_globals(path: Path) -> set[str]:
    data = next(data for name, data in members(path) if name.endswith("/data.pkl"))
    names = set()
    for opcode, argument, _ in pickletools.genops(data):
        if opcode.name == "GLOBAL":
            names.add(argument)
    return names


@pytest.fixture(scope="module")
def numpy2_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("numpy") / "numpy2.pth"
    checkpoint = make_checkpoint(SMALL_SPEC, layout="authors")
    checkpoint["meta"].update(training_meta())
    save_checkpoint(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def numpy1_file(numpy2_file) -> Path:
    """The same checkpoint as numpy 1 pickles it: ``numpy.core.multiarray`` names."""
    path = numpy2_file.with_name("numpy1.pth")
    path.write_bytes(numpy2_file.read_bytes())
    rewrite_pickle(path, lambda data: data.replace(NUMPY2, NUMPY1))
    return path


def test_the_files_use_the_module_names_they_claim(numpy2_file, numpy1_file):
    expected = {"scalar", "_reconstruct"}
    two = {name for name in pickle_globals(numpy2_file) if name.startswith("numpy")}
    one = {name for name in pickle_globals(numpy1_file) if name.startswith("numpy")}
    assert two == {f"numpy._core.multiarray {n}" for n in expected} | {
        "numpy dtype",
        "numpy ndarray",
    }
    assert one == {f"numpy.core.multiarray {n}" for n in expected} | {
        "numpy dtype",
        "numpy ndarray",
    }
    assert "__builtin__ bytes" in pickle_globals(numpy2_file)


@pytest.mark.parametrize("variant", ["numpy2_file", "numpy1_file"])
def test_numpy_metadata_is_read_and_weights_are_exact(request, variant):
    loaded = load_checkpoint(request.getfixturevalue(variant))
    expected = distinctive_state(SMALL_SPEC, seed=0)
    assert len(loaded.state) == len(expected)
    for key, value in expected.items():
        key = key.replace("backbone.norm.", "backbone.norm3.")
        np.testing.assert_array_equal(loaded.state[key], value.numpy(), err_msg=key)


def test_torch_refuses_numpy_metadata_on_its_own(numpy2_file):
    """The allowlist is what makes these files load (so the tests above can fail), and it is
    scoped: torch's global allowlist is not changed by loading one."""
    load_checkpoint(numpy2_file)
    with pytest.raises(Exception, match=r"numpy\._core\.multiarray\.scalar"):
        torch.load(numpy2_file, weights_only=True)


@pytest.mark.parametrize("variant", ["numpy2_file", "numpy1_file"])
def test_numpy_metadata_converts_with_parity(request, tmp_path, variant):
    out = tmp_path / "small.weights.h5"
    result = CliRunner().invoke(
        main, ["--pth", str(request.getfixturevalue(variant)), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output
    assert out.is_file()


class _Payload:
    """Pickles as a call of ``function(argument)``: code a malicious checkpoint would run."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


# name: (payload for a marker file, what torch's refusal says)
PAYLOADS = {
    "os.system": (
        lambda marker: (os.system, f"touch {marker}"),
        "GLOBAL posix.system whose module posix is blocked",
    ),
    "builtins.eval": (
        lambda marker: (builtins.eval, f"open({str(marker)!r}, 'w').close()"),
        "Unsupported global: GLOBAL eval was not an allowed global",
    ),
    "builtins.exec": (
        lambda marker: (builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "Unsupported global: GLOBAL exec was not an allowed global",
    ),
}


@pytest.mark.parametrize("numpy_names", [NUMPY2, NUMPY1])
@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_code_hidden_beside_numpy_objects_is_refused_and_never_runs(tmp_path, payload, numpy_names):
    marker = tmp_path / "pwned"
    checkpoint = make_checkpoint(SMALL_SPEC, layout="authors")
    checkpoint["meta"].update(training_meta())
    make_payload, refusal = PAYLOADS[payload]
    checkpoint["meta"]["hook_msgs"]["note"] = _Payload(*make_payload(marker))
    path = tmp_path / "evil.pth"
    save_checkpoint(checkpoint, path)
    rewrite_pickle(path, lambda data: data.replace(NUMPY2, numpy_names))

    # The payload is real: an unsafe load runs it.
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()

    out = tmp_path / "evil.weights.h5"
    result = CliRunner().invoke(main, ["--pth", str(path), "--out", str(out), "--no-parity"])
    assert result.exit_code == 2
    message = result.output.strip().splitlines()[-1]
    assert message.startswith(f"error: {path}: holds Python objects that torch's safe loader")
    assert refusal in message
    assert "never lets a checkpoint run code" in message
    assert not marker.exists()
    assert list(tmp_path.iterdir()) == [path]


def test_bytes_with_arguments_stays_refused(tmp_path):
    """bytes() is allowed for empty arrays; bytes(n) would allocate n bytes."""
    checkpoint = make_checkpoint(SMALL_SPEC, layout="authors")
    checkpoint["meta"]["x"] = _Payload(bytes, 10**15)
    path = tmp_path / "bytes.pth"
    save_checkpoint(checkpoint, path)
    with pytest.raises(CheckpointError, match="safe loader"):
        load_checkpoint(path)


def test_other_numpy_functions_stay_refused(tmp_path):
    """Only the reconstruction globals are allowed, not the rest of numpy."""
    marker = tmp_path / "saved.npy"
    checkpoint = make_checkpoint(SMALL_SPEC, layout="authors")
    checkpoint["meta"]["x"] = _Payload(np.save, str(marker))
    path = tmp_path / "numpy_call.pth"
    save_checkpoint(checkpoint, path)
    with pytest.raises(CheckpointError, match=r"numpy\.save"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("no_parity", [False, True])
def test_non_finite_weights_are_refused_naming_every_key(tmp_path, no_parity):
    checkpoint = make_checkpoint(SMALL_SPEC, layout="authors")
    state = checkpoint["state_dict"]
    state["backbone.layers.0.blocks.0.mlp.fc1.weight"][0, :3] = float("nan")
    state["cls_head.fc_cls.bias"][1] = float("inf")
    state["backbone.norm.weight"][0] = float("-inf")
    path = tmp_path / "diverged.pth"
    save_checkpoint(checkpoint, path)
    out = tmp_path / "diverged.weights.h5"
    args = ["--pth", str(path), "--out", str(out)] + (["--no-parity"] if no_parity else [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"error: {path}: 3 tensors hold NaN or infinite values: "
        "backbone.layers.0.blocks.0.mlp.fc1.weight (3 of 4096), "
        "backbone.norm3.weight (1 of 256), cls_head.fc_cls.bias (1 of 10); the training run "
        "diverged or the file is damaged, convert an earlier checkpoint"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diverged.pth"]


def test_half_precision_overflow_is_caught_too(tmp_path):
    checkpoint = make_checkpoint(SMALL_SPEC, layout="half")
    checkpoint["state_dict"]["cls_head.fc_cls.weight"][0, 0] = float("inf")
    path = tmp_path / "half.pth"
    save_checkpoint(checkpoint, path)
    with pytest.raises(CheckpointError, match=r"cls_head.fc_cls.weight \(1 of 2560\)"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "key, index, flagged",
    [
        # LayerNorm right after: every output is infinite or NaN in the reference too.
        (
            "backbone.patch_embed.proj.weight",
            (0, 0, 0, 0, 0),
            "stage 0, stage 1, stage 2, stage 3, logits",
        ),
        # Fuzz case 430: stage 1 reaches 3.1e38, finite; torch's LayerNorm copes, a float32
        # variance overflows, so the Keras model gave NaN and parity failed (exit 1).
        ("backbone.layers.0.downsample.reduction.weight", (6, 101), "stage 1"),
    ],
)
def test_finite_weights_that_overflow_are_refused_not_failed(tmp_path, key, index, flagged):
    """3e38 is a finite float32, but nothing useful can be computed from it: the file is
    refused (exit 2), not failed on parity (exit 1)."""
    checkpoint = make_checkpoint(SMALL_SPEC, layout="authors")
    checkpoint["state_dict"][key][index] = 3e38
    path = tmp_path / "huge.pth"
    save_checkpoint(checkpoint, path)
    out = tmp_path / "huge.weights.h5"
    result = CliRunner().invoke(
        main, ["--pth", str(path), "--out", str(out), "--parity-frames", "4", "--parity-size", "32"]
    )
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == (
        "error: the upstream reference computes NaN, infinite or huge values (above 1.8e+19, "
        f"beyond float32 once squared) from these weights ({flagged}) on the parity clip: the "
        f"weights are out of range (largest magnitude 3e+38, in {key}); nothing written"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.pth"]


def test_a_reader_error_quoting_the_file_is_cut_to_one_short_line(tmp_path):
    """Fuzz case 690 of the 18-mutation corpus (members swapped): torch's error quoted
    kilobytes of tensor bytes. The same bytes: the mutation with that case's generator."""
    import random

    from fuzz_corpus import MUTATIONS

    path = tmp_path / "swapped.pth"
    path.write_bytes(MUTATIONS["swap_members"](random.Random("0:690")))
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert ": cannot be read (ValueError: invalid literal" in message
    assert message.endswith("fetch or write the file again")
    assert "\n" not in message and len(message) < len(str(path)) + 330, len(message)
