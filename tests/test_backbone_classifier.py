"""The keras-hub style pair: `VideoSwinBackbone` and `VideoSwinVideoClassifier` compute what
`TFSwinTransformer3D` computes on the same weights, load its weight files (both formats), and
save and load as `.keras` files and as keras-hub preset directories (local, hf:// offline, and
published preset names against a release made here)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from videoswin_tf import (
    TFSwinTransformer3D,
    VideoSwinBackbone,
    VideoSwinVideoClassifier,
    VideoSwinVideoConverter,
    WeightsMismatchError,
    get_preset,
    tf_video_swin_tiny,
)
from videoswin_tf.weights_file import save_weights

# Sizes that keep the test fast yet force padding (32 / 4 = 8 tokens, window 3) and window
# shrinking (2 patches of frames, window 4). The layout fixture was written with them.
SMALL = {
    "embed_dim": 16,
    "depths": (1, 1, 2, 1),
    "num_heads": (1, 2, 2, 4),
    "window_size": (4, 3, 3),
}
CLASSES = 7
CLIP = np.random.default_rng(0).standard_normal((2, 4, 32, 32, 3)).astype("float32")
LAYOUT = Path(__file__).with_name("data") / "model_layout.txt"
PRESET_FILES = [
    "config.json",
    "metadata.json",
    "model.weights.h5",
    "preprocessor.json",
    "task.json",
    "task.weights.h5",
]


def model_layout() -> list[str]:
    """Variables (path, shape) of `TFSwinTransformer3D` with and without its head, and the
    datasets of its ``.weights.h5``: what tests/data/model_layout.txt recorded before the split."""
    lines = []
    for include_top in (True, False):
        model = TFSwinTransformer3D(include_top=include_top, num_classes=CLASSES, **SMALL)
        tag = "head" if include_top else "nohead"
        lines += [f"{tag} variable {w.path} {'x'.join(map(str, w.shape))}" for w in model.weights]
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "m.weights.h5")
            model.save_weights(path)
            with h5py.File(path) as file:
                lines += [f"{tag} dataset {name} {shape}" for name, shape in datasets(file)]
    return lines


def numpy(tensor) -> np.ndarray:
    """A backend tensor as a NumPy array (torch tensors that track gradients too)."""
    return keras.ops.convert_to_numpy(tensor)


def datasets(file: h5py.File) -> list[tuple[str, str]]:
    """``(path, "AxB")`` of every dataset in ``file``, in h5py's visiting order."""
    found = []
    file.visititems(
        lambda name, item: (
            found.append((name, "x".join(map(str, item.shape))))
            if isinstance(item, h5py.Dataset)
            else None
        )
    )
    return found


@pytest.fixture(scope="module")
def single():
    keras.utils.set_random_seed(0)
    return TFSwinTransformer3D(num_classes=CLASSES, **SMALL)


@pytest.fixture(scope="module")
def files(single, tmp_path_factory) -> dict[str, Path]:
    """Weight files of the single model as the code before the split wrote them."""
    folder = tmp_path_factory.mktemp("old")
    found = {
        "native": folder / "m.weights.h5",
        "legacy": folder / "m.h5",
        "plain": folder / "plain.weights.h5",  # Keras' own save_weights: no recorded config
        "backbone": folder / "backbone.weights.h5",
    }
    save_weights(single, found["native"])
    save_weights(single, found["legacy"])
    single.save_weights(str(found["plain"]))
    headless = TFSwinTransformer3D(include_top=False, **SMALL)
    for want, got in zip(single.weights[: len(headless.weights)], headless.weights, strict=True):
        got.assign(want)
    save_weights(headless, found["backbone"])
    return found


@pytest.fixture(scope="module")
def classifier(files):
    model = VideoSwinVideoClassifier(
        VideoSwinBackbone(**SMALL),
        num_classes=CLASSES,
        class_names=[f"class {index}" for index in range(CLASSES)],
        preprocessor=VideoSwinVideoConverter(pipeline=get_preset("swin_t_k400").pipeline),
    )
    model.load_weights(files["native"])
    return model


def below_the_model(line: str) -> str:
    """A layout line without the model's name, which Keras makes unique per process
    (``tf_swin_transformer3d_1/...`` for the second model built)."""
    tag, kind, path, shape = line.split(" ")
    return f"{tag} {kind} {path.split('/', 1)[1] if kind == 'variable' else path} {shape}"


def test_the_single_model_keeps_its_variables_and_file_layout():
    recorded = LAYOUT.read_text().splitlines()
    assert len(recorded) == 324
    assert [below_the_model(line) for line in model_layout()] == [
        below_the_model(line) for line in recorded
    ]


