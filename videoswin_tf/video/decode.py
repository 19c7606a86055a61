"""Decoding: the frames of a video file, RGB uint8, in presentation order, through PyAV.

Frames are counted as decord counts them for mmaction2 (the frames the file really holds, not
the container's metadata, which is 0 for WebM/MKV and an estimate elsewhere); the display
matrix (rotation metadata) is applied; the sample aspect ratio is ignored (frames keep their
coded size), as decord does.

The video stream is the one FFmpeg's ``av_find_best_stream`` picks, attached pictures (cover
art) left out. Every frame comes out at the stream's size (the first frame's): when the size
changes mid-stream (two recordings joined), later frames are scaled to it with FFmpeg's
bilinear swscale, as decord asks FFmpeg to.

`read_frames` keeps only the frames a sampling asks for, so its memory does not grow with the
video: it counts the frames from the demuxed packets (`FrameTable`), then seeks to the keyframe
before each wanted frame and decodes from there. Where the packets cannot be trusted to give
the decoder's count, or a seek does not land where the table says, it decodes sequentially
instead, keeping only the wanted frames (counting by decoding first when needed).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from videoswin_tf.video.extra import import_extra
from videoswin_tf.video.frame_table import FrameTable

# swscale's algorithm for converting frames of more than 8 bits (10-bit 4:2:0/4:2:2 H.264 and
# HEVC) to RGB: nearest chroma, the conversion decord (FFmpeg 4.1's swscale) makes of them.
# Measured against decord 0.6.0: 4:2:2 10-bit identical; 4:2:0 10-bit mean |diff| 0.03 levels
# on bikes.mp4 (0.08 with swscale's bilinear) and 6.3 on saturated 8x8 colour blocks (10.9);
# the largest differences stay (up to 200 on such blocks), as today's swscale has no setting
# that reproduces FFmpeg 4.1's vertical chroma filter. 8-bit frames are converted by
# swscale's exact YUV-to-RGB paths, equal to decord's whatever the setting.
HIGH_BIT_DEPTH_CONVERSION = "POINT"

# Seeks to try for one stretch of wanted frames, each from the keyframe before the last try's,
# before decoding the whole file instead.
SEEK_TRIES = 3

# Frame index choice: the number of frames -> the indices wanted (any shape, in [0, N)).
FrameChooser = Callable[[int], np.ndarray]
FrameTransform = Callable[[np.ndarray], np.ndarray]


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


@dataclasses.dataclass
class SampledVideo:
    """The frames of a video that a sampling asked for (`read_frames`).

    Attributes:
        path: the file.
        num_frames: frames in the video.
        fps: the stream's average frame rate, or ``None``.
        indices: what the chooser returned for ``num_frames`` (int, any shape).
        frames: ``{index: (H, W, 3) uint8}`` for every index in ``indices``, after the
            ``frame_transform``.
        frames_decoded: frames the decoder produced to get them (the cost; at most
            ``num_frames`` when seeking works, up to twice that when frames had to be counted
            by decoding).
    """

    path: Path
    num_frames: int
    fps: float | None
    indices: np.ndarray
    frames: dict[int, np.ndarray]
    frames_decoded: int


def iter_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yield every frame of the video stream of ``path``: ``(H, W, 3)`` uint8 RGB, in
    presentation order, rotated as its display matrix says.

    Raises:
        VideoError: a missing file, a file FFmpeg cannot open, one without a video stream, or
            a decoding error (a damaged or truncated file).
    """
    with _VideoFile(Path(path)) as video:
        for _, frame in video.frames():
            yield video.rgb(frame)


class FrameStream:
    """Every frame of a video, decoded one at a time and converted to RGB only when asked:
    for a streaming pass that keeps only the frames it needs (`snippet_features`).

    Use as a context manager; iterating yields ``(index, rgb)`` with ``rgb()`` giving the
    ``(H, W, 3)`` uint8 RGB frame as `iter_frames` does. ``fps``: the stream's average frame
    rate, or ``None`` when the container does not say.

    Raises:
        VideoError: as `iter_frames`.
    """

    def __init__(self, path: str | os.PathLike):
        self._video = _VideoFile(Path(path))
        self.path = self._video.path
        self.fps = self._video.fps

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc) -> None:
        self._video.__exit__(*exc)

    def __iter__(self) -> Iterator[tuple[int, Callable[[], np.ndarray]]]:
        for index, frame in self._video.frames():
            yield index, functools.partial(self._video.rgb, frame)


def read_video(
    path: str | os.PathLike,
    frame_transform: FrameTransform | None = None,
) -> DecodedVideo:
    """Decode every frame of ``path`` (see `iter_frames`). Memory grows with the video: to
    sample clips, use `read_frames`.

    Args:
        path: the video file.
        frame_transform: applied to each frame as it is decoded, e.g. a resize, so that only
            the transformed frames are kept in memory.

    Raises:
        VideoError: as `iter_frames`, and for a video stream without a decodable frame.
    """
    transform = frame_transform or _unchanged
    with _VideoFile(Path(path)) as video:
        frames = [transform(video.rgb(frame)) for _, frame in video.frames()]
        fps = video.fps
    if not frames:
        raise VideoError(f"{path}: the video stream holds no decodable frame")
    return DecodedVideo(Path(path), frames, fps)


