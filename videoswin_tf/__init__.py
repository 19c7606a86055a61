"""Video Swin Transformer for Keras 3.

Importing the package is cheap and leaves the process as it was: the public names are imported
from their modules on first use (PEP 562, `videoswin_tf.lazy`), so ``import videoswin_tf`` loads
neither TensorFlow nor Keras; Keras starts (with TensorFlow's own start-up lines) when a model is
first built or a weights file first read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from videoswin_tf.lazy import exports

# `presets` is also the name of a submodule: importing that submodule anywhere would rebind the
# package attribute to the module, so the function is bound here, eagerly (the module is light).
from videoswin_tf.presets import get_preset, presets

if TYPE_CHECKING:  # for type checkers and IDEs; tests/test_import_time.py keeps it, _LAZY
    # and __all__ naming the same names
    from videoswin_tf.backbone import VideoSwinBackbone
    from videoswin_tf.builders import (
        tf_video_swin_base,
        tf_video_swin_large,
        tf_video_swin_small,
        tf_video_swin_tiny,
    )
    from videoswin_tf.classifier import VideoSwinVideoClassifier
    from videoswin_tf.downloads import (
        UnverifiedWeightsError,
        WeightsDownloadError,
        WeightsHashError,
    )
    from videoswin_tf.labels import load_labels
    from videoswin_tf.model import TFSwinTransformer3D
    from videoswin_tf.video_converter import VideoSwinVideoConverter
    from videoswin_tf.weights_file import WeightsMismatchError

# Module -> the public names it defines, imported on first use.
_LAZY = {
    "videoswin_tf.backbone": ("VideoSwinBackbone",),
    "videoswin_tf.classifier": ("VideoSwinVideoClassifier",),
    "videoswin_tf.video_converter": ("VideoSwinVideoConverter",),
    "videoswin_tf.model": ("TFSwinTransformer3D",),
    "videoswin_tf.builders": (
        "tf_video_swin_tiny",
        "tf_video_swin_small",
        "tf_video_swin_base",
        "tf_video_swin_large",
    ),
    "videoswin_tf.labels": ("load_labels",),
    "videoswin_tf.downloads": (
        "WeightsDownloadError",
        "WeightsHashError",
        "UnverifiedWeightsError",
    ),
    "videoswin_tf.weights_file": ("WeightsMismatchError",),
}

__all__ = [
    "TFSwinTransformer3D",
    "UnverifiedWeightsError",
    "VideoSwinBackbone",
    "VideoSwinVideoClassifier",
    "VideoSwinVideoConverter",
    "WeightsDownloadError",
    "WeightsHashError",
    "WeightsMismatchError",
    "get_preset",
    "load_labels",
    "presets",
    "tf_video_swin_base",
    "tf_video_swin_large",
    "tf_video_swin_small",
    "tf_video_swin_tiny",
]
__version__ = "0.1.0"
__getattr__, __dir__ = exports(__name__, _LAZY)
