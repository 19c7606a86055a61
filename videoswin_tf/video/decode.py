"""Decoding: every video frame of a file, RGB uint8, in presentation order, through PyAV.

Frames are counted as decord counts them for mmaction2 (the frames the file really holds, not
the container's metadata, which is 0 for WebM/MKV and an estimate elsewhere); the display
matrix (rotation metadata) is applied; the sample aspect ratio is ignored (frames keep their
coded size), as decord does.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from videoswin_tf.video.extra import import_extra


class VideoError(ValueError):
    """A file that cannot be read as a video; the message names the file."""


@dataclasses.dataclass
class DecodedVideo:
    """A decoded video.

    Attributes:
        path: the file.
        frames: one ``(H, W, 3)`` uint8 RGB array per frame, in presentation order (after the
            ``frame_transform`` given to `read_video`, if any).
        fps: the stream's average frame rate, or ``None`` when the container does not say.
    """

    path: Path
    frames: list[np.ndarray]
    fps: float | None

    @property
    def num_frames(self) -> int:
        return len(self.frames)


def iter_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yield the frames of the first video stream of ``path``: ``(H, W, 3)`` uint8 RGB, in
    presentation order, rotated as its display matrix says.

    Raises:
        VideoError: a missing file, a file FFmpeg cannot open, one without a video stream, or
            a decoding error (a damaged or truncated file).
    """
    av = import_extra("av")
    path = Path(path)
    with _open(av, path) as container:
        yield from _decode(av, container, path)


def read_video(
    path: str | os.PathLike,
    frame_transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> DecodedVideo:
    """Decode every frame of ``path`` (see `iter_frames`).

    Args:
        path: the video file.
        frame_transform: applied to each frame as it is decoded, e.g. a resize, so that only
            the transformed frames are kept in memory.

    Raises:
        VideoError: as `iter_frames`, and for a video stream without a decodable frame.
    """
    av = import_extra("av")
    path = Path(path)
    with _open(av, path) as container:
        rate = container.streams.video[0].average_rate
        frames = [
            frame if frame_transform is None else frame_transform(frame)
            for frame in _decode(av, container, path)
        ]
    if not frames:
        raise VideoError(f"{path}: the video stream holds no decodable frame")
    return DecodedVideo(path, frames, float(rate) if rate else None)


def _decode(av, container, path: Path) -> Iterator[np.ndarray]:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame threads; frames still come out in presentation order
    count = 0
    try:
        for frame in container.decode(stream):
            rgb = frame.to_ndarray(format="rgb24")  # (H, W, 3)
            # `rotation`: degrees counter-clockwise, as np.rot90 turns
            turns = round(frame.rotation / 90) % 4
            yield np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb
            count += 1
    except av.error.FFmpegError as error:
        raise VideoError(
            f"{path}: decoding failed after {count} frames ({_reason(error)}); the file is "
            "damaged or truncated"
        ) from None


def _open(av, path: Path):
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if path.is_dir():
        raise VideoError(f"{path}: is a folder, not a video file")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise VideoError(
            f"{path}: not a video FFmpeg can read ({_reason(error)}); is it truncated or "
            "another kind of file?"
        ) from None
    if not container.streams.video:
        kinds = ", ".join(sorted({stream.type for stream in container.streams})) or "no streams"
        container.close()
        raise VideoError(f"{path}: has no video stream (found {kinds})")
    return container


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)
