"""Benchmarks: conversion time and memory, and forward speed and memory against the peers.

Prints two tables, every figure measured in this run:

- conversion: ``vswin-convert --no-parity`` in a fresh process (a synthetic checkpoint is made
  first when missing), its wall time and peak resident memory;
- forward: one backbone forward pass on the same clip by each implementation, each in a fresh
  process of its own: this package, KerasCV's ``VideoSwinBackbone`` (the other Keras port,
  ``pip install -e '.[bench]'``; skipped with a note when missing) and mmaction2's PyTorch
  ``SwinTransformer3D`` (the reference). Keras models are timed called eagerly,
  ``model(clip)``, and through ``predict_on_batch`` (a compiled graph); PyTorch eagerly under
  ``no_grad``. Memory is the process's peak resident size, and what building and running the
  model added to it after the imports.

    make bench                                            # Swin-T and Swin-B, 1x32x224x224
    .venv/bin/python benchmarks/bench.py --configs swin_t_k400 swin_b_ssv2 --frames 16

Targets (issue 3): Swin-B conversion without parity under 15 s wall and 2.5 GB peak memory.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
IMPLEMENTATIONS = ("videoswin_tf", "keras_cv", "mmaction2")


def convert_once(config: str, pth: Path, out: Path) -> tuple[float, float]:
    """Wall seconds and peak resident GiB of one ``vswin-convert --no-parity`` process."""
    command = [str(BIN / "vswin-convert"), "--config", config, "--pth", str(pth)]
    command += ["--out", str(out), "--no-parity", "--force"]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak, not all children's
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"vswin-convert failed for {config}")
    return seconds, usage.ru_maxrss / 2**20


def resident_gib() -> float:
    """This process's resident memory now, in GiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmRSS in /proc/self/status")


def best_of(repeats: int, run) -> float:
    """The fastest of ``repeats`` timed calls of ``run``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def keras_backbone(implementation: str, spec, input_shape: tuple[int, ...]):
    """This package's backbone for ``spec``, or KerasCV's with the same architecture (a
    functional model of a fixed input shape)."""
    if implementation == "videoswin_tf":
        from convert.converter import build_keras_model

        return build_keras_model(spec.replace(num_classes=None))
    import keras_cv

    return keras_cv.models.VideoSwinBackbone(
        input_shape=input_shape,
        embed_dim=spec.embed_dim,
        depths=list(spec.depths),
        num_heads=list(spec.num_heads),
        window_size=list(spec.window_size),
        patch_size=list(spec.patch_size),
    )


def forward_worker(implementation: str, config: str, shape: tuple[int, ...], repeats: int) -> dict:
    """Build one implementation's backbone and time its forward pass (run in a fresh process).

    Everything is imported before the baseline memory is read, so ``added`` is what the model
    and its forward passes cost."""
    import numpy as np
    import torch

    import convert.converter  # noqa: F401 - the Keras builder and TensorFlow, before the baseline
    from convert.configs import resolve_config
    from convert.reference import build_reference, load_upstream

    spec = resolve_config(config)
    clip = np.random.default_rng(0).standard_normal(shape).astype("float32")
    if implementation == "mmaction2":
        load_upstream()
        torch_clip = torch.from_numpy(clip.transpose(0, 4, 1, 2, 3).copy())  # (B, 3, T, H, W)
        baseline = resident_gib()
        backbone = build_reference(spec).backbone
        with torch.no_grad():
            backbone(torch_clip)
            eager = best_of(repeats, lambda: backbone(torch_clip))
        compiled = None
    else:
        if implementation == "keras_cv":
            if importlib.util.find_spec("keras_cv") is None:
                return {"missing": "KerasCV is not installed: pip install -e '.[bench]'"}
            import keras_cv  # noqa: F401 - imported before the baseline
        baseline = resident_gib()
        model = keras_backbone(implementation, spec, shape[1:])
        model(clip)
        eager = best_of(repeats, lambda: model(clip))
        model.predict_on_batch(clip)
        compiled = best_of(repeats, lambda: model.predict_on_batch(clip))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"eager": eager, "compiled": compiled, "peak": peak, "added": peak - baseline}


def forward(implementation: str, config: str, shape: tuple[int, ...], repeats: int) -> dict:
    """`forward_worker` in a fresh Python process; its JSON result."""
    command = [sys.executable, __file__, "--forward-worker", implementation, "--configs", config]
    command += ["--shape", *map(str, shape), "--repeats", str(repeats)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{implementation} forward failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def synthesize(config: str, pth: Path) -> None:
    command = [str(BIN / "vswin-convert"), "synthesize", "--config", config, "--out", str(pth)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def print_conversions(rows: list[tuple[str, float, float]]) -> None:
    print(f"{'conversion (--no-parity)':<26} {'wall s':>7} {'peak GiB':>9}")
    for config, seconds, gib in rows:
        print(f"{config:<26} {seconds:>7.1f} {gib:>9.2f}")


def print_forwards(rows: list[tuple[str, str, dict]], shape: tuple[int, ...], repeats: int) -> None:
    clip = "x".join(map(str, shape[:4]))
    print(
        f"\nbackbone forward, clip {clip}x3, best of {repeats}, {os.cpu_count()} cores; "
        "each implementation in a fresh process"
    )
    print(
        f"{'config':<20} {'implementation':<14} {'eager s':>8} {'compiled s':>11} "
        f"{'peak GiB':>9} {'added GiB':>10}"
    )
    for config, implementation, result in rows:
        if "missing" in result:
            print(f"{config:<20} {implementation:<14} {result['missing']}")
            continue
        compiled = "-" if result["compiled"] is None else f"{result['compiled']:.2f}"
        print(
            f"{config:<20} {implementation:<14} {result['eager']:>8.2f} {compiled:>11} "
            f"{result['peak']:>9.2f} {result['added']:>10.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["swin_t_k400", "swin_b_k400"])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sources", type=Path, default=ROOT / "checkpoints")
    parser.add_argument("--forward-worker", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--shape", type=int, nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.forward_worker:
        result = forward_worker(args.forward_worker, args.configs[0], args.shape, args.repeats)
        print(json.dumps(result))
        return

    from videoswin_tf.startup import start_tensorflow_quietly

    start_tensorflow_quietly()
    from convert.configs import resolve_config

    conversions = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            pth = args.sources / resolve_config(config).source
            if not pth.is_file():
                synthesize(config, pth)
            out = Path(tmp) / f"{config}.weights.h5"
            conversions.append((config, *convert_once(config, pth, out)))
    print_conversions(conversions)

    shape = (1, args.frames, args.size, args.size, 3)
    forwards = [
        (config, implementation, forward(implementation, config, shape, args.repeats))
        for config in args.configs
        for implementation in IMPLEMENTATIONS
    ]
    print_forwards(forwards, shape, args.repeats)


if __name__ == "__main__":
    main()
