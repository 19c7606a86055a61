"""Features along time: one pooled feature vector per window (snippet) over a whole video, as
temporal action localization pipelines consume them.

A snippet ``CLIP:STRIDE`` is ``CLIP`` frames sampled at the checkpoint's frame interval (so
``32`` spans 63 source frames, (32 - 1) * 2 + 1, for the Kinetics checkpoints); a new
snippet starts every ``STRIDE`` source frames, from frame 0. Its feature is the backbone
output averaged over ``D, H, W`` (what the I3D head averages), then over its crops (1 centre
crop or 3 crops, as the test pipeline cuts them).

The last partial window: snippets start at ``0, STRIDE, 2 * STRIDE, ...`` (inside the video)
until one reaches the last frame; a video of ``N`` frames with snippets spanning
``L = (CLIP - 1) * interval + 1`` frames has
``1 + min(max(0, ceil((N - L) / STRIDE)), (N - 1) // STRIDE)`` snippets. Only the last can run
past the end: its missing frames repeat the last frame, as mmaction2's
``SampleFrames(out_of_bound_opt="repeat_last")`` pads them. (With ``STRIDE`` above ``L`` the
frames between snippets, and after the last one, are in none.)

Times are in seconds from the frame rate: a snippet starting at frame ``s`` runs from ``s / fps``
to ``min(s + L, N) / fps`` (the end of its last real frame); NaN when the container gives no
frame rate.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path

import numpy as np

from videoswin_tf.inference import TENSORFLOW_FP32, EngineChoice
from videoswin_tf.presets import TestPipeline
from videoswin_tf.video.decode import FrameStream, VideoError
from videoswin_tf.video.predict import DEFAULT_BATCH, run_views, view_pipeline
from videoswin_tf.video.transform import make_views, resize_short_side


@dataclasses.dataclass(frozen=True)
class SnippetSpec:
    """How a video is cut into snippets.

    Attributes:
        clip: frames sampled per snippet (at the pipeline's frame interval).
        stride: source frames between the starts of two snippets.
        crops: crops per snippet: 1 (centre) or 3 (``ThreeCrop``), averaged.
    """

    clip: int
    stride: int
    crops: int = 1

    def __post_init__(self):
        if self.clip < 1 or self.stride < 1:
            raise ValueError(f"snippets need CLIP and STRIDE of at least 1, got {self}")
        if self.crops not in (1, 3):
            raise ValueError(f"snippet crops must be 1 (centre) or 3, got {self.crops}")

    @classmethod
    def parse(cls, text: str, crops: int = 1) -> SnippetSpec:
        """``"CLIP:STRIDE"``, e.g. ``"32:16"``."""
        match = re.fullmatch(r"([1-9][0-9]*):([1-9][0-9]*)", text.strip())
        if match is None:
            raise ValueError(
                f"snippets {text!r} must read CLIP:STRIDE (sampled frames per snippet : source "
                "frames between snippet starts), e.g. 32:16"
            )
        return cls(int(match.group(1)), int(match.group(2)), crops)

    def span(self, interval: int) -> int:
        """Source frames one snippet covers at frame interval ``interval``."""
        return (self.clip - 1) * interval + 1

    def count(self, num_frames: int, interval: int) -> int:
        """Snippets in a video of ``num_frames`` frames (see the module docstring)."""
        reaching = max(0, math.ceil((num_frames - self.span(interval)) / self.stride))
        return 1 + min(reaching, (num_frames - 1) // self.stride)


@dataclasses.dataclass
class SnippetFeatures:
    """The features of a video along time.

    Attributes:
        path: the video file.
        num_frames: frames in the video.
        fps: the stream's average frame rate, or ``None``.
        spec: how the video was cut.
        starts: ``(S,)`` int64 first source frame of each snippet.
        times: ``(S, 2)`` float64 start and end of each snippet in seconds.
        features: ``(S, C)`` float32 pooled backbone features, averaged over crops.
    """

    path: Path
    num_frames: int
    fps: float | None
    spec: SnippetSpec
    starts: np.ndarray
    times: np.ndarray
    features: np.ndarray


def snippet_pipeline(config: str | TestPipeline, spec: SnippetSpec) -> TestPipeline:
    """The config's test pipeline (resize, crop size, frame interval) cutting one clip of
    ``spec.clip`` frames in ``spec.crops`` crops."""
    pipeline = view_pipeline(config, f"1x{spec.crops}")
    return dataclasses.replace(pipeline, clip_len=spec.clip, frame_uniform=False)


def snippet_features(
    model,
    path: str | os.PathLike,
    snippets: str | SnippetSpec = "32:16",
    config: str | TestPipeline = "swin_t_k400",
    batch_size: int = DEFAULT_BATCH,
    engine: EngineChoice = TENSORFLOW_FP32,
) -> SnippetFeatures:
    """One pooled feature vector per snippet over the whole video, in one streaming pass.

    Memory holds the resized frames of the snippets not yet run (at most one snippet's span,
    plus ``batch_size`` views), whatever the video's length.

    Args:
        model: a `TFSwinTransformer3D` with its weights loaded.
        path: the video file.
        snippets: ``"CLIP:STRIDE"`` (1 crop) or a `SnippetSpec`.
        config: a named config (its frame interval, resize and crop size) or a `TestPipeline`.
        batch_size: views per forward pass.
        engine: what runs the model (`videoswin_tf.inference`; default TensorFlow in fp32).

    Raises:
        videoswin_tf.video.VideoError: the file cannot be read as a video.
        ValueError: bad snippets or an unknown config.
    """
    spec = SnippetSpec.parse(snippets) if isinstance(snippets, str) else snippets
    pipeline = snippet_pipeline(config, spec)
    interval, span = pipeline.frame_interval, spec.span(pipeline.frame_interval)
    runner = _SnippetRunner(model, spec.crops, batch_size, engine)
    kept: dict[int, np.ndarray] = {}  # index -> resized frame, for snippets not yet cut
    last = None
    num_frames = done = 0

    def cut(number: int) -> None:
        start = number * spec.stride
        indices = np.minimum(start + np.arange(spec.clip) * interval, num_frames - 1)
        runner.add(make_views(kept, indices[None, :], pipeline))

    with FrameStream(path) as stream:
        fps = stream.fps
        for index, rgb in stream:
            num_frames = index + 1
            last = rgb
            if _sampled(index, spec.stride, interval, span):
                kept[index] = resize_short_side(rgb(), pipeline.short_side)
            if index == done * spec.stride + span - 1:  # snippet `done` is complete
                cut(done)
                done += 1
                kept = {i: frame for i, frame in kept.items() if i >= done * spec.stride}
        if last is None:
            raise VideoError(f"{path}: the video stream holds no decodable frame")
        if done < spec.count(num_frames, interval):  # the last, partial snippet
            kept.setdefault(num_frames - 1, resize_short_side(last(), pipeline.short_side))
            cut(done)
    features = runner.finish()
    starts = np.arange(len(features), dtype=np.int64) * spec.stride
    ends = np.minimum(starts + span, num_frames)
    times = np.stack([starts, ends], axis=1) / (fps or math.nan)
    return SnippetFeatures(Path(path), num_frames, fps, spec, starts, times, features)


def _sampled(index: int, stride: int, interval: int, span: int) -> bool:
    """Whether frame ``index`` is sampled by a snippet (one starting at a multiple of
    ``stride`` at or before it, less than ``span`` frames before it, on its interval)."""
    first = max(0, -(-(index - span + 1) // stride))  # the earliest snippet that reaches it
    return any(
        (index - number * stride) % interval == 0 for number in range(first, index // stride + 1)
    )


class _SnippetRunner:
    """Runs snippets' views through the model in batches; keeps their pooled features."""

    def __init__(self, model, crops: int, batch_size: int, engine: EngineChoice):
        self.model, self.crops, self.batch_size, self.engine = model, crops, batch_size, engine
        self.pending: list[np.ndarray] = []  # (crops, T, S, S, 3) uint8 per snippet
        self.features: list[np.ndarray] = []  # (C,) float32 per snippet

    def add(self, views: np.ndarray) -> None:
        self.pending.append(views)
        if len(self.pending) * self.crops >= self.batch_size:
            self._run()

    def finish(self) -> np.ndarray:
        self._run()
        return np.stack(self.features)  # (S, C)

    def _run(self) -> None:
        if not self.pending:
            return
        views = np.concatenate(self.pending)  # (snippets * crops, T, S, S, 3)
        pooled = run_views(self.model, views, self.batch_size, features=True, engine=self.engine)[
            "pooled"
        ]
        self.features.extend(pooled.reshape(len(self.pending), self.crops, -1).mean(axis=1))
        self.pending = []
