"""Features along time: the streaming snippet pass against the model run on the same windows
cut by hand from every decoded frame."""

import keras
import numpy as np
import pytest
from conftest import SMALL_SPEC
from dataset_model import PIPELINE
from video_files import encode

from videoswin_tf.convert.mapping.rules import assign
from videoswin_tf.convert.mapping.spec import build_keras_model
from videoswin_tf.convert.references.synthetic import distinctive_state
from videoswin_tf.video import SnippetSpec, read_video, snippet_features
from videoswin_tf.video import snippets as snippets_module
from videoswin_tf.video.transform import normalize, resize_short_side


@pytest.fixture(scope="module")
def model():
    state = {key: value.numpy() for key, value in distinctive_state(SMALL_SPEC, seed=0).items()}
    keras_model = build_keras_model(SMALL_SPEC)
    assign(keras_model, state)
    return keras_model


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """20 frames of 48x36 at 25 fps."""
    return encode(tmp_path_factory.mktemp("snippets") / "twenty.mp4", 20, 48, 36)


def by_hand(model, path, starts, clip, crops):
    """Every frame decoded and resized; each window's frames picked (past the end: the last
    frame), cropped by slicing, run through the backbone one window at a time."""
    frames = [resize_short_side(f, 32) for f in read_video(path).frames]  # (32, 43, 3) each
    last = len(frames) - 1
    width = frames[0].shape[1]
    step = (width - 32) // 2  # mmaction2's ThreeCrop: left, 2 * step, step
    lefts = [step] if crops == 1 else [0, 2 * step, step]
    features = []
    for start in starts:
        clip_frames = np.stack([frames[min(start + 2 * k, last)] for k in range(clip)])
        views = np.stack([clip_frames[:, :, left : left + 32] for left in lefts])
        out = backbone(model, views.shape[1:]).predict_on_batch(normalize(views))
        features.append(out.mean(axis=(1, 2, 3)).mean(axis=0))  # (crops, D, H, W, C) -> (C,)
    return np.stack(features)


def backbone(model, clip_shape):
    """The backbone's last stage as a compiled Keras model (the same kernels as the package's
    feature pass; eager calls differ from compiled ones by about 3e-6)."""
    clips = keras.Input(clip_shape)
    return keras.Model(clips, model.stage_features(clips)[-1])


@pytest.mark.parametrize("crops", [1, 3])
def test_snippets_equal_the_model_on_windows_cut_by_hand(model, video, crops):
    """4:3 on 20 frames: snippets span 7 frames; starts 0, 3, ..., 12 are whole, 15 is the
    last, partial one (frames 15, 17, 19, then 19 again)."""
    spec = SnippetSpec(4, 3, crops)
    ours = snippet_features(model, video, spec, PIPELINE, batch_size=crops)
    starts = [0, 3, 6, 9, 12, 15]
    assert ours.num_frames == 20 and ours.fps == 25.0
    assert ours.starts.tolist() == starts
    assert ours.features.shape == (6, 256) and ours.features.dtype == np.float32
    np.testing.assert_allclose(ours.features, by_hand(model, video, starts, 4, crops), atol=1e-6)
    ends = [7, 10, 13, 16, 19, 20]  # the last ends with the video
    np.testing.assert_allclose(ours.times, np.array([starts, ends]).T / 25.0, rtol=0, atol=0)


def test_a_video_shorter_than_one_snippet_is_one_padded_snippet(model, tmp_path):
    path = encode(tmp_path / "five.mp4", 5, 48, 36)
    ours = snippet_features(model, path, "4:2", PIPELINE)
    assert ours.starts.tolist() == [0]
    np.testing.assert_allclose(ours.times, [[0.0, 5 / 25]])
    np.testing.assert_allclose(ours.features, by_hand(model, path, [0], 4, 1), atol=1e-6)


def test_only_sampled_frames_are_resized_and_kept(model, video, monkeypatch):
    """4:4 at interval 2 samples the even frames only; at most one snippet's span is held."""
    resized, held = [], []
    real_resize, real_views = snippets_module.resize_short_side, snippets_module.make_views

    def counting_resize(frame, short_side):
        resized.append(frame)
        return real_resize(frame, short_side)

    def watching_views(frames, indices, pipeline):
        held.append(len(frames))
        return real_views(frames, indices, pipeline)

    monkeypatch.setattr(snippets_module, "resize_short_side", counting_resize)
    monkeypatch.setattr(snippets_module, "make_views", watching_views)
    ours = snippet_features(model, video, "4:4", PIPELINE)
    assert ours.starts.tolist() == [0, 4, 8, 12, 16]  # 16 is partial: 16, 18, 19, 19
    assert len(resized) == 10 + 1  # the even frames, and frame 19 for the padding
    assert max(held) <= 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("32", "snippets '32' must read CLIP:STRIDE"),
        ("0:16", "snippets '0:16' must read CLIP:STRIDE"),
        ("32:x", "snippets '32:x' must read CLIP:STRIDE"),
    ],
)
def test_bad_snippets_are_one_line_errors(text, message):
    with pytest.raises(ValueError, match=message):
        SnippetSpec.parse(text)


def test_counts_follow_the_documented_rule():
    spec = SnippetSpec(32, 16)  # spans 63 frames at interval 2
    assert [spec.count(n, 2) for n in (1, 63, 64, 79, 80, 250)] == [1, 1, 2, 2, 3, 13]
    wide = SnippetSpec(2, 8)  # spans 3 frames: gaps between snippets, none starts past the end
    assert [wide.count(n, 2) for n in (3, 4, 11, 12, 19, 20)] == [1, 1, 2, 2, 3, 3]


def test_cli_writes_snippets_to_the_features_file(tmp_path):
    """--snippets 2:8 --snippet-views 3 with Swin-T weights (the builder's initialisation) on
    a 20-frame video: starts 0, 8, 16 (16 spans 16-18; frame 19 is in none)."""
    import subprocess
    import sys
    from pathlib import Path

    import h5py

    import videoswin_tf
    from videoswin_tf.presets import get_preset

    preset = get_preset("swin_t_k400")
    weights = tmp_path / "tiny.weights.h5"
    getattr(videoswin_tf, preset.builder)(**preset.model_kwargs()).save_weights(str(weights))
    video = encode(tmp_path / "clip.mp4", 20, 64, 48)
    command = [str(Path(sys.executable).parent / "vswin-predict"), str(video)]
    options = ["--weights", str(weights), "--config", "swin_t_k400", "--views", "1x1"]
    more = ["--features", str(tmp_path / "feats"), "--snippets", "2:8", "--snippet-views", "3"]
    done = subprocess.run([*command, *options, *more], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with h5py.File(tmp_path / "feats" / "clip.h5") as file:
        assert file["snippet_features"].shape == (3, 768)
        assert file["snippet_starts"][:].tolist() == [0, 8, 16]
        np.testing.assert_allclose(
            file["snippet_times"][:], [[0, 0.12], [0.32, 0.44], [0.64, 0.76]]
        )
        assert (file.attrs["snippets"], file.attrs["snippet_crops"]) == ("2:8", 3)