def read_frames(
    path: str | os.PathLike,
    choose: FrameChooser,
    frame_transform: FrameTransform | None = None,
) -> SampledVideo:
    """Decode only the frames ``choose(num_frames)`` names, with memory bounded by them.

    The frames and their count are those `read_video` gives, pixel for pixel; only the
    frames kept (and their transform) differ.

    Args:
        path: the video file.
        choose: the number of frames -> the wanted indices, e.g. the clips of a sampling.
        frame_transform: applied to each wanted frame, e.g. a resize.

    Raises:
        VideoError: as `read_video`.
    """
    path = Path(path)
    transform = frame_transform or _unchanged
    with _VideoFile(path) as video:
        table = video.frame_table()
        fps = video.fps
    if table.trusted and len(table):
        indices = choose(len(table))
        try:
            with _VideoFile(path) as video:
                frames, decoded = _seek_frames(video, table, indices, transform)
            return SampledVideo(path, len(table), fps, indices, frames, decoded)
        except _SeekMiss:
            pass  # decode sequentially below
    return _sequential_frames(path, len(table), fps, choose, transform)


class _SeekMiss(Exception):
    """Seeking did not give the frames the table promised."""


def _seek_frames(
    video: _VideoFile, table: FrameTable, indices: np.ndarray, transform: FrameTransform
) -> tuple[dict[int, np.ndarray], int]:
    """The wanted frames, each decoded from the keyframe before it (one seek per stretch of
    wanted frames that a keyframe separates). The last frame is decoded too, to confirm the
    count. A seek that lands past the wanted frame is retried from earlier keyframes (MPEG-TS
    seeks by bisecting timestamps, not through an index). Raises `_SeekMiss` when the frames
    do not come as the table says."""
    keep = {int(index) for index in np.unique(indices)}
    wanted = sorted(keep | {len(table) - 1})
    frames: dict[int, np.ndarray] = {}
    decoded = done = 0
    try:
        while done < len(wanted):
            key = table.keyframe_before(wanted[done])
            for _ in range(SEEK_TRIES):
                video.seek(int(table.pts[key])) if key else video.rewind()
                done, count, landed = _decode_stretch(
                    video, table, wanted, done, keep, frames, transform
                )
                decoded += count
                if landed:
                    break
                key = table.keyframe_before(key - 1)
            else:
                raise _SeekMiss
    except VideoError:
        raise _SeekMiss from None
    return frames, decoded


def _decode_stretch(
    video: _VideoFile,
    table: FrameTable,
    wanted: list[int],
    done: int,
    keep: set[int],
    frames: dict[int, np.ndarray],
    transform: FrameTransform,
) -> tuple[int, int, bool]:
    """Decode from where a seek left the file until every wanted frame is done or a keyframe
    lies before the next one, keeping (in ``frames``) the wanted frames in ``keep``.

    Returns:
        the wanted frames done, the frames decoded, and False when the seek landed past
        ``wanted[done]`` or at the end of the stream (nothing kept then).
    """
    first, position, decoded = done, -1, 0
    for index, frame in video.frames(table):
        decoded += 1
        if index is None or index <= position:
            raise _SeekMiss  # a timestamp the table does not hold, or out of order
        if index > wanted[done]:
            if done == first:
                return done, decoded, False
            raise _SeekMiss  # a wanted frame never came
        position = index
        if index < wanted[done]:
            continue
        if index in keep:
            frames[index] = transform(video.rgb(frame))
        done += 1
        if done == len(wanted) or table.keyframe_before(wanted[done]) > index:
            return done, decoded, True  # done, or seeking to the next keyframe skips frames
    if done == first:
        return done, decoded, False  # the seek landed past the wanted frame, or at the end
    raise _SeekMiss  # the stream ended before a wanted frame


def _sequential_frames(
    path: Path,
    count: int,
    fps: float | None,
    choose: FrameChooser,
    transform: FrameTransform,
) -> SampledVideo:
    """Decode every frame, keeping the wanted ones; when the decoder's count differs from
    ``count`` (or ``count`` is 0), decode again with the indices chosen for the real count."""
    decoded_total = 0
    for _ in range(2):
        indices = choose(count) if count else np.zeros(0, np.int64)
        keep = {int(index) for index in np.unique(indices)}
        frames: dict[int, np.ndarray] = {}
        decoded = 0
        with _VideoFile(path) as video:
            for index, frame in video.frames():
                if index in keep:
                    frames[index] = transform(video.rgb(frame))
                decoded = index + 1
        decoded_total += decoded
        if decoded == 0:
            raise VideoError(f"{path}: the video stream holds no decodable frame")
        if decoded == count:
            return SampledVideo(path, count, fps, indices, frames, decoded_total)
        count = decoded
    raise VideoError(f"{path}: two decodes gave different frame counts; the file is damaged")


