"""Reading real videos for the model: decode (PyAV), sample, resize and crop (OpenCV) as the
checkpoints were scored, then classify or embed.

Needs the ``video`` extra (``pip install videoswin-tf[video]``); PyAV and OpenCV are imported
only when a video is read. The names below are imported from their modules on first use
(`videoswin_tf.lazy`), so importing this package imports neither numpy nor Keras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from videoswin_tf.lazy import exports

if TYPE_CHECKING:  # for type checkers and IDEs; tests/test_import_time.py keeps it, _LAZY
    # and __all__ naming the same names
    from videoswin_tf.video.dataset import (
        DatasetInterrupted,
        DatasetItem,
        DatasetSettings,
        ModelWeights,
        PresetWeights,
        predict_dataset,
        read_results,
        read_video_list,
    )
    from videoswin_tf.video.decode import (
        DecodedVideo,
        FrameStream,
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
    from videoswin_tf.video.snippets import SnippetFeatures, SnippetSpec, snippet_features

# Module -> the public names it defines, imported on first use.
_LAZY = {
    "videoswin_tf.video.dataset": (
        "DatasetInterrupted",
        "DatasetItem",
        "DatasetSettings",
        "ModelWeights",
        "PresetWeights",
        "predict_dataset",
        "read_results",
        "read_video_list",
    ),
    "videoswin_tf.video.decode": (
        "DecodedVideo",
        "FrameStream",
        "SampledVideo",
        "VideoError",
        "iter_frames",
        "read_frames",
        "read_video",
    ),
    "videoswin_tf.video.predict": (
        "TopClass",
        "VideoOutput",
        "classify_video",
        "predict_video",
        "video_features",
        "video_views",
        "view_pipeline",
    ),
    "videoswin_tf.video.sampling": ("clip_indices",),
    "videoswin_tf.video.snippets": ("SnippetFeatures", "SnippetSpec", "snippet_features"),
}

__all__ = [
    "DatasetInterrupted",
    "DatasetItem",
    "DatasetSettings",
    "DecodedVideo",
    "FrameStream",
    "ModelWeights",
    "PresetWeights",
    "SampledVideo",
    "SnippetFeatures",
    "SnippetSpec",
    "TopClass",
    "VideoError",
    "VideoOutput",
    "classify_video",
    "clip_indices",
    "iter_frames",
    "predict_dataset",
    "predict_video",
    "read_frames",
    "read_results",
    "read_video",
    "read_video_list",
    "snippet_features",
    "video_features",
    "video_views",
    "view_pipeline",
]
__getattr__, __dir__ = exports(__name__, _LAZY)
