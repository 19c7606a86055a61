"""Benchmarks: forward speed against the fp32 matmul peak and the peers, and conversion time.

Prints the CPU, the fp32 matmul peak measured in this run (numpy and TensorFlow, 4096x4096),
then one table per run, every figure measured in this run, each row in a fresh process:

- forward: one pass on the same clip by each implementation and engine (`ROWS`): this package's
  default path (``predict_on_batch``, the engine the model chooses), called eagerly, as a graph,
  under XLA, in bf16 (``mixed_bfloat16``), on the OpenVINO engine in fp32 and bf16 (``vswin-predict
  --engine openvino``; ``ov-fp32`` is a user's first run, ``ov-cached`` a later one reading the
  ``VSWIN_OPENVINO_CACHE`` an earlier process filled), and on the JAX, torch and OpenVINO Keras
  backends; KerasCV's ``VideoSwinBackbone`` as a graph and under XLA; mmaction2's
  ``SwinTransformer3D`` eagerly under ``no_grad``, in fp32 and under bf16 autocast; and this
  package's ONNX export in ONNX Runtime and SavedModel export in TensorFlow (``vswin-convert
  export``, parity-checked first). Seconds are the best of ``--repeats`` passes in the fastest
  of ``--rounds`` rounds (every row once a round, rows interleaved); GFLOP/s count the model's
  matrix products (`flops.backbone_flops`); memory is the peak resident size while building and
  running (imports excluded from the peak by resetting it first), and what building and running
  added to the resident size;
- conversion: ``vswin-convert --no-parity`` in a fresh process, wall time and peak memory.

    make bench                                              # Swin-T and Swin-B, 1x32x224x224
    .venv/bin/python benchmarks/bench.py --quick            # Swin-T on 1x8x224x224, no conversion
    .venv/bin/python benchmarks/bench.py --backends         # TF, torch, JAX interleaved, medians
                                                            # (Dense GFLOP per CPU second; no peak)
    .venv/bin/python benchmarks/bench.py --backends --torch-compiled   # and torch AOTInductor

Targets (issues 11 and 17, a verdict line each): the fp32 default engine at 75% of the matmul
peak or more and 1.3x KerasCV's best path, bf16 at 2.4x KerasCV's best fp32 path, never slower
than a runtime on our own export, peak memory at most mmaction2's. Issue 3: Swin-B conversion
without parity under 15 s and 2.5 GB.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Every forward row: implementation, engine, Keras backend of its process, what it needs.
ROWS = [
    ("videoswin_tf", "default", "tensorflow", None),
    ("videoswin_tf", "eager", "tensorflow", None),
    ("videoswin_tf", "graph", "tensorflow", None),
    ("videoswin_tf", "xla", "tensorflow", None),
    ("videoswin_tf", "bf16", "tensorflow", None),
    ("videoswin_tf", "ov-fp32", "tensorflow", "openvino"),
    ("videoswin_tf", "ov-cached", "tensorflow", "openvino"),
    ("videoswin_tf", "ov-bf16", "tensorflow", "openvino"),
    ("videoswin_tf", "keras-ov", "openvino", "openvino"),
    ("videoswin_tf", "jax", "jax", "jax"),
    ("videoswin_tf", "torch", "torch", None),
    ("keras_cv", "graph", "tensorflow", "keras_cv"),
    ("keras_cv", "xla", "tensorflow", "keras_cv"),
    ("mmaction2", "eager", "torch", None),
    ("mmaction2", "bf16", "torch", None),
    ("onnxruntime", "export", "tensorflow", "onnxruntime"),
    ("saved_model", "export", "tensorflow", None),
]
INSTALL = {
    "jax": "pip install -c constraints.txt -e '.[jax]'",
    "keras_cv": "pip install -c constraints.txt -e '.[bench]'",
    "onnxruntime": "pip install -c constraints.txt -e '.[export]'",
    "openvino": "pip install -c constraints.txt -e '.[openvino]'",
}
TIMEOUT_S = 900


def cpu_description() -> str:
    """The CPU's model name, cores and vector flags (Linux), and whether TF runs oneDNN."""
    from videoswin_tf.engine import onednn_enabled

    info = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    name = f"{info.get('model name', 'unknown CPU')} (family {info.get('cpu family', '?')})"
    flags = set(info.get("flags", "").split())
    wanted = ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"]
    vector = " ".join(flag for flag in wanted if flag in flags) or "none of " + " ".join(wanted)
    onednn = "on" if onednn_enabled() else "off"
    return f"{name}, {os.cpu_count()} cores, {vector}; TensorFlow oneDNN {onednn}"


