"""Which layout a checkpoint is in: `SOURCES`, read top to bottom."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from videoswin_tf.convert.sources.imagenet_2d import MICROSOFT_2D, TIMM_2D
from videoswin_tf.convert.sources.layout import Source
from videoswin_tf.convert.sources.torchvision import TORCHVISION

# Read top to bottom: the first source whose `detect` holds claims the file. mmaction2's own
# layouts (``backbone.*`` keys) match none and are read as before.
SOURCES: tuple[Source, ...] = (TORCHVISION, MICROSOFT_2D, TIMM_2D)


def detect_source(state: Mapping[str, Any]) -> Source | None:
    """The first of `SOURCES` that recognises ``state``, or None (an mmaction2 layout)."""
    for source in SOURCES:
        if source.detect(state):
            return source
    return None