@pytest.mark.parametrize("kind", ["native", "legacy", "plain", "backbone"])
def test_old_files_load_into_the_backbone(single, files, kind):
    backbone = VideoSwinBackbone(**SMALL)
    backbone.load_weights(files[kind])
    want = single.stage_features(CLIP)
    got = backbone.stage_features(CLIP)
    assert [tuple(map(int, g.shape)) for g in got] == [
        (2, 2, 8, 8, 16),
        (2, 2, 4, 4, 32),
        (2, 2, 2, 2, 64),
        (2, 2, 1, 1, 128),
    ]
    for want_map, got_map in zip(want, got, strict=True):
        np.testing.assert_allclose(numpy(got_map), numpy(want_map), atol=1e-6, rtol=0)
    pooled = numpy(want[-1]).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(numpy(backbone(CLIP)), pooled, atol=1e-6, rtol=0)
    assert numpy(backbone(CLIP)).shape == (2, 128)


@pytest.mark.parametrize("kind", ["native", "legacy", "plain"])
def test_old_files_load_into_the_classifier(single, files, kind):
    model = VideoSwinVideoClassifier(VideoSwinBackbone(**SMALL), num_classes=CLASSES)
    model.load_weights(files[kind])
    logits = numpy(model(CLIP))
    assert logits.dtype == "float32" and logits.shape == (2, CLASSES)
    np.testing.assert_allclose(logits, numpy(single(CLIP)), atol=1e-6, rtol=0)


def test_a_file_for_another_window_is_named(files):
    backbone = VideoSwinBackbone(**SMALL | {"window_size": (2, 3, 3)})
    with pytest.raises(WeightsMismatchError, match=r"window \(window_size\): the file's is "):
        backbone.load_weights(files["native"])
    model = VideoSwinVideoClassifier(VideoSwinBackbone(**SMALL), num_classes=5)
    with pytest.raises(WeightsMismatchError, match="the file's head has 7, the model's 5"):
        model.load_weights(files["native"])


def test_the_converter_normalises_0_255_frames():
    converter = VideoSwinVideoConverter()
    frames = np.array([0.0, 127.5, 255.0], "float32")[:, None] * np.ones((1, 3), "float32")
    got = numpy(converter(frames.reshape(1, 1, 1, 3, 3))).reshape(3, 3)
    mean = np.array([123.675, 116.28, 103.53], "float32")
    std = np.array([58.395, 57.12, 57.375], "float32")
    np.testing.assert_allclose(got, (frames - mean) / std, atol=1e-6)


def test_keras_round_trip(classifier, tmp_path):
    classifier.save(tmp_path / "c.keras")
    loaded = keras.saving.load_model(tmp_path / "c.keras")
    assert type(loaded) is VideoSwinVideoClassifier
    assert loaded.class_names == classifier.class_names
    assert loaded.preprocessor.pipeline == get_preset("swin_t_k400").pipeline
    np.testing.assert_array_equal(numpy(loaded(CLIP)), numpy(classifier(CLIP)))
    assert loaded.predict_engine in ("graph", "xla", "jit", "eager")
    np.testing.assert_allclose(loaded.predict(CLIP, verbose=0), numpy(classifier(CLIP)), atol=1e-5)
    classifier.backbone.save(tmp_path / "b.keras")
    backbone = keras.saving.load_model(tmp_path / "b.keras")
    np.testing.assert_array_equal(numpy(backbone(CLIP)), numpy(classifier.backbone(CLIP)))


def test_preset_round_trip(classifier, tmp_path):
    classifier.save_to_preset(tmp_path / "preset")
    assert sorted(os.listdir(tmp_path / "preset")) == PRESET_FILES
    config = json.loads((tmp_path / "preset" / "config.json").read_text())
    assert (config["class_name"], config["config"]["window_size"]) == (
        "VideoSwinBackbone",
        [4, 3, 3],
    )
    metadata = json.loads((tmp_path / "preset" / "metadata.json").read_text())
    assert metadata["parameter_count"] == classifier.backbone.count_params()
    loaded = VideoSwinVideoClassifier.from_preset(str(tmp_path / "preset"))
    assert loaded.class_names == classifier.class_names
    assert loaded.preprocessor.pipeline == classifier.preprocessor.pipeline
    np.testing.assert_array_equal(numpy(loaded(CLIP)), numpy(classifier(CLIP)))
    backbone = VideoSwinBackbone.from_preset(str(tmp_path / "preset"))
    np.testing.assert_array_equal(numpy(backbone(CLIP)), numpy(classifier.backbone(CLIP)))
    fresh = VideoSwinVideoClassifier.from_preset(str(tmp_path / "preset"), num_classes=3)
    assert fresh.class_names is None and numpy(fresh(CLIP)).shape == (2, 3)


