"""Classify and embed videos: decode, sample, crop, run the views, average the scores.

Scores follow the checkpoints' test protocol (``average_clips='prob'``): softmax per view,
then the mean over views. Features are the backbone output averaged over ``D, H, W`` (what the
I3D head averages) per view, and their mean over views; when both are wanted the backbone runs
once and the head's classifier is applied to the pooled features.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from videoswin_tf.inference import (
    TENSORFLOW_FP32,
    EngineChoice,
    choose,
    openvino_runner,
    tensorflow_model,
)
from videoswin_tf.labels import load_labels
from videoswin_tf.presets import TestPipeline, get_preset
from videoswin_tf.video.decode import read_frames
from videoswin_tf.video.sampling import clip_indices
from videoswin_tf.video.transform import make_views, normalize, resize_short_side

DEFAULT_BATCH = 4  # views per forward pass (the reference's max_testing_views)

# Called after each batch of views with (views done, views in all).
ViewProgress = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True)
class TopClass:
    """One of the top-k classes: its name, index and averaged probability."""

    label: str
    index: int
    probability: float


@dataclasses.dataclass
class VideoViews:
    """The views of one video, ready for the model.

    Attributes:
        path: the video file.
        num_frames: frames in the video.
        indices: ``(clips, clip_len)`` frame indices of the clips.
        views: ``(crops * clips, clip_len, S, S, 3)`` uint8 RGB; view ``crop * clips + clip``.
        pipeline: the pipeline that cut them.
        fps: the stream's average frame rate, or ``None`` when the container does not say.
    """

    path: Path
    num_frames: int
    indices: np.ndarray
    views: np.ndarray
    pipeline: TestPipeline
    fps: float | None = None


@dataclasses.dataclass(repr=False)
class VideoOutput:
    """What the model made of one video's views.

    Its ``repr`` is short enough to read in a notebook: the video, the top classes with their
    probabilities, the engine, and the shape and dtype of each array it holds (not their
    values)::

        VideoOutput(path='clip.mp4', num_frames=300, views='4x3', engine='openvino fp32',
            top=[('abseiling', 0.9123), ('archery', 0.0211)],
            probabilities=float32(400,), view_features=float32(12, 768), features=float32(768,))

    Attributes:
        path: the video file.
        num_frames: frames in the video.
        views: the protocol, e.g. ``"4x3"``.
        probabilities: ``(classes,)`` softmax per view, averaged over views; ``None`` for a
            model without a head.
        top: the ``k`` most probable classes, best first (empty without a head).
        view_features: ``(views, C)`` pooled backbone features per view, when asked for.
        features: ``(C,)`` their mean over views, when asked for.
        stage_map: ``(views, D, H, W, C)`` the backbone output per view, when asked for.
        engine: the engine and precision that ran the views.
    """

    path: Path
    num_frames: int
    views: str
    probabilities: np.ndarray | None = None
    top: list[TopClass] = dataclasses.field(default_factory=list)
    view_features: np.ndarray | None = None
    features: np.ndarray | None = None
    stage_map: np.ndarray | None = None
    engine: EngineChoice = TENSORFLOW_FP32

    def __repr__(self) -> str:
        top = ", ".join(f"({entry.label!r}, {entry.probability:.4f})" for entry in self.top)
        arrays = {
            name: getattr(self, name)
            for name in ("probabilities", "view_features", "features", "stage_map")
            if getattr(self, name) is not None
        }
        held = ", ".join(f"{name}={_shape(array)}" for name, array in arrays.items())
        return (
            f"VideoOutput(path={str(self.path)!r}, num_frames={self.num_frames}, "
            f"views={self.views!r}, engine='{self.engine.engine} {self.engine.precision}',\n"
            f"    top=[{top}]" + (f",\n    {held})" if held else ")")
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON record of `vswin-predict --json`: video, frames, views, the engine and
        precision that ran them, top, probabilities."""
        return {
            "video": str(self.path),
            "frames": self.num_frames,
            "views": self.views,
            "engine": self.engine.engine,
            "precision": self.engine.precision,
            "top": [dataclasses.asdict(entry) for entry in self.top],
            "probabilities": None if self.probabilities is None else self.probabilities.tolist(),
        }


def _shape(array: np.ndarray) -> str:
    """An array as its dtype and shape, e.g. ``float32(12, 768)``."""
    return f"{np.asarray(array).dtype}{tuple(np.shape(array))}"


def view_pipeline(config: str | TestPipeline, views: str | None = None) -> TestPipeline:
    """The test pipeline of a named config (its preset), or ``config`` itself, with the views
    protocol replaced when ``views`` (``"<clips>x<crops>"``, e.g. ``"1x3"``) is given."""
    pipeline = get_preset(config).pipeline if isinstance(config, str) else config
    if views is None:
        return pipeline
    match = re.fullmatch(r"([1-9][0-9]*)x([13])", views)
    if match is None:
        raise ValueError(
            f"views {views!r} must read <clips>x<crops> with 1 or 3 crops, e.g. 4x3, 1x3, 1x1"
        )
    return dataclasses.replace(
        pipeline, num_clips=int(match.group(1)), num_crops=int(match.group(2))
    )


