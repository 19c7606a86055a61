"""The frames of a video stream as its packets list them: count, timestamps, keyframes.

Demuxing reads only the compressed packets (no decoding), so a table of an hour-long video
costs a few hundred kilobytes and seconds. decord counts a video's frames the same way (one
frame per packet, ordered by presentation time); the decoder agrees with that count when
the stream starts with a keyframe and no packet is corrupt or marked for discarding.
Otherwise the table is not trusted (``trusted`` is False) and frames are counted by decoding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np


@dataclasses.dataclass(frozen=True)
class FrameTable:
    """The frames of one video stream, in presentation order.

    Attributes:
        pts: ``(N,)`` int64 presentation timestamps in the stream's time base, increasing.
        keyframes: ``(K,)`` int64 indices (into ``pts``) of the frames a decoder can start
            from, increasing.
        trusted: every packet has a distinct timestamp, the first one (in decoding order) is a
            keyframe and none is corrupt or to be discarded: ``N`` is the number of frames
            the decoder gives, and seeking to a keyframe by its timestamp is well defined.
    """

    pts: np.ndarray
    keyframes: np.ndarray
    trusted: bool

    def __len__(self) -> int:
        return len(self.pts)

    @classmethod
    def from_packets(cls, packets: Iterable) -> FrameTable:
        """Build the table from demuxed packets (PyAV ``Packet``: ``pts``, ``size``,
        ``is_keyframe``, ``is_corrupt``, ``is_discard``); empty flush packets are skipped."""
        pts: list[int] = []
        key: list[bool] = []
        trusted = True
        for packet in packets:
            if packet.size == 0:
                continue
            if packet.pts is None or packet.is_corrupt or packet.is_discard:
                trusted = False
            if not pts and not packet.is_keyframe:
                trusted = False  # the decoder drops what precedes the first keyframe
            pts.append(-1 if packet.pts is None else packet.pts)
            key.append(bool(packet.is_keyframe))
        times = np.asarray(pts, dtype=np.int64)
        order = np.argsort(times, kind="stable")  # decoding order -> presentation order
        times = times[order]
        if len(times) > 1 and np.any(np.diff(times) == 0):
            trusted = False
        keyframes = np.flatnonzero(np.asarray(key, dtype=bool)[order])
        return cls(times, keyframes, trusted)

    def index_of(self, pts: int | None) -> int | None:
        """The presentation index of the frame with timestamp ``pts``, or ``None``."""
        if pts is None:
            return None
        index = int(np.searchsorted(self.pts, pts))
        return index if index < len(self.pts) and self.pts[index] == pts else None

    def keyframe_before(self, index: int) -> int:
        """The last keyframe at or before frame ``index`` (presentation order); 0 if none."""
        position = int(np.searchsorted(self.keyframes, index, side="right")) - 1
        return int(self.keyframes[position]) if position >= 0 else 0