def test_a_preset_missing_a_file_is_named(classifier, tmp_path):
    classifier.save_to_preset(tmp_path / "preset")
    os.remove(tmp_path / "preset" / "task.weights.h5")
    with pytest.raises(ValueError) as error:
        VideoSwinVideoClassifier.from_preset(str(tmp_path / "preset"))
    assert str(error.value) == (
        f"{tmp_path / 'preset'} is not a complete preset: task.weights.h5 is missing; write "
        "the directory with save_to_preset(...)"
    )
    with pytest.raises(ValueError, match=r"^preset 'nope' is neither a preset directory, "):
        VideoSwinBackbone.from_preset("nope")
    (tmp_path / "preset" / "task.json").write_text(
        (tmp_path / "preset" / "config.json").read_text()
    )
    with pytest.raises(ValueError, match=r"task.json describes a VideoSwinBackbone, not a Video"):
        VideoSwinVideoClassifier.from_preset(str(tmp_path / "preset"))


def hf_cache(preset: Path, root: Path, repo: str) -> None:
    """``preset``'s files in a Hugging Face Hub cache at ``root``, in the cache's layout:
    ``models--org--name/{blobs/<sha256>, snapshots/<commit>/<file> -> blob, refs/main}``."""
    folder = root / ("models--" + repo.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "blobs").mkdir()
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in sorted(preset.iterdir()):
        blob = folder / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.write_bytes(path.read_bytes())
        (snapshot / path.name).symlink_to(os.path.relpath(blob, snapshot))


def test_from_preset_on_hf_offline(classifier, tmp_path):
    pytest.importorskip("huggingface_hub")
    classifier.save_to_preset(tmp_path / "preset")
    hf_cache(tmp_path / "preset", tmp_path / "hub", "videoswin-tf/tiny-test")
    np.save(tmp_path / "clip.npy", CLIP)
    code = (
        "import keras, numpy as np, sys; from videoswin_tf import VideoSwinVideoClassifier as C; "
        "m = C.from_preset('hf://videoswin-tf/tiny-test'); "
        "np.save(sys.argv[2], keras.ops.convert_to_numpy(m(np.load(sys.argv[1])))); "
        "C.from_preset('hf://videoswin-tf/not-cached')"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    run = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "clip.npy"), str(tmp_path / "out.npy")],
        env=env,
        capture_output=True,
        text=True,
    )
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), numpy(classifier(CLIP)))
    assert run.returncode == 1
    assert (
        run.stderr.strip()
        .splitlines()[-1]
        .startswith("ValueError: hf://videoswin-tf/not-cached could not be fetched (")
    ), run.stderr[-3000:]


def test_from_preset_on_a_published_name(tmp_path, monkeypatch):
    """A release of one Swin-T K400 file made here, served from a folder, verified by a
    manifest given by path, as `tests/test_pretrained.py` fakes it."""
    keras.utils.set_random_seed(1)
    preset = get_preset("swin_t_k400")
    single = tf_video_swin_tiny(num_classes=400)
    release = tmp_path / "release"
    release.mkdir()
    path = release / f"{preset.release}.weights.h5"
    save_weights(single, path, preset=preset.name, labels=preset.labels)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (release / "manifest.json").write_text(
        json.dumps({"assets": [{"file": path.name, "sha256": digest}]})
    )
    monkeypatch.setenv("VIDEOSWIN_WEIGHTS_URL", str(release))
    monkeypatch.setenv("VIDEOSWIN_WEIGHTS_MANIFEST", str(release / "manifest.json"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert "swin_t_k400" in VideoSwinVideoClassifier.presets
    model = VideoSwinVideoClassifier.from_preset("swin_t_k400")
    assert model.preprocessor.pipeline == preset.pipeline
    assert len(model.class_names) == 400
    clip = CLIP[:1, :2]
    np.testing.assert_allclose(numpy(model(clip)), numpy(single(clip)), atol=1e-6, rtol=0)
    backbone = VideoSwinBackbone.from_preset("swin_t_k400")
    np.testing.assert_allclose(
        numpy(backbone(clip)),
        numpy(single.stage_features(clip)[-1]).mean(axis=(1, 2, 3)),
        atol=1e-6,
    )
