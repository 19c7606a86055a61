"""Reading real videos for the model: decode (PyAV), sample, resize and crop (OpenCV) as the
checkpoints were scored, then classify or embed.

Needs the ``video`` extra (``pip install videoswin-tf[video]``); PyAV and OpenCV are imported
only when a video is read.
"""

from videoswin_tf.video.decode import (
    DecodedVideo,
    SampledVideo,
    VideoError,
    iter_frames,
    read_frames,
    read_video,
)
from videoswin_tf.video.predict import (
    TopClass,
    VideoOutput,
    classify_video,
    predict_video,
    video_features,
    video_views,
    view_pipeline,
)
from videoswin_tf.video.sampling import clip_indices

__all__ = [
    "DecodedVideo",
    "SampledVideo",
    "TopClass",
    "VideoError",
    "VideoOutput",
    "classify_video",
    "clip_indices",
    "iter_frames",
    "predict_video",
    "read_frames",
    "read_video",
    "video_features",
    "video_views",
    "view_pipeline",
]
