"""The small test model as a picklable loader, for dataset runs in other processes (a killed
run's subprocess, Ray actors): built from `conftest.SMALL_SPEC`, weights from a file; and
`AfterRows`, to act at a known row of a run in any process."""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from videoswin_tf.presets import TestPipeline

# The small model's clips: 1 clip of 4 frames 2 apart, short side 32, one 32x32 centre crop.
PIPELINE = TestPipeline(
    clip_len=4,
    frame_interval=2,
    num_clips=1,
    frame_uniform=False,
    short_side=32,
    crop_size=32,
    num_crops=1,
)
LABELS = [f"class {i}" for i in range(10)]
# The small model as a config file vswin-predict and vswin-convert take ("arch": None: the
# explicit fields of `conftest.SMALL_SPEC`), with `PIPELINE`'s one-clip one-crop protocol and no
# label map, so its classes are named by number.
SMALL_CONFIG = {
    "name": "small",
    "arch": None,
    "embed_dim": 32,
    "depths": [1, 1, 2, 1],
    "num_heads": [1, 2, 4, 8],
    "window_size": [2, 3, 3],
    "patch_size": [2, 4, 4],
    "drop_path_rate": 0.1,
    "num_classes": 10,
    "clip_frames": PIPELINE.clip_len,
    "clip_size": PIPELINE.crop_size,
    "release": None,
    "source": None,
    "test_pipeline": {
        "frame_interval": PIPELINE.frame_interval,
        "num_clips": PIPELINE.num_clips,
        "frame_uniform": PIPELINE.frame_uniform,
        "num_crops": PIPELINE.num_crops,
    },
}


@dataclasses.dataclass(frozen=True)
class SmallWeights:
    """Builds the small model and loads ``weights`` (a ``.weights.h5``) into it."""

    weights: str

    def __call__(self):
        sys.path.insert(0, str(Path(__file__).parent))  # conftest, in another process
        from conftest import SMALL_SPEC

        from videoswin_tf.convert.mapping.spec import build_keras_model

        model = build_keras_model(SMALL_SPEC)
        model.load_weights(self.weights)
        return model


class AfterRows(logging.Handler):
    """Calls ``then()`` once, when a dataset run logs its ``rows``-th row written (on the
    ``videoswin_tf.video.dataset`` logger at INFO): a kill or a Ctrl-C lands at a known point
    however loaded the machine is (a fast run could otherwise finish first)."""

    def __init__(self, rows: int, then: Callable[[], None]):
        super().__init__()
        self.left, self.then = rows, then

    def emit(self, record: logging.LogRecord) -> None:
        if "row written" in record.getMessage():
            self.left -= 1
            if self.left == 0:
                self.then()


def hold() -> None:
    """Stop the run here, for a signal to land."""
    time.sleep(600)


def ctrl_c() -> None:
    """What Ctrl-C raises where it lands."""
    raise KeyboardInterrupt