def matmul_peak(size: int = 4096, repeats: int = 5) -> dict[str, float]:
    """fp32 GFLOP/s of a ``size`` square matrix product in numpy and in TensorFlow."""
    import numpy as np
    import tensorflow as tf

    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    b = a.T.copy()
    ta, tb = tf.constant(a), tf.constant(b)
    flops = 2.0 * size**3
    runs = {"numpy": lambda: a @ b, "tensorflow": lambda: tf.matmul(ta, tb).numpy()}
    return {name: flops / best_of(repeats, run, warmup=1) / 1e9 for name, run in runs.items()}


def status_gib(field: str) -> float:
    """A memory field of /proc/self/status (``VmRSS``: resident now, ``VmHWM``: its peak), in
    GiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    """Restart the peak resident size (``VmHWM``) from the resident size now (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")


def best_of(repeats: int, run, warmup: int = 0) -> float:
    """The fastest of ``repeats`` timed calls of ``run``, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def forward_runner(implementation: str, engine: str, spec, clip, exports: Path):
    """A zero-argument function running one forward pass, built (and warmed up) here."""
    import numpy as np

    if implementation == "mmaction2":
        import torch

        from videoswin_tf.convert.references.mmaction2 import build_reference, load_upstream

        load_upstream()
        torch_clip = torch.from_numpy(clip.transpose(0, 4, 1, 2, 3).copy())  # (B, 3, T, H, W)
        backbone = build_reference(spec).backbone
        backbone.eval()  # returns None: mmaction2's train() override returns nothing

        def run():
            with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=engine == "bf16"):
                backbone(torch_clip)

        return run
    if implementation == "onnxruntime":
        import onnxruntime

        session = onnxruntime.InferenceSession(
            str(exports / f"{spec.name}.onnx"), providers=["CPUExecutionProvider"]
        )
        return lambda: session.run(["logits"], {"clip": clip})
    if implementation == "saved_model":
        import tensorflow as tf

        serve = tf.saved_model.load(str(exports / f"{spec.name}_saved_model"))
        function = serve.signatures["serving_default"]
        tensor = tf.constant(clip)
        return lambda: function(clip=tensor)["logits"].numpy()
    if implementation == "keras_cv":
        from videoswin_tf.convert.references.kerascv import kerascv_backbone

        model = kerascv_backbone(spec, clip.shape[1:])
        model.compile(jit_compile=engine == "xla")
        return lambda: model.predict_on_batch(clip)

    import keras

    from videoswin_tf.convert.mapping.spec import build_keras_model

    keras.utils.set_random_seed(0)  # ov-cached: the weights of the run that filled the cache
    model = build_keras_model(spec.replace(num_classes=None))
    if engine in ("bf16", "ov-fp32", "ov-bf16", "ov-cached"):  # vswin-predict's --engine
        from videoswin_tf.inference import CACHE_ENV, choose, openvino_runner, tensorflow_model

        # A user's first run converts; ov-cached reads the IR an earlier process left.
        os.environ.pop(CACHE_ENV, None)
        if engine == "ov-cached":
            os.environ[CACHE_ENV] = str(exports / "openvino-cache")
        precision = "fp32" if engine == "ov-cached" else engine[-4:]
        choice = choose("openvino" if engine.startswith("ov") else "tensorflow", precision)
        if choice.engine == "openvino":
            return functools.partial(
                openvino_runner(model, model, choice.precision, clip.shape), clip
            )
        return functools.partial(tensorflow_model(model, "bf16").predict_on_batch, clip)
    if engine == "eager":
        return lambda: np.asarray(model(clip))
    if engine in ("graph", "xla"):
        model.compile(jit_compile=engine == "xla")
    return lambda: model.predict_on_batch(clip)  # default, and the JAX and torch backends


def forward_worker(implementation: str, engine: str, config: str, shape, repeats: int, exports):
    """Time one implementation's forward pass in this (fresh) process.

    The libraries are imported before the baseline memory is read, so ``added`` is what the
    model and its forward passes cost."""
    import keras  # noqa: F401 - before the baseline
    import numpy as np

    from videoswin_tf.convert.configs.resolve import resolve_config

    if implementation == "mmaction2":
        import torch  # noqa: F401
    spec = resolve_config(config)
    clip = np.random.default_rng(0).standard_normal(shape).astype("float32")
    reset_peak()
    baseline = status_gib("VmRSS")
    run = forward_runner(implementation, engine, spec, clip, exports)
    seconds = best_of(repeats, run, warmup=1)
    peak = status_gib("VmHWM")
    return {"seconds": seconds, "peak": peak, "added": peak - baseline}


def export_worker(config: str, shape, exports: Path) -> dict:
    """Write the ONNX and SavedModel exports of a seeded model, each parity-checked."""
    import keras

    from videoswin_tf.convert.configs.resolve import resolve_config
    from videoswin_tf.convert.mapping.spec import build_keras_model
    from videoswin_tf.convert.outputs.export import export
    from videoswin_tf.convert.parity import ParitySettings

    spec = resolve_config(config)
    keras.utils.set_random_seed(0)
    weights = exports / f"{spec.name}.weights.h5"
    build_keras_model(spec).save_weights(weights)
    worst = {}
    for fmt, name in (("onnx", f"{spec.name}.onnx"), ("saved_model", f"{spec.name}_saved_model")):
        if fmt == "onnx" and importlib.util.find_spec("tf2onnx") is None:
            continue
        report = export(
            weights,
            config,
            fmt,
            exports / name,
            ParitySettings(frames=shape[1], size=shape[2], batch=shape[0]),
            force=True,
            log=lambda line: print(line, file=sys.stderr),
        )
        worst[fmt] = report.worst
    return worst


def in_fresh_process(args: list[str], backend: str = "tensorflow") -> dict:
    """This script with ``args`` in a fresh Python process; its JSON result (last line)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    env["KERAS_BACKEND"] = backend
    done = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=TIMEOUT_S,
    )
    if done.returncode < 0:
        return {"failed": f"killed by signal {-done.returncode} (9: out of memory?)"}
    if done.returncode != 0:
        return {"failed": done.stderr.strip().splitlines()[-1][:90]}
    return json.loads(done.stdout.strip().splitlines()[-1])


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


