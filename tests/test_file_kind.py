"""vswin-convert --pth looks at what the file is before reading it: torch only ever gets a zip
with data.pkl or a pickle stream; Keras files, SavedModels and unknown HDF5 files are named."""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import SMALL_SPEC

from videoswin_tf.convert.cli import main
from videoswin_tf.convert.mapping.rules import extract
from videoswin_tf.convert.mapping.spec import build_keras_model
from videoswin_tf.convert.sources.checkpoint import CheckpointError, load_checkpoint
from videoswin_tf.convert.sources.file_kind import Kind, identify
from videoswin_tf.convert.sources.keras_h5 import SEED_H5
from videoswin_tf.file_kind import Classified, classify
from videoswin_tf.weights_file import CONFIG_ATTRIBUTE, save_weights


@pytest.fixture
def torch_never_reads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was handed a file that is not a checkpoint")

    monkeypatch.setattr(torch, "load", refuse)


def error_of(path: Path) -> str:
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_torch_files_of_both_formats_are_torch(tmp_path):
    torch.save({"a": torch.ones(1)}, tmp_path / "zip.pth")
    torch.save({"a": torch.ones(1)}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    assert identify(tmp_path / "zip.pth") is Kind.TORCH
    assert identify(tmp_path / "old.pth") is Kind.TORCH


def test_classify_tells_every_kind_by_headers_and_members(tmp_path, torch_never_reads):
    """The model package's one classifier: each kind, a zip's members, a damaged file's reason,
    and a `Classified` passed along unchanged."""
    torch.save({"a": torch.ones(1)}, tmp_path / "zip.pth")
    torch.save({"a": torch.ones(1)}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    with h5py.File(tmp_path / "w.h5", "w") as file:
        file.create_group("layers")
    (tmp_path / "cut.h5").write_bytes((tmp_path / "w.h5").read_bytes()[:100])
    for name, members in (("m.keras", ("config.json", "model.weights.h5")), ("p.zip", ("a",))):
        with zipfile.ZipFile(tmp_path / name, "w") as archive:
            for member in members:
                archive.writestr(member, "")
    (tmp_path / "cut.zip").write_bytes((tmp_path / "p.zip").read_bytes()[:30])
    (tmp_path / "notes.txt").write_text("hello world")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "folder").mkdir()
    (tmp_path / "saved" / "variables").mkdir(parents=True)
    (tmp_path / "saved" / "saved_model.pb").write_bytes(b"")
    expected = {
        "zip.pth": (Kind.TORCH, None),
        "old.pth": (Kind.TORCH, None),
        "w.h5": (Kind.HDF5, None),
        "cut.h5": (Kind.HDF5, "Unable to synchronously open file (truncated file: eof = 100, "),
        "m.keras": (Kind.KERAS_ARCHIVE, None),
        "p.zip": (Kind.ZIP, None),
        "cut.zip": (Kind.ZIP, "File is not a zip file"),
        "notes.txt": (Kind.OTHER, None),
        "empty": (Kind.OTHER, None),
        "folder": (Kind.FOLDER, None),
        "saved": (Kind.SAVED_MODEL, None),
        "missing.pth": (Kind.MISSING, None),
    }
    for name, (kind, damage) in expected.items():
        found = classify(str(tmp_path / name))
        assert (found.path, found.kind) == (tmp_path / name, kind), name
        assert (found.damage or "").startswith(damage or ""), name
        assert (found.damage is None) == (damage is None), name
        assert classify(found) is found
    assert classify(tmp_path / "m.keras").members == ("config.json", "model.weights.h5")
    assert classify(tmp_path / "notes.txt").found == "it starts with b'hello wo'"
    assert classify(tmp_path / "empty").found == "it is empty"
    assert classify(tmp_path / "folder") == Classified(tmp_path / "folder", Kind.FOLDER)


def test_an_unknown_hdf5_file_is_named_by_what_it_holds(tmp_path, torch_never_reads):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as file:
        file.attrs["backend"] = "tensorflow"
        file.attrs["keras_version"] = "2.15.0"
        file.create_group("model_weights")
        file.create_group("optimizer_weights")
    assert error_of(path) == (
        f"{path}: is an HDF5 file of no known Video Swin layout (root attributes: backend, "
        "keras_version; top-level groups: model_weights, optimizer_weights); pass what "
        "vswin-convert --pth converts: a PyTorch checkpoint (.pth), the seed's .h5 file or "
        "SavedModel folder, or the Keras 3 rewrite's or KerasCV's .weights.h5 or .keras file"
    )


def test_our_weights_files_are_told_to_load_as_they_are_the_seeds_are_read(
    tmp_path, torch_never_reads
):
    model = build_keras_model(SMALL_SPEC.replace(window_size=(2, 7, 7)))  # the seed's 7x7
    ours, seed = tmp_path / "mine.weights.h5", tmp_path / "TFVideoSwinT_K400.h5"
    save_weights(model, ours)
    save_weights(model, seed)
    with h5py.File(seed, "r+") as file:  # the seed's files record no config
        del file.attrs[CONFIG_ATTRIBUTE]
    assert error_of(ours) == (
        f"{ours}: is a Keras weights file written by videoswin-tf, which needs no conversion: "
        f"model.load_weights('{ours}') reads it; to write a PyTorch checkpoint from it: "
        f"vswin-convert to-torch --weights {ours} --format mmaction2 --out mine.pth"
    )
    spaced = tmp_path / "my run.weights.h5"  # the command printed works when pasted
    save_weights(model, spaced)
    assert error_of(spaced).endswith(
        f"vswin-convert to-torch --weights '{spaced}' --format mmaction2 --out 'my run.pth'"
    )
    loaded = load_checkpoint(seed)  # the seed's own files convert (test_seed_convert.py)
    assert loaded.source is SEED_H5 and loaded.file == seed and loaded.has_head
    expected = extract(model)
    assert sorted(loaded.state) == sorted(expected)
    assert all(np.array_equal(loaded.state[key], expected[key]) for key in expected)


def test_keras_archives_saved_models_and_other_zips_are_named(tmp_path, torch_never_reads):
    archive = tmp_path / "model.keras"
    with zipfile.ZipFile(archive, "w") as file:
        file.writestr("config.json", "{}")
        file.writestr("model.weights.h5", b"")
    assert error_of(archive) == (
        f"{archive}: is a Keras model archive (.keras: a zip holding config.json) of no Video "
        "Swin model vswin-convert reads (it reads the Keras 3 rewrite's and KerasCV's); pass the "
        "PyTorch checkpoint it was made from"
    )
    saved = tmp_path / "saved"
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"")
    assert error_of(saved) == (  # a SavedModel folder goes to its reader, never to torch
        f"{saved}: a SavedModel folder without variables/variables.index, so it holds no "
        "variables to convert; copy the whole folder the seed's model.save wrote"
    )
    other = tmp_path / "photos.pth"
    with zipfile.ZipFile(other, "w") as file:
        for index in range(8):
            file.writestr(f"img{index}.jpg", b"")
    assert error_of(other) == (
        f"{other}: a zip archive that is neither a PyTorch checkpoint (no data.pkl) nor a .keras "
        "archive (no config.json); it holds img0.jpg, img1.jpg, img2.jpg, img3.jpg, img4.jpg, "
        "img5.jpg and 2 more"
    )