def video_views(
    path: str | os.PathLike, pipeline: TestPipeline, sampling: str = "vswin"
) -> VideoViews:
    """Decode the frames of ``path`` that its clips use, resize them and cut the views.

    Memory holds only those frames, whatever the video's length (`read_frames`).

    Raises:
        videoswin_tf.video.VideoError: the file cannot be read as a video.
    """
    video = read_frames(
        path,
        functools.partial(clip_indices, pipeline=pipeline, protocol=sampling),
        functools.partial(resize_short_side, short_side=pipeline.short_side),
    )
    views = make_views(video.frames, video.indices, pipeline)  # indices (clips, clip_len)
    return VideoViews(video.path, video.num_frames, video.indices, views, pipeline, video.fps)


def run_views(
    model,
    views: np.ndarray,
    batch_size: int = DEFAULT_BATCH,
    features: bool = False,
    stage_map: bool = False,
    progress: ViewProgress | None = None,
    engine: EngineChoice = TENSORFLOW_FP32,
) -> dict[str, np.ndarray]:
    """Run the model on uint8 views ``(V, T, S, S, 3)``, ``batch_size`` views at a time.

    Without ``features`` or ``stage_map`` this is the model per batch (``predict_on_batch`` on
    TensorFlow). With them, one backbone pass per batch gives the pooled features (and the
    stage map), and the logits come from the head's classifier applied to the pooled features.
    ``engine`` runs it (`videoswin_tf.inference`; default TensorFlow in fp32).

    Returns:
        ``"logits"`` ``(V, classes)`` (when the model has a head), ``"pooled"`` ``(V, C)`` and
        ``"stage_map"`` ``(V, D, H, W, C)`` when asked for.
    """
    has_head = getattr(model, "head", None) is not None
    if not (features or stage_map) and not has_head:
        raise ValueError("the model has no head: ask for features (or the stage map)")
    net = model if engine.engine == "openvino" else tensorflow_model(model, engine.precision)
    outputs: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(views), batch_size):
        batch = normalize(views[start : start + batch_size])  # (B, T, S, S, 3) float32
        if features or stage_map:
            extractor = _feature_extractor(net, batch.shape[1:], stage_map)
            what = "stage_map" if stage_map else "pooled"
            found = dict(_run(model, extractor, engine, batch, what))  # pooled (B, C) [, map]
            if has_head:
                found["logits"] = classify_pooled(model, found["pooled"])
        else:
            found = {"logits": np.asarray(_run(model, net, engine, batch, "logits"))}  # (B, K)
        for key, value in found.items():
            outputs.setdefault(key, []).append(np.asarray(value, dtype=np.float32))
        if progress is not None:
            progress(min(start + batch_size, len(views)), len(views))
    return {key: np.concatenate(parts) for key, parts in outputs.items()}


def _run(owner, net, engine: EngineChoice, batch: np.ndarray, what: str):
    """``net`` on one batch with ``engine``; OpenVINO's compiled ``net`` is kept per
    ``owner`` (the caller's model), ``what`` (its role) and clip size."""
    if engine.engine == "tensorflow":
        return net.predict_on_batch(batch)
    return openvino_runner(owner, net, engine.precision, batch.shape, what)(batch)


def classify_pooled(model, pooled: np.ndarray) -> np.ndarray:
    """The head's classifier on pooled features ``(B, C)``: logits ``(B, classes)``."""
    kernel = np.asarray(model.head.fc_cls.kernel, dtype=np.float32)  # (C, classes)
    bias = np.asarray(model.head.fc_cls.bias, dtype=np.float32)  # (classes,)
    return pooled @ kernel + bias


def average_probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax over classes per view, then the mean over views: ``(V, K)`` -> ``(K,)``."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).mean(axis=0)


