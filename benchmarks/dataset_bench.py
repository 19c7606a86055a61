"""Dataset runs: videos per second, the model's share of wall time and peak memory of the local
and the Ray runner of `predict_dataset` on the same folder of generated videos.

Makes ``--videos`` H.264 videos (``--frames`` frames of 320x240 at 25 fps, moving gradients)
and Swin-T weights with the builder's own initialisation (nothing is downloaded), then runs
each runner in a fresh process writing Parquet shards to its own folder, with the config's
test pipeline at ``--views`` (default 1x1). Wall time is `predict_dataset`'s own (it includes
loading the model once per process or actor, printed beside it, and starting Ray); the
model's share is the time spent in the model (and the head) over it, and over the wall time
less the loading (a long run's share; with Ray, loading is summed over replicas). Peak
memory is the largest sum of the resident memory of the run's process tree (its decoding
workers; Ray's daemons and actors), sampled every 0.1 s. Other processes on the machine
change the numbers: the load average is printed.

    .venv/bin/python benchmarks/dataset_bench.py [--videos N] [--frames F] [--views CxK]
        [--config NAME] [--runners local,ray] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_videos(folder: Path, count: int, frames: int) -> list[Path]:
    """``count`` H.264 videos of ``frames`` 320x240 frames: moving gradients, 25 fps."""
    import av

    paths = []
    y, x = np.mgrid[0:240, 0:320]
    for number in range(count):
        path = folder / f"video{number:03d}.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
            for index in range(frames):
                level = (x + y * 0.5 + 4 * index + 37 * number) % 256
                rgb = np.stack([level, 255 - level, (level * 3) % 256], axis=-1).astype(np.uint8)
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        paths.append(path)
    return paths


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and every process below it (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            statm = Path(f"/proc/{entry}/statm").read_text().split()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
        rss[int(entry)] = int(statm[1]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def run_one(args: argparse.Namespace) -> None:
    """In the child: one runner over the folder; prints its summary as JSON."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from videoswin_tf.startup import start_tensorflow_quietly

    start_tensorflow_quietly()
    from videoswin_tf.video.dataset import DatasetSettings, PresetWeights, predict_dataset

    settings = DatasetSettings(
        config=args.config, views=args.views, workers=args.workers, shard_size=4
    )
    videos = sorted(Path(args.folder).glob("*.mp4"))
    if args.run == "ray":
        import ray

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    summary = predict_dataset(
        PresetWeights(args.config, Path(args.weights)),
        videos,
        Path(args.out),
        settings,
        args.run,
        progress=False,
    )
    print(
        json.dumps(
            {
                "videos": summary.written,
                "failed": summary.failed,
                "seconds": summary.seconds,
                "model_seconds": summary.model_seconds,
                "load_seconds": summary.load_seconds,
            }
        )
    )


def measure(args: argparse.Namespace, runner: str, folder: Path, weights: Path, out: Path):
    command = [
        sys.executable,
        __file__,
        "--run",
        runner,
        "--folder",
        str(folder),
        "--weights",
        str(weights),
        "--out",
        str(out),
        "--config",
        args.config,
        "--views",
        args.views,
        "--workers",
        str(args.workers),
    ]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peak = 0
    while child.poll() is None:
        peak = max(peak, tree_rss(child.pid))
        time.sleep(0.1)
    output = child.stdout.read()
    if child.returncode != 0:
        raise SystemExit(f"the {runner} run failed (exit {child.returncode})")
    return json.loads(output.strip().splitlines()[-1]), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--views", default="1x1")
    parser.add_argument("--config", default="swin_t_k400")
    parser.add_argument("--runners", default="local,ray")
    parser.add_argument("--workers", type=int, default=1)
    for internal in ("--run", "--folder", "--weights", "--out"):
        parser.add_argument(internal, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_one(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "videos").mkdir()
        make_videos(tmp / "videos", args.videos, args.frames)
        from videoswin_tf.startup import start_tensorflow_quietly

        start_tensorflow_quietly()
        import videoswin_tf
        from videoswin_tf.presets import get_preset

        preset = get_preset(args.config)
        weights = tmp / "weights.weights.h5"
        getattr(videoswin_tf, preset.builder)(**preset.model_kwargs()).save_weights(str(weights))
        print(
            f"{args.videos} videos of {args.frames} frames (320x240, 25 fps), {args.config} "
            f"{args.views} views, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f} at start"
        )
        print(
            f"{'runner':<7} {'videos/s':>9} {'model share':>12} {'after load':>11} "
            f"{'peak memory':>12}  wall (of which loading the model)"
        )
        for runner in args.runners.split(","):
            result, peak = measure(args, runner, tmp / "videos", weights, tmp / f"out-{runner}")
            share = result["model_seconds"] / result["seconds"]
            after = result["model_seconds"] / (result["seconds"] - result["load_seconds"])
            print(
                f"{runner:<7} {result['videos'] / result['seconds']:>9.2f} {share:>11.1%} "
                f"{after:>11.1%} {peak / 2**20:>9.0f} MiB  {result['seconds']:.1f} s "
                f"({result['load_seconds']:.1f} s)"
            )


if __name__ == "__main__":
    main()
