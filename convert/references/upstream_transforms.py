"""mmaction2's own test-time transforms (``SampleFrames``, ``Resize``, ``ThreeCrop``,
``CenterCrop``, ``DecordInit``/``DecordDecode``...), for checking and timing the video pipeline
of `videoswin_tf.video` against the real thing.

Like `references.mmaction2`, the two source files are executed by path under their real dotted
names, with ``mmaction.datasets`` and ``mmaction.datasets.transforms`` registered as empty
namespace modules, so that a broken ``mmaction.datasets`` import cannot stop them.
"""

from __future__ import annotations

import functools
import types

from videoswin_tf.convert.references.mmaction2 import INSTALL_HINT, load_mmaction_files

UPSTREAM_FILES = (
    ("mmaction.datasets.transforms.loading", "datasets/transforms/loading.py"),
    ("mmaction.datasets.transforms.processing", "datasets/transforms/processing.py"),
)
STUB_PACKAGES = ("mmaction.datasets", "mmaction.datasets.transforms")


@functools.cache
def load_transforms() -> types.SimpleNamespace:
    """The installed mmaction2's transform classes, as attributes (``.SampleFrames``...)."""
    try:
        modules = load_mmaction_files(UPSTREAM_FILES, STUB_PACKAGES).values()
    except ImportError as error:
        raise ImportError(
            f"mmaction2's transforms need mmaction2 1.2 with mmengine and mmcv-lite ({error}); "
            f"install them with: {INSTALL_HINT}"
        ) from error
    found = {}
    for module in modules:
        found.update(
            {name: value for name, value in vars(module).items() if isinstance(value, type)}
        )
    return types.SimpleNamespace(**found)


def run_pipeline(steps: list, results: dict) -> dict:
    """Apply mmaction2 transforms in order to a results dict, as its ``Compose`` does."""
    for step in steps:
        results = step.transform(results)
    return results