def top_classes(probabilities: np.ndarray, labels: Sequence[str], k: int) -> list[TopClass]:
    """The ``k`` most probable classes, best first (ties: lower index first)."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [TopClass(labels[i], int(i), float(probabilities[i])) for i in order]


def predict_video(
    model,
    path: str | os.PathLike,
    config: str | TestPipeline = "swin_t_k400",
    views: str | None = None,
    sampling: str = "vswin",
    top: int = 5,
    labels: str | os.PathLike | Sequence[str] | None = None,
    features: bool = False,
    stage_map: bool = False,
    batch_size: int = DEFAULT_BATCH,
    progress: ViewProgress | None = None,
    engine: str | EngineChoice | None = None,
    precision: str = "fp32",
) -> VideoOutput:
    """Everything for one video: averaged probabilities and top-k names (with a head) and,
    when asked, the pooled features and the stage map.

    Args:
        model: a `TFSwinTransformer3D` with its weights loaded.
        path: the video file.
        config: a named config (its preset's test pipeline and label map), or a
            `TestPipeline`.
        views: ``"4x3"``, ``"1x3"``, ``"1x1"``...; default the config's protocol.
        sampling: ``"vswin"`` (the checkpoints' protocol) or ``"mmaction2"`` (1.x test mode).
        top: how many classes to name.
        labels: class names (a list), a label file or shipped map name; default the preset's
            map. Its length must equal the model's classes.
        features: also return the pooled features per view and their mean.
        stage_map: also return the backbone output per view.
        batch_size: views per forward pass.
        progress: called after each batch with (views done, views in all).
        engine: ``"tensorflow"``, ``"openvino"``, an `EngineChoice`, or ``None`` for the
            fastest installed (OpenVINO when installed); the result's ``engine`` names it.
        precision: ``"fp32"`` or ``"bf16"`` (CPUs with AVX512_BF16 or AMX only).

    Raises:
        videoswin_tf.video.VideoError: the file cannot be read as a video.
        ValueError: an unknown config, bad views, labels that do not fit the model, or an
            engine or precision this machine cannot run (`videoswin_tf.inference.choose`).
    """
    if not isinstance(engine, EngineChoice):
        engine = choose(engine, precision)
    pipeline = view_pipeline(config, views)
    names = None
    if getattr(model, "head", None) is not None:
        names = _class_names(model, config, labels)
    cut = video_views(path, pipeline, sampling)
    out = run_views(model, cut.views, batch_size, features, stage_map, progress, engine)
    result = VideoOutput(cut.path, cut.num_frames, pipeline.views, engine=engine)
    if names is not None:
        result.probabilities = average_probabilities(out["logits"])
        result.top = top_classes(result.probabilities, names, top)
    if features:
        result.view_features = out["pooled"]
        result.features = out["pooled"].mean(axis=0)
    result.stage_map = out.get("stage_map")
    return result


def classify_video(
    model,
    path: str | os.PathLike,
    config: str | TestPipeline = "swin_t_k400",
    top: int = 5,
    **options,
) -> list[TopClass]:
    """The ``top`` most probable classes of a video, with names, best first.

    ``options`` are those of `predict_video` (views, sampling, labels, batch_size...).
    """
    return predict_video(model, path, config, top=top, **options).top


def video_features(
    model,
    path: str | os.PathLike,
    config: str | TestPipeline = "swin_t_k400",
    stage_map: bool = False,
    **options,
) -> VideoOutput:
    """Pooled backbone features of a video: ``.features`` ``(C,)`` averaged over views,
    ``.view_features`` ``(views, C)``, and ``.stage_map`` when asked for. ``options`` are
    those of `predict_video`."""
    return predict_video(model, path, config, features=True, stage_map=stage_map, **options)


def _class_names(model, config, labels) -> list[str]:
    if labels is not None and not isinstance(labels, (str, os.PathLike)):
        names = list(labels)
        if len(names) != model.num_classes:
            raise ValueError(
                f"{len(names)} class names given but the model has {model.num_classes} classes"
            )
        return names
    if labels is None:
        if getattr(model, "class_names", None):
            return list(model.class_names)
        if not isinstance(config, str):
            return [str(index) for index in range(model.num_classes)]
        labels = get_preset(config).labels
    return load_labels(labels, model.num_classes)


# model -> {(clip shape, stage_map): its feature extractor}. Weak keys: an entry lives as long as
# its model does (the extractor shares the model's layers but holds no reference to the model).
_FEATURE_EXTRACTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _feature_extractor(model, clip_shape: tuple[int, ...], stage_map: bool):
    """A functional model on ``model``'s layers: clip -> ``{"pooled": (B, C)}``, with
    ``"stage_map"`` ``(B, D, H, W, C)`` when asked for. Built once per model, clip shape and
    ``stage_map``, and forgotten with the model."""
    extractors = _FEATURE_EXTRACTORS.setdefault(model, {})
    key = (tuple(clip_shape), stage_map)
    if key not in extractors:
        extractors[key] = _build_feature_extractor(model, key[0], stage_map)
    return extractors[key]


def _build_feature_extractor(model, clip_shape: tuple[int, ...], stage_map: bool):
    import keras

    clips = keras.Input(clip_shape)  # (B, T, S, S, 3)
    backbone_out = model.stage_features(clips)[-1]  # (B, D, H, W, C)
    pooled = keras.ops.mean(backbone_out, axis=(1, 2, 3))  # (B, C)
    outputs = {"pooled": pooled, "stage_map": backbone_out} if stage_map else {"pooled": pooled}
    return keras.Model(clips, outputs)
