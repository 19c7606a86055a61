"""Video Swin Transformer for Keras 3."""

# First: imports TensorFlow with its C++ start-up lines silenced (see videoswin_tf/startup.py).
import videoswin_tf.startup  # noqa: F401, I001
from videoswin_tf.backbone import VideoSwinBackbone
from videoswin_tf.builders import (
    tf_video_swin_base,
    tf_video_swin_large,
    tf_video_swin_small,
    tf_video_swin_tiny,
)
from videoswin_tf.classifier import VideoSwinVideoClassifier
from videoswin_tf.downloads import UnverifiedWeightsError, WeightsDownloadError, WeightsHashError
from videoswin_tf.labels import load_labels
from videoswin_tf.model import TFSwinTransformer3D
from videoswin_tf.presets import get_preset, presets
from videoswin_tf.video_converter import VideoSwinVideoConverter
from videoswin_tf.weights_file import WeightsMismatchError

__all__ = [
    "VideoSwinBackbone",
    "VideoSwinVideoClassifier",
    "VideoSwinVideoConverter",
    "TFSwinTransformer3D",
    "tf_video_swin_tiny",
    "tf_video_swin_small",
    "tf_video_swin_base",
    "tf_video_swin_large",
    "get_preset",
    "presets",
    "load_labels",
    "WeightsDownloadError",
    "WeightsHashError",
    "UnverifiedWeightsError",
    "WeightsMismatchError",
]
__version__ = "0.1.0"