class _VideoFile:
    """An open video file: its video stream and the size every frame is given."""

    def __init__(self, path: Path):
        self.av = import_extra("av")
        self.path = path
        self._open_stream()
        context = self.stream.codec_context
        self.size = (context.width, context.height) if context.width and context.height else None
        rate = self.stream.average_rate
        self.fps = float(rate) if rate else None

    def _open_stream(self) -> None:
        self.container = _open(self.av, self.path)
        try:
            self.stream = _video_stream(self.container, self.path)
        except VideoError:
            self.container.close()
            raise
        self.stream.thread_type = "AUTO"  # frame threads; frames still come in order

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.container.close()

    def frame_table(self) -> FrameTable:
        """Demux (without decoding) the stream's packets into a `FrameTable`."""
        demuxed = _Demuxed(self.av, self.container, self.stream)
        table = FrameTable.from_packets(demuxed)
        return table if demuxed.complete else dataclasses.replace(table, trusted=False)

    def rewind(self) -> None:
        """Back to the first frame: the file opened afresh (a seek to the start can land
        after the first keyframe: MPEG-TS seeks by bisecting timestamps)."""
        self.container.close()
        self._open_stream()

    def seek(self, pts: int) -> None:
        """Move to the keyframe at or before ``pts`` (the stream's time base)."""
        try:
            self.container.seek(pts, stream=self.stream, backward=True)
        except self.av.error.FFmpegError as error:
            raise VideoError(f"{self.path}: seeking failed ({_reason(error)})") from None

    def frames(self, table: FrameTable | None = None) -> Iterator[tuple[int | None, object]]:
        """Decode from the current position: ``(index, av.VideoFrame)``, the index counted
        from the start (no ``table``) or looked up by timestamp in ``table``."""
        count = 0
        try:
            for frame in self.container.decode(self.stream):
                yield (count if table is None else table.index_of(frame.pts)), frame
                count += 1
        except self.av.error.FFmpegError as error:
            raise VideoError(
                f"{self.path}: decoding failed after {count} frames ({_reason(error)}); the "
                "file is damaged or truncated"
            ) from None

    def rgb(self, frame) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB of a decoded frame at the stream's size, rotated as the
        display matrix says."""
        size = self.size or (frame.width, frame.height)
        if (frame.width, frame.height) != size:  # changed mid-stream: scale, as decord does
            rgb = frame.to_ndarray(
                width=size[0], height=size[1], format="rgb24", interpolation="BILINEAR"
            )
        elif frame.format.components[0].bits > 8:  # see HIGH_BIT_DEPTH_CONVERSION
            rgb = frame.to_ndarray(format="rgb24", interpolation=HIGH_BIT_DEPTH_CONVERSION)
        else:
            rgb = frame.to_ndarray(format="rgb24")
        # `rotation`: degrees counter-clockwise, as np.rot90 turns
        turns = round(frame.rotation / 90) % 4
        return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


class _Demuxed:
    """The stream's packets; a demuxing error ends them and clears ``complete``."""

    def __init__(self, av, container, stream):
        self.av, self.container, self.stream = av, container, stream
        self.complete = True

    def __iter__(self):
        try:
            yield from self.container.demux(self.stream)
        except self.av.error.FFmpegError:
            self.complete = False


def _open(av, path: Path):
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if path.is_dir():
        raise VideoError(f"{path}: is a folder, not a video file")
    try:
        # metadata that is not UTF-8 (a damaged or foreign tag) must not stop the video
        return av.open(str(path), metadata_errors="replace")
    except av.error.FFmpegError as error:
        raise VideoError(
            f"{path}: not a video FFmpeg can read ({_reason(error)}); is it truncated or "
            "another kind of file?"
        ) from None


def _video_stream(container, path: Path):
    """The video stream FFmpeg's ``av_find_best_stream`` picks when asked for its decoder:
    attached pictures (cover art: one still image, the ``attached_pic`` disposition) and
    streams without a decoder (an unknown codec, or a damaged header) left out. Its ranking:
    not marked for the hearing or visually impaired, plus marked default; then more frames
    (up to 5); then the higher bit rate; then more frames. Ties keep the first stream."""
    disposition = import_extra("av").stream.Disposition
    videos = [s for s in container.streams.video if not s.disposition & disposition.attached_pic]
    if not videos:
        kinds = {stream.type for stream in container.streams if stream.type != "video"}
        kinds |= {"cover art" for _ in container.streams.video}
        found = ", ".join(sorted(kinds)) or "no streams"
        raise VideoError(f"{path}: has no video stream (found {found})")
    videos = [stream for stream in videos if stream.codec_context is not None]
    if not videos:
        raise VideoError(
            f"{path}: FFmpeg has no decoder for its video stream (the codec is unknown or its "
            "header is damaged); is it truncated or another kind of file?"
        )

    def rank(stream) -> tuple[int, int, int, int]:
        impaired = disposition.hearing_impaired | disposition.visual_impaired
        flags = stream.disposition
        score = (not flags & impaired) + bool(flags & disposition.default)
        return score, min(5, stream.frames), stream.bit_rate or 0, stream.frames

    return max(videos, key=rank)  # max keeps the first of equals, as FFmpeg does


def _unchanged(frame: np.ndarray) -> np.ndarray:
    return frame


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)