def test_neither_zip_nor_pickle_never_reaches_torch(tmp_path, torch_never_reads):
    text, empty = tmp_path / "notes.pth", tmp_path / "empty.pth"
    text.write_text("hello world")
    empty.write_bytes(b"")
    tail = (
        ": not a zip archive, a pickle stream, an HDF5 file or a SavedModel folder); pass a "
        "file written by torch.save"
    )
    assert error_of(text) == (
        f"{text}: could not be read as a PyTorch checkpoint (it starts with b'hello wo'{tail}"
    )
    assert (
        error_of(empty) == f"{empty}: could not be read as a PyTorch checkpoint (it is empty{tail}"
    )


def test_cli_names_an_hdf5_file_in_one_line(tmp_path):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as file:
        file.create_group("layers")
    result = CliRunner().invoke(main, ["--pth", str(path), "--out", str(tmp_path / "y.weights.h5")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"error: {path}: is an HDF5 file of no known Video Swin layout (root attributes: nothing; "
        "top-level groups: layers); pass what vswin-convert --pth converts: a PyTorch checkpoint "
        "(.pth), the seed's .h5 file or SavedModel folder, or the Keras 3 rewrite's or KerasCV's "
        ".weights.h5 or .keras file"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.h5"]


@pytest.fixture(scope="module")
def cut_files(tmp_path_factory):
    """The small model's weights written whole, then cut to half their bytes as an interrupted
    download leaves them: ``.weights.h5``, ``.h5`` and a ``.keras`` archive."""
    folder = tmp_path_factory.mktemp("cut")
    model = build_keras_model(SMALL_SPEC)
    cut = {}
    for name in ("small.weights.h5", "small.h5"):
        save_weights(model, folder / name)
        data = (folder / name).read_bytes()
        cut[name] = folder / f"cut_{name}"
        cut[name].write_bytes(data[: len(data) // 2])
    with zipfile.ZipFile(folder / "small.keras", "w") as archive:
        archive.writestr("config.json", "{}")
        archive.write(folder / "small.weights.h5", "model.weights.h5")
    data = (folder / "small.keras").read_bytes()
    cut["small.keras"] = folder / "cut_small.keras"
    cut["small.keras"].write_bytes(data[: len(data) // 2])
    return model, cut


CUT_SHORT = (
    "it is probably cut short (an interrupted download or copy): fetch or write the file again"
)


def test_a_file_cut_short_is_one_line_everywhere(cut_files, tmp_path, torch_never_reads):
    """A truncated HDF5 or .keras file is named as such by vswin-convert --pth, to-torch,
    load_weights and weights=, never h5py's OSError or zipfile's BadZipFile."""
    model, cut = cut_files
    h5 = cut["small.weights.h5"]
    reason = f"{h5}: cannot be read (Unable to synchronously open file (truncated file: eof = "
    for path in (h5, cut["small.h5"]):
        message = error_of(path)
        assert message.startswith(f"{path}: cannot be read (Unable to synchronously open file")
        assert message.endswith(CUT_SHORT)
        with pytest.raises(ValueError) as caught:
            model.load_weights(str(path))
        assert str(caught.value) == message
    with pytest.raises(ValueError) as caught:
        model.load_weights(str(cut["small.keras"]))
    assert (
        str(caught.value)
        == f"{cut['small.keras']}: cannot be read (File is not a zip file); {CUT_SHORT}"
    )
    result = CliRunner().invoke(
        main,
        [
            "to-torch",
            "--weights",
            str(h5),
            "--format",
            "mmaction2",
            "--out",
            str(tmp_path / "x.pth"),
        ],
    )
    assert result.exit_code == 2
    assert result.output.splitlines()[-1].startswith(f"error: {reason}")
    assert result.output.splitlines()[-1].endswith(CUT_SHORT)
    assert not (tmp_path / "x.pth").exists()


def test_weights_argument_names_a_cut_or_foreign_keras_archive(cut_files, tmp_path):
    """``weights=`` on a truncated ``.keras`` says it is cut short, and on a ``.keras`` of some
    other model that it is none this package reads, not that the name must end in ``.h5``."""
    from videoswin_tf.pretrained import resolve

    cut = cut_files[1]["small.keras"]
    with pytest.raises(ValueError) as caught:
        resolve(str(cut))
    assert str(caught.value) == f"{cut}: cannot be read (File is not a zip file); {CUT_SHORT}"
    foreign = tmp_path / "other.keras"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("config.json", '{"class_name": "Sequential", "module": "keras"}')
        archive.writestr("model.weights.h5", b"")
    with pytest.raises(ValueError) as caught:
        resolve(str(foreign))
    assert str(caught.value) == (  # as load_weights says it (refuse_foreign)
        f"{foreign}: is a .keras archive of no Video Swin model this package reads (it reads the "
        "Keras 3 rewrite's and KerasCV's); load a Video Swin weights file (one written by "
        "vswin-convert or model.save_weights, the seed's .h5, or the Keras 3 rewrite's or "
        "KerasCV's file), or convert its PyTorch checkpoint with vswin-convert --pth "
        "CHECKPOINT.pth"
    )


def test_load_weights_names_an_hdf5_file_of_another_model_in_one_line(cut_files, tmp_path):
    """``load_weights`` (and so ``weights=``) on the HDF5 weights of another network: one line
    with what the file holds and what to load, not Keras' list of every variable it could not
    load; a plain ``save_weights`` file of this package's models still loads, and one of
    another head still gets Keras' own error."""
    import keras

    from videoswin_tf import VideoSwinBackbone, VideoSwinVideoClassifier

    model = cut_files[0]
    dense = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    dense.save_weights(str(tmp_path / "dense.weights.h5"))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as file:
        file.attrs["note"] = "x"
        file.create_group("encoder").create_dataset("w", data=[1.0])
    advice = (
        "load a Video Swin weights file (one written by vswin-convert or model.save_weights, the "
        "seed's .h5, or the Keras 3 rewrite's or KerasCV's file), or convert its PyTorch "
        "checkpoint with vswin-convert --pth CHECKPOINT.pth"
    )
    expected = {
        tmp_path / "dense.weights.h5": "root attributes: nothing; top-level groups: layers, vars",
        other: "root attributes: note; top-level groups: encoder",
    }
    sizes = ("embed_dim", "depths", "num_heads", "window_size")
    backbone = VideoSwinBackbone(**{key: getattr(SMALL_SPEC, key) for key in sizes})
    classifier = VideoSwinVideoClassifier(backbone, num_classes=10)
    for path, holds in expected.items():
        for load in (model.load_weights, classifier.load_weights):
            with pytest.raises(ValueError) as caught:
                load(str(path))
            assert str(caught.value) == (
                f"{path}: is an HDF5 file of no known Video Swin layout ({holds}); {advice}"
            )
    dense.save(str(tmp_path / "dense.keras"))
    with pytest.raises(ValueError) as caught:
        model.load_weights(str(tmp_path / "dense.keras"))
    assert str(caught.value) == (
        f"{tmp_path / 'dense.keras'}: is a .keras archive of no Video Swin model this package "
        f"reads (it reads the Keras 3 rewrite's and KerasCV's); {advice}"
    )
    from videoswin_tf.video.model_setup import predict_setup  # vswin-predict, with --config

    for config in (None, "swin_t_k400"):
        with pytest.raises(ValueError) as caught:
            predict_setup(other, config)
        assert str(caught.value) == f"{other}: is an HDF5 file of no known Video Swin layout " + (
            f"({expected[other]}); {advice}"
        )
    plain = tmp_path / "plain.weights.h5"
    keras.Model.save_weights(model, str(plain))  # Keras' own: no recorded config
    model.load_weights(str(plain))
    other_head = build_keras_model(SMALL_SPEC.replace(num_classes=3))
    with pytest.raises(ValueError, match=r"^A total of 1 objects could not be loaded"):
        other_head.load_weights(str(plain))


def test_a_pytorch_checkpoint_a_misnamed_h5_or_a_missing_file_given_to_keras(cut_files, tmp_path):
    """``load_weights``, ``weights=`` and vswin-predict's reader on a PyTorch checkpoint (zip or
    pickle) name the vswin-convert command that converts it; a non-HDF5 file named ``.h5`` and
    a missing file are one line each, not h5py's messages."""
    import torch

    from videoswin_tf.pretrained import resolve
    from videoswin_tf.weights_file import read_file_config

    model = cut_files[0]
    zipped, pickled = tmp_path / "ckpt.pth", tmp_path / "old.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, zipped)
    torch.save({"w": torch.zeros(2)}, pickled, _use_new_zipfile_serialization=False)
    for path in (zipped, pickled):
        stem = path.name.removesuffix(".pth")
        message = (
            f"{path}: is a PyTorch checkpoint, not Keras weights; convert it once, then load "
            f"{stem}.weights.h5, adding --config swin_t_k400 (or the named config it was trained "
            "as; vswin-convert --help lists them) to record its classes' names: "
            f"vswin-convert --pth {path} --out {stem}.weights.h5"
        )
        for read in (model.load_weights, resolve, read_file_config):
            with pytest.raises(ValueError) as caught:
                read(str(path))
            assert str(caught.value) == message
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError) as caught:
        model.load_weights(str(garbage))
    assert str(caught.value) == (
        f"{garbage}: is no HDF5 file (it starts with b'not hdf5') though its name ends in .h5; "
        "pass a weights file written by model.save_weights or vswin-convert"
    )
    with pytest.raises(FileNotFoundError) as caught:
        model.load_weights(str(tmp_path / "missing.weights.h5"))
    assert str(caught.value) == f"{tmp_path / 'missing.weights.h5'}: no such file"


def test_a_plain_folder_given_as_weights_is_one_line(cut_files, tmp_path):
    """A folder that is no SavedModel, given to load_weights, weights= or vswin-predict's
    reader, says to pass the file itself (not Keras' "file format not supported")."""
    from videoswin_tf.pretrained import resolve
    from videoswin_tf.video.model_setup import predict_setup

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for read in (cut_files[0].load_weights, resolve, predict_setup):
        with pytest.raises(ValueError) as caught:
            read(folder)
        assert str(caught.value) == (
            f"{folder}: is a folder, not a weights file; pass the .weights.h5, .h5 or .keras "
            "file itself (or a SavedModel folder, converted once with vswin-convert --pth "
            "FOLDER)"
        )


def test_a_file_is_classified_once_per_load(cut_files, tmp_path, monkeypatch):
    """load_weights, weights= and vswin-predict's reader classify the file once and hand the
    answer to each of their checks (refuse_saved_model, refuse_unreadable, read_file_config,
    refuse_foreign), however many of them run."""
    from videoswin_tf import file_kind, pretrained, weights_file
    from videoswin_tf.video import model_setup

    model = cut_files[0]
    path = tmp_path / "small.weights.h5"
    save_weights(model, path)
    classified = []

    def counted(given):
        if not isinstance(given, Classified):
            classified.append(given)
        return file_kind.classify(given)

    for module in (weights_file, pretrained, model_setup):
        monkeypatch.setattr(module, "classify", counted)
    for read in (model.load_weights, pretrained.resolve, model_setup.predict_setup):
        classified.clear()
        read(str(path))
        assert [Path(given) for given in classified] == [path], read
