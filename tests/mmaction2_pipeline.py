"""mmaction2's own test pipeline on a video file: DecordInit, SampleFrames (or given frame
indices), DecordDecode, Resize, ThreeCrop/CenterCrop, from the installed mmaction2 1.2.0."""

from __future__ import annotations

import numpy as np

from videoswin_tf.convert.references.upstream_transforms import load_transforms, run_pipeline
from videoswin_tf.presets import TestPipeline


def mmaction2_views(path, pipeline: TestPipeline, indices: np.ndarray | None = None) -> np.ndarray:
    """uint8 views ``(crops * clips, clip_len, S, S, 3)`` as mmaction2 cuts them; ``indices``
    ``(clips, clip_len)`` replace ``SampleFrames`` (for the Video-Swin protocol)."""
    up = load_transforms()
    results = run_pipeline([up.DecordInit()], {"filename": str(path), "start_index": 0})
    if indices is None:
        sample = up.SampleFrames(
            pipeline.clip_len, pipeline.frame_interval, pipeline.num_clips, test_mode=True
        )
        results = run_pipeline([sample], results)
    else:
        results.update(
            frame_inds=indices.reshape(-1),
            clip_len=pipeline.clip_len,
            num_clips=len(indices),
        )
    crop = (up.ThreeCrop if pipeline.num_crops == 3 else up.CenterCrop)(pipeline.crop_size)
    steps = [up.DecordDecode(), up.Resize(scale=(-1, pipeline.short_side)), crop]
    imgs = np.stack(run_pipeline(steps, results)["imgs"])
    return imgs.reshape((-1, pipeline.clip_len, *imgs.shape[1:]))