def conversions(configs: list[str], sources: Path) -> None:
    print(f"\n{'conversion (--no-parity)':<26} {'wall s':>7} {'peak GiB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            from videoswin_tf.convert.configs.resolve import resolve_config

            pth = sources / resolve_config(config).source
            if not pth.is_file():
                command = [str(BIN / "vswin-convert"), "synthesize", "--config", config]
                subprocess.run([*command, "--out", str(pth)], check=True, stdout=subprocess.DEVNULL)
            seconds, gib = convert_once(config, pth, Path(tmp) / f"{config}.weights.h5")
            print(f"{config:<26} {seconds:>7.1f} {gib:>9.2f}")


@dataclasses.dataclass(frozen=True)
class Timing:
    """How the forward rows are timed: the best of ``repeats`` passes in a fresh process (after
    one untimed warm-up), each row once per round for ``rounds`` rounds, the rows interleaved
    (every row of round 1, then of round 2, ...), keeping each row's fastest round."""

    repeats: int = 3
    rounds: int = 2

    def describe(self) -> str:
        rounds = f" in each of {self.rounds} rounds (all rows a round)" if self.rounds > 1 else ""
        return f"best of {self.repeats} passes{rounds}"


def merge_rounds(results: list[dict]) -> dict:
    """A row's result over its rounds: its fastest seconds and its largest memory figures (the
    first failure, if one failed)."""
    failed = [result for result in results if "failed" in result]
    if failed:
        return failed[0]
    return {
        "seconds": min(result["seconds"] for result in results),
        "peak": max(result["peak"] for result in results),
        "added": max(result["added"] for result in results),
    }


def forwards(
    config: str, shape, timing: Timing, peak: float, exports: Path, with_exports: bool
) -> dict:
    """Run every row of `ROWS` for one config (the export rows only ``with_exports``) in
    ``timing.rounds`` interleaved rounds, and print the table; the results by
    (implementation, engine)."""
    from flops import backbone_flops

    from videoswin_tf.convert.configs.resolve import resolve_config

    spec = resolve_config(config)
    flops = backbone_flops(spec, shape)
    print(f"\n{config}: {flops / 1e9:.1f} GFLOP per forward pass")
    if with_exports:
        args = ["--export-worker", "--configs", config, *shape_args(shape)]
        exported = in_fresh_process([*args, "--exports", str(exports)])
        for fmt, worst in exported.items():
            text = worst if fmt == "failed" else f"max |diff| of logits against Keras {worst:.2e}"
            print(f"  {fmt} export: {text}")
    rows = [row for row in ROWS if row[1] != "export" or with_exports]
    measured = {(implementation, engine): [] for implementation, engine, _, _ in rows}
    for round_ in range(timing.rounds):
        for implementation, engine, backend, needs in rows:
            if needs and importlib.util.find_spec(needs) is None:
                measured[implementation, engine].append(
                    {"failed": f"{needs} is not installed: {INSTALL[needs]}"}
                )
                continue
            args = ["--forward-worker", implementation, engine, "--configs", config]
            args += [*shape_args(shape), "--repeats", str(timing.repeats)]
            args += ["--exports", str(exports)]
            if engine == "ov-cached" and round_ == 0:  # an earlier process fills the IR cache
                in_fresh_process(args, backend)
            measured[implementation, engine].append(in_fresh_process(args, backend))
        if timing.rounds > 1:
            print(f"  round {round_ + 1} of {timing.rounds} done", file=sys.stderr, flush=True)
    print(
        f"  {'implementation':<14} {'engine':<9} {'seconds':>8} {'GFLOP/s':>8} {'of peak':>8} "
        f"{'peak GiB':>9} {'added GiB':>10}"
    )
    results = {key: merge_rounds(found) for key, found in measured.items()}
    for (implementation, engine), result in results.items():
        if "failed" in result:
            print(f"  {implementation:<14} {engine:<9} {result['failed']}")
            continue
        rate = flops / result["seconds"] / 1e9
        print(
            f"  {implementation:<14} {engine:<9} {result['seconds']:>8.3f} {rate:>8.1f} "
            f"{rate / peak:>8.0%} {result['peak']:>9.2f} {result['added']:>10.2f}",
            flush=True,
        )
    verdicts(results, flops, peak)
    return results


def verdicts(results: dict, flops: float, peak: float) -> None:
    """One line per target of issues 11 and 17, met or missed and by how much."""

    def seconds(implementation: str, *engines: str) -> float | None:
        found = [
            r["seconds"]
            for (i, e), r in results.items()
            if i == implementation and (not engines or e in engines) and "seconds" in r
        ]
        return min(found) if found else None

    default = results.get(("videoswin_tf", "default"), {})
    if "seconds" not in default:
        return
    # the default engine of vswin-predict: OpenVINO when installed, else predict_on_batch
    fp32 = seconds("videoswin_tf", "ov-fp32") or default["seconds"]
    fraction = flops / fp32 / 1e9 / peak
    print(
        f"  target 75% of peak (fp32 default engine): {fraction:.0%} ({verdict(fraction >= 0.75)})"
    )
    keras_cv = seconds("keras_cv")
    if keras_cv:
        speedup = keras_cv / fp32
        print(
            f"  target fp32 at least 1.3x KerasCV's best: {speedup:.2f}x "
            f"({verdict(speedup >= 1.3)})"
        )
        bf16 = seconds("videoswin_tf", "bf16", "ov-bf16")
        if bf16:
            speedup = keras_cv / bf16
            print(
                f"  target bf16 at least 2.4x KerasCV's best fp32: {speedup:.2f}x "
                f"({verdict(speedup >= 2.4)})"
            )
    best = seconds("videoswin_tf")
    exported = seconds("onnxruntime", "export")
    if exported:
        print(
            f"  target never slower than a runtime on our export: best engine {best:.3f} s "
            f"against {exported:.3f} s ({verdict(best <= exported)})"
        )
    reference = results.get(("mmaction2", "eager"), {})
    # the default engine's first run, as for the speed: OpenVINO's row when it ran
    engine = results.get(("videoswin_tf", "ov-fp32"), {})
    engine, name = (engine, "ov-fp32") if "peak" in engine else (default, "default")
    if "peak" in reference:
        met = verdict(engine["peak"] <= reference["peak"])
        print(
            f"  target peak memory at most mmaction2's ({name}): {engine['peak']:.2f} against "
            f"{reference['peak']:.2f} GiB ({met})"
        )


BACKENDS = ("tensorflow", "torch", "jax")


def dense_products(config: str, shape) -> list:
    """The Dense layers' matrix products (`flops.Product`) of one forward pass of ``config``."""
    from flops import matrix_products

    from videoswin_tf.convert.configs.resolve import resolve_config

    spec = resolve_config(config)
    return [product for product in matrix_products(spec, shape) if product.kind == "dense"]


def dense_seconds(products, repeats: int = 5, work: float = 2e9) -> list[float]:
    """Best-of-``repeats`` CPU seconds of this process (all its threads) for ``keras.ops.matmul``
    on fp32 operands of each product's shape, on this process's Keras backend: the kernel its
    Dense layers call. CPU time, not wall time, so that other processes' load does not count.
    Each sample runs the product enough times for ``work`` FLOPs (about 10 ms at 200 GFLOP/s):
    one small product is shorter than the CPU clock's accounting is exact (a single 784x384x384
    product once read as 2.6 TFLOP/s on JAX)."""
    from keras import ops

    def product(x, w):
        x, w = ops.convert_to_tensor(x), ops.convert_to_tensor(w)
        # JAX dispatches asynchronously; the others return when done
        return lambda: getattr(ops.matmul(x, w), "block_until_ready", lambda: None)()

    return product_seconds(products, product, repeats, work)


def onednn_seconds(products, repeats: int = 5, work: float = 2e9) -> list[float]:
    """As `dense_seconds`, for torch's own oneDNN fp32 linear (``torch.ops.mkldnn.
    _linear_pointwise``, the kernel of ``torch.compile``'s CPU linear fusions), which
    ``keras.ops.matmul`` on torch does not reach: its ``torch.matmul`` runs the BLAS torch was
    built with (MKL in the CPU wheels)."""
    import torch

    def product(x, w):
        x, w = torch.from_numpy(x), torch.from_numpy(w.T.copy())  # the weight as (n, k)
        return lambda: torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")

    with torch.no_grad():
        return product_seconds(products, product, repeats, work)


def product_seconds(products, product, repeats: int, work: float) -> list[float]:
    """For each product, the best-of-``repeats`` CPU seconds of one call of ``product(x, w)``
    (a zero-argument callable running ``x @ w`` on fp32 operands ``(m, k)``, ``(k, n)``),
    each sample running it enough times for ``work`` FLOPs."""
    import numpy as np

    rng = np.random.default_rng(0)
    seconds = []
    for shape in products:
        run = product(
            rng.standard_normal((shape.m, shape.k), dtype="float32"),
            rng.standard_normal((shape.k, shape.n), dtype="float32"),
        )
        run()
        calls = max(1, round(work / (2.0 * shape.m * shape.k * shape.n)))
        times = []
        for _ in range(repeats):
            start = time.process_time()
            for _ in range(calls):
                run()
            times.append((time.process_time() - start) / calls)
        seconds.append(min(times))
    return seconds


# A backend worker's commands for Dense timings, and the column torch's oneDNN linear gets.
DENSE_KERNELS = {"dense": dense_seconds, "dense-onednn": onednn_seconds}
ONEDNN = "torch+oneDNN"
# The row of torch's pass compiled ahead of time (`torch_aoti`), with --torch-compiled.
COMPILED = "torch-aoti"


def backend_worker(config: str, shape, compiled: bool = False) -> None:
    """Serve this process's Keras backend: "ready" once the model is built and warmed up
    (compiled, on JAX), then for each line read from stdin, "run": the wall and CPU seconds of
    one forward pass of this package's default path (``predict_on_batch``); "dense": a JSON list
    of the CPU seconds of each Dense product of `dense_products` (`dense_seconds`);
    "dense-onednn", on torch: the same for torch's oneDNN linear (`onednn_seconds`).
    ``compiled`` (torch): the pass is the model compiled ahead of time (`torch_aoti`), and the
    ready line goes on with how long exporting and compiling took."""
    import numpy as np

    from videoswin_tf.convert.configs.resolve import resolve_config
    from videoswin_tf.convert.mapping.spec import build_keras_model

    model = build_keras_model(resolve_config(config).replace(num_classes=None))
    clip = np.random.default_rng(0).standard_normal(shape).astype("float32")
    run, ready = functools.partial(model.predict_on_batch, clip), "ready"
    if compiled:
        run, ready = compiled_runner(model, clip)
    run()
    print(ready, flush=True)
    for line in sys.stdin:
        if line.strip() in DENSE_KERNELS:
            seconds = DENSE_KERNELS[line.strip()](dense_products(config, shape))
            print(json.dumps(seconds), flush=True)
            continue
        start, cpu = time.perf_counter(), time.process_time()
        run()
        print(json.dumps([time.perf_counter() - start, time.process_time() - cpu]), flush=True)


def compiled_runner(model, clip) -> tuple:
    """A forward pass of ``model`` (torch backend) compiled ahead of time for ``clip``
    (`torch_aoti`), NumPy in and out as ``predict_on_batch``, and the worker's ready line
    with the export and compile seconds."""
    import numpy as np
    import torch
    from torch_aoti import compile_ahead_of_time

    tensor = torch.from_numpy(clip)
    with tempfile.TemporaryDirectory() as folder:
        compiled = compile_ahead_of_time(model, tensor, Path(folder) / "model.pt2")
    seconds = f"{compiled.export_seconds:.0f} s export, {compiled.compile_seconds:.0f} s compile"
    return lambda: np.asarray(compiled.run(tensor)), f"ready {seconds}"


def thread_settings(threads: int) -> dict[str, str]:
    """Environment holding every backend's CPU pools to ``threads`` (torch: OpenMP; TensorFlow:
    its intra-op pool, inter-op 1; XLA on JAX: one Eigen thread when ``threads`` is 1)."""
    settings = {
        "OMP_NUM_THREADS": str(threads),
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": "1",
    }
    if threads == 1:
        settings["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false"
    return settings


def backend_rounds(config: str, shape, rounds: int, threads: int, compiled: bool = False) -> None:
    """Time each installed backend's forward pass in its own process, interleaved (one pass
    per backend per round, the order rotating), and print medians and best against
    TensorFlow's, with the verdict on issue 17's target (within 1.5x). ``compiled``: one more
    row, `COMPILED`: torch's pass compiled ahead of time (`torch_aoti`, minutes)."""
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONWARNINGS": "ignore",
        **thread_settings(threads),
    }
    command = [sys.executable, __file__, "--backend-worker", "--configs", config]
    rows = [(backend, backend, []) for backend in BACKENDS]
    if compiled:
        rows.append((COMPILED, "torch", ["--compiled"]))
    workers, launched, notes = {}, {}, {}
    for name, backend, extra in rows:
        if importlib.util.find_spec(backend) is None:
            how = INSTALL.get(backend, f"pip install -c constraints.txt {backend}")
            print(f"  {name}: not installed ({how})")
            continue
        launched[name] = backend, extra
        workers[name] = subprocess.Popen(
            [*command, *shape_args(shape), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**env, "KERAS_BACKEND": backend},
            cwd=ROOT,
        )
    for name, worker in workers.items():
        backend, extra = launched[name]
        ready, _, note = worker.stdout.readline().strip().partition(" ")
        if ready != "ready":
            rerun = " ".join(
                [f"KERAS_BACKEND={backend} python", *command[1:], *shape_args(shape), *extra]
            )
            raise RuntimeError(f"the {name} worker failed; to see why, run: {rerun}")
        notes[name] = note
    times = {backend: [] for backend in workers}
    order = list(workers)
    for round_ in range(rounds):
        for backend in order[round_ % len(order) :] + order[: round_ % len(order)]:
            times[backend].append(ask(workers[backend], "run"))
    dense = {name: ask(worker, "dense") for name, worker in workers.items() if name in BACKENDS}
    if "torch" in workers:
        dense[ONEDNN] = ask(workers["torch"], "dense-onednn")
    for worker in workers.values():
        worker.stdin.close()
        worker.wait()
    print(
        f"\n{config}, {'x'.join(map(str, shape))}: {rounds} interleaved rounds, "
        f"{threads} thread{'s' * (threads > 1)} each"
    )
    print("\n".join(backend_table(times)))
    if COMPILED in notes:
        print(f"  {COMPILED}: torch.export, then AOTInductor with freezing ({notes[COMPILED]})")
    dense_table(dense_products(config, shape), dense, times)


def backend_table(times: dict[str, list]) -> list[str]:
    """The lines of the backends' table: per backend (``times``: its (wall, CPU) seconds per
    pass; TensorFlow's is the reference) the median and best wall seconds, the median CPU
    seconds, the median wall and the median CPU seconds against TensorFlow's, and issue 17's
    verdict (within 1.5x) on every other backend, taken on the wall-clock ratio (the header
    says so)."""
    lines = [
        f"  {'backend':<11} {'median s':>9} {'best s':>8} {'CPU s':>7} {'vs TF median':>13} "
        f"{'vs TF CPU':>10}  verdict on vs TF median"
    ]
    medians = {
        backend: (
            statistics.median(wall for wall, _ in passes),
            statistics.median(cpu for _, cpu in passes),
        )
        for backend, passes in times.items()
    }
    wall_reference, cpu_reference = medians["tensorflow"]
    for backend, passes in times.items():
        wall, cpu = medians[backend]
        ratio = wall / wall_reference
        target = (
            "(the reference)"
            if backend == "tensorflow"
            else f"{verdict(ratio <= 1.5)}: within 1.5x"
        )
        lines.append(
            f"  {backend:<11} {wall:>9.3f} {min(wall for wall, _ in passes):>8.3f} {cpu:>7.3f} "
            f"{ratio:>12.2f}x {cpu / cpu_reference:>9.2f}x  {target}"
        )
    return lines


def ask(worker: subprocess.Popen, command: str):
    """Send one command line to a backend worker; its one-line JSON answer, parsed."""
    worker.stdin.write(command + "\n")
    worker.stdin.flush()
    return json.loads(worker.stdout.readline())


def dense_table(products, seconds: dict[str, list[float]], passes: dict[str, list]) -> None:
    """Print each backend's fp32 GFLOP/s on the model's Dense products, their CPU time against
    the pass's (median CPU seconds of ``passes``, (wall, CPU) pairs), and the rest of the pass
    (element-wise work, attention, copies); then the pass against TensorFlow's with only one of
    the two parts at TensorFlow's time: what each part alone can win. The `ONEDNN` column
    (torch's oneDNN linear) has no pass of its own: its pass is torch's with its Dense
    products at that column's time, an estimate."""
    print("\n  fp32 Dense products through keras.ops.matmul, GFLOP per CPU second (best of 5)")
    print(f"  {'m x k x n':<16} {'count':>5} " + " ".join(f"{name:>12}" for name in seconds))
    for index, product in enumerate(products):
        rates = (product.flops / product.count / times[index] / 1e9 for times in seconds.values())
        shape = f"{product.m}x{product.k}x{product.n}"
        print(f"  {shape:<16} {product.count:>5} " + " ".join(f"{rate:>12.0f}" for rate in rates))
    dense = {
        name: sum(product.count * time for product, time in zip(products, times, strict=True))
        for name, times in seconds.items()
    }
    cpu = {name: statistics.median(cpu for _, cpu in runs) for name, runs in passes.items()}
    if ONEDNN in seconds:
        cpu[ONEDNN] = cpu["torch"] - dense["torch"] + dense[ONEDNN]
    reference = cpu["tensorflow"]
    rows = {
        "pass CPU s (median)": (f"{cpu[name]:.3f}" for name in seconds),
        "pass vs TF's": (f"{cpu[name] / reference:.2f}x" for name in seconds),
        "Dense CPU s": (f"{dense[name]:.3f}" for name in seconds),
        "rest CPU s": (f"{cpu[name] - dense[name]:.3f}" for name in seconds),
        "Dense vs TF's pass": (f"{dense[name] / reference:.2f}x" for name in seconds),
        "pass, TF's Dense rate": (
            f"{(cpu[name] - dense[name] + dense['tensorflow']) / reference:.2f}x"
            for name in seconds
        ),
        "pass, TF's rest": (
            f"{(dense[name] + reference - dense['tensorflow']) / reference:.2f}x"
            for name in seconds
        ),
    }
    for label, cells in rows.items():
        print(f"  {label:<22} " + " ".join(f"{cell:>12}" for cell in cells))
    if ONEDNN in seconds:
        print(f"  {ONEDNN}: torch's pass with its Dense products at oneDNN's time (estimated)")


def verdict(met: bool) -> str:
    return "met" if met else "missed"


def shape_args(shape) -> list[str]:
    return ["--shape", *map(str, shape)]


def positive(text: str) -> int:
    """An ``int`` option's value, at least 1 (argparse reports the error)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def arguments() -> argparse.ArgumentParser:
    """The command line: every option a user passes, with its help; the workers' own hidden."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["swin_t_k400", "swin_b_k400"],
        metavar="NAME",
        help="named configs to time (configs/; default: swin_t_k400 swin_b_k400): one forward "
        "table and one conversion row each; --backends times only the first",
    )
    parser.add_argument(
        "--frames", type=int, metavar="N", help="frames of the clip (default 32; 8 with --backends)"
    )
    parser.add_argument(
        "--size",
        type=int,
        default=224,
        metavar="PIXELS",
        help="height and width of the clip in pixels; the clip is 1 x frames x size x size x 3 "
        "(default 224)",
    )
    parser.add_argument(
        "--repeats",
        type=positive,
        default=3,
        metavar="N",
        help="timed passes per forward row, after one untimed warm-up; a row shows the best "
        "(default 3). With --backends: the interleaved rounds, of which the median is shown (the "
        "Dense products' table is always the best of 5 per product)",
    )
    parser.add_argument(
        "--rounds",
        type=positive,
        default=2,
        metavar="N",
        help="forward rows: every row once a round, in a fresh process, rows interleaved; a row "
        "shows its fastest round and its largest memory (default 2: a busy neighbour on a "
        "shared machine slows a row for seconds to minutes; --quick: 1; --backends has its own "
        "rounds, --repeats)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="Swin-T on 1x8x224x224, best of 2, one round, no conversion table (~3 min)",
    )
    parser.add_argument("--no-conversion", action="store_true", help="skip the conversion table")
    parser.add_argument(
        "--backends",
        action="store_true",
        help="only the Keras backends: TensorFlow, torch and JAX each in its own process, "
        "--repeats interleaved rounds on the first of --configs, medians against TensorFlow's "
        "(the columns: README.md, section 'Keras backends')",
    )
    parser.add_argument(
        "--torch-compiled",
        action="store_true",
        help="with --backends, one more row: torch-aoti, the torch backend's model exported by "
        "torch.export and compiled ahead of time by AOTInductor with freezing, whose Dense "
        "layers run oneDNN's linear (Swin-T: minutes to compile; the compile time is printed)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="CPU threads of each backend with --backends (default 1, so that other processes' "
        "load does not decide the result)",
    )
    parser.add_argument(
        "--export-configs",
        nargs="*",
        default=["swin_t_k400"],
        metavar="NAME",
        help="configs whose ONNX and SavedModel exports are made and timed (tf2onnx takes "
        "about 90 s for Swin-T, several minutes for Swin-B)",
    )
    parser.add_argument(
        "--sources",
        type=Path,
        default=ROOT / "checkpoints",
        metavar="DIR",
        help="folder of the .pth files the conversion table converts, under their official "
        "names; a missing one is first written there by vswin-convert synthesize (default: "
        "checkpoints/)",
    )
    parser.add_argument("--forward-worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--export-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compiled", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shape", type=int, nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--exports", type=Path, help=argparse.SUPPRESS)
    return parser


def main() -> None:
    parser = arguments()
    args = parser.parse_args()
    if args.torch_compiled and not args.backends:
        parser.error("--torch-compiled adds a row to --backends' table: pass --backends too")

    if args.forward_worker:
        implementation, engine = args.forward_worker
        result = forward_worker(
            implementation, engine, args.configs[0], tuple(args.shape), args.repeats, args.exports
        )
        print(json.dumps(result))
        return
    if args.export_worker:
        print(json.dumps(export_worker(args.configs[0], tuple(args.shape), args.exports)))
        return
    if args.backend_worker:
        backend_worker(args.configs[0], tuple(args.shape), args.compiled)
        return

    from videoswin_tf.startup import start_tensorflow_quietly

    start_tensorflow_quietly()
    if args.quick:
        args.configs, args.frames, args.repeats, args.no_conversion = ["swin_t_k400"], 8, 2, True
        args.rounds = 1
    print(f"CPU: {cpu_description()}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    frames = args.frames or (8 if args.backends else 32)
    shape = (1, frames, args.size, args.size, 3)
    if args.backends:  # its Dense table gives each backend's own GFLOP/s: no peak needed
        backend_rounds(args.configs[0], shape, args.repeats, args.threads, args.torch_compiled)
        print(f"load average at end: {os.getloadavg()[0]:.2f}")
        return
    rates = matmul_peak()
    peak = max(rates.values())
    print(
        "fp32 matmul peak, 4096x4096: "
        + ", ".join(f"{name} {rate:.0f} GFLOP/s" for name, rate in rates.items())
        + f"; peak = {peak:.0f}"
    )
    timing = Timing(args.repeats, args.rounds)
    print(
        f"forward passes on a {'x'.join(map(str, shape))} clip, {timing.describe()}, "
        "each row in a fresh process"
    )
    with tempfile.TemporaryDirectory() as exports:
        for config in args.configs:
            with_exports = config in args.export_configs
            forwards(config, shape, timing, peak, Path(exports), with_exports)
    if not args.no_conversion:
        conversions(args.configs, args.sources)
    rates = matmul_peak()
    print(
        "\nfp32 matmul peak at the end: "
        + ", ".join(f"{name} {rate:.0f} GFLOP/s" for name, rate in rates.items())
    )
    if max(rates.values()) > peak:
        print(
            f"  peak {max(rates.values()):.0f} GFLOP/s: scale the fractions above by "
            f"{peak / max(rates.values()):.2f}"
        )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
