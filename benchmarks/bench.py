"""Benchmarks: conversion time and peak memory, and forward speed against the upstream model.

Prints a table. The conversion rows run ``vswin-convert --no-parity`` in a fresh process (a
synthetic checkpoint is made first when missing) and read its wall time and peak resident
memory; the forward rows time the Keras model and mmaction2's PyTorch model on the same clip
in this process, one after the other.

    .venv/bin/python benchmarks/bench.py                 # Swin-B conversion, forward at 32x224
    .venv/bin/python benchmarks/bench.py --configs swin_t_k400 swin_b_k400 --frames 16

Targets (issue 3): Swin-B conversion without parity under 15 s wall and 2.5 GB peak memory.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def convert_once(config: str, pth: Path, out: Path) -> tuple[float, float]:
    """Wall seconds and peak resident GiB of one ``vswin-convert --no-parity`` process."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [
            str(BIN / "vswin-convert"),
            "--config",
            config,
            "--pth",
            str(pth),
            "--out",
            str(out),
            "--no-parity",
            "--force",
        ],
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak, not all children's
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"vswin-convert failed for {config}")
    return seconds, usage.ru_maxrss / 2**20


def forward_times(config: str, frames: int, size: int, repeats: int) -> tuple[float, float]:
    """Best-of-``repeats`` seconds of one forward pass: (Keras, upstream PyTorch)."""
    import numpy as np
    import torch

    from convert.configs import resolve_config
    from convert.converter import build_keras_model
    from convert.reference import build_reference

    spec = resolve_config(config)
    clip = np.random.default_rng(0).standard_normal((1, frames, size, size, 3)).astype("float32")
    keras_model = build_keras_model(spec)
    keras_model(clip)  # trace once
    reference = build_reference(spec)
    torch_clip = torch.from_numpy(clip.transpose(0, 4, 1, 2, 3).copy())

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    with torch.no_grad():
        torch_seconds = best(lambda: reference.cls_head(reference.backbone(torch_clip)))
    keras_seconds = best(lambda: keras_model(clip))
    return keras_seconds, torch_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["swin_b_k400"])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sources", type=Path, default=ROOT / "checkpoints")
    args = parser.parse_args()

    from convert.configs import resolve_config

    # Conversions first: a child's peak memory includes what it inherits at fork, so this
    # process must stay small until they are done.
    conversions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            spec = resolve_config(config)
            pth = args.sources / spec.source
            if not pth.is_file():
                subprocess.run(
                    [
                        str(BIN / "vswin-convert"),
                        "synthesize",
                        "--config",
                        config,
                        "--out",
                        str(pth),
                    ],
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
            conversions[config] = convert_once(config, pth, Path(tmp) / f"{config}.weights.h5")
    rows = [
        (config, *conversions[config], *forward_times(config, args.frames, args.size, args.repeats))
        for config in args.configs
    ]

    clip = f"1x{args.frames}x{args.size}x{args.size}"
    print(
        f"{'config':<20} {'convert wall s':>15} {'convert peak GiB':>17} "
        f"{'Keras fwd s':>12} {'mmaction2 fwd s':>16} {'speed-up':>9}   (forward: {clip}, "
        f"best of {args.repeats}, {os.cpu_count()} cores)"
    )
    for config, seconds, gib, keras_s, torch_s in rows:
        print(
            f"{config:<20} {seconds:>15.1f} {gib:>17.2f} {keras_s:>12.2f} {torch_s:>16.2f} "
            f"{torch_s / keras_s:>8.2f}x"
        )


if __name__ == "__main__":
    main()
