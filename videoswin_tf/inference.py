"""Which engine and precision run a model on clips: TensorFlow or OpenVINO, fp32 or bf16.

``choose`` turns a request (engine or ``None`` for the fastest installed one, and a precision)
into an `EngineChoice`, refusing bf16 on CPUs without native bf16 and OpenVINO where it is not
installed. ``runner`` gives the function that runs a Keras model on float clips with that
choice; what it builds (a bf16 copy of the model, a compiled OpenVINO model) is kept per model
in a weak-keyed table, so it is built once per process and forgotten with the model.

- TensorFlow, fp32: the model's own ``predict_on_batch`` (`videoswin_tf.engine` picks graph
  or XLA).
- TensorFlow, bf16: a copy of the model under Keras' ``mixed_bfloat16`` policy (bf16 compute,
  float32 variables; the I3D head stays float32), sharing nothing with the model.
- OpenVINO: the model traced by ``tf.function`` for one clip of the batch's clip size,
  converted in memory by ``openvino.convert_model`` and compiled for the CPU with
  ``INFERENCE_PRECISION_HINT`` f32 or bf16, then run on a batch's clips one after another.
  Each clip size compiles once, whatever the batch (a batch's graph grows with it: the traced
  attention and MLP run a chunk at a time, and each chunk is nodes to convert).
  The converted model is written as IR and compiled from that file, after the trace and the
  in-memory model are dropped: OpenVINO then maps the IR's constants from the file instead of
  keeping the traced graph's copies (issue 17, Swin-T 1x32x224x224 in fresh processes: the
  memory added by building and running fell from 1.38 to 1.11 GiB, medians of three).
  ``VSWIN_OPENVINO_CACHE`` names a folder that keeps those IR files (``ir/<key>/``, keyed by
  `ir_key`) for later processes, which then skip tracing and converting, and OpenVINO's
  compiled blob of each (``compiled/<key>/``, its ``CACHE_DIR``), for the
  ``VSWIN_OPENVINO_CACHE_ENTRIES`` (default 4) most recently used keys (`openvino_cache`).
  Without it the IR goes to a temporary folder, removed once compiled.

OpenVINO is the default when installed: on issue 17's quiet 2-core Zen 4 it ran Swin-T 1.33x
faster than TensorFlow in fp32 and 2.49x in bf16 (README, Benchmarks, also has a loaded run
where it was slower).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from videoswin_tf import openvino_cache
from videoswin_tf.openvino_cache import IR_XML

ENGINES = ("tensorflow", "openvino")
PRECISIONS = ("fp32", "bf16")
# /proc/cpuinfo flags of native bf16 arithmetic: AVX-512 BF16 (Cooper Lake, Zen 4 and later)
# and AMX (Sapphire Rapids and later).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# OpenVINO's name of each precision (its INFERENCE_PRECISION_HINT).
OPENVINO_PRECISION = {"fp32": "f32", "bf16": "bf16"}
CACHE_ENV = "VSWIN_OPENVINO_CACHE"
# Bump IR_FORMAT when what is written into a cached IR folder changes.
# 2: mask groups; 3: LayerNorm as MVN; 4: mask in q.k; 5: windows in window_partition's order,
# q, k, v as three products, the residual stream as rows; 6: q, k, v heads-major; 7: attention
# and MLP in chunks
IR_FORMAT = "videoswin-tf openvino ir 7"

# A runner: float clips (B, T, H, W, 3) -> the model's output (an array or a dict of arrays).
Runner = Callable[[np.ndarray], Any]


@dataclasses.dataclass(frozen=True)
class EngineChoice:
    """An engine and the precision it computes in.

    Attributes:
        engine: one of `ENGINES`.
        precision: one of `PRECISIONS`.
        chosen: whether the engine was picked here (``True``) or asked for by name.
    """

    engine: str = "tensorflow"
    precision: str = "fp32"
    chosen: bool = False

    def describe(self) -> str:
        """The line ``vswin-predict`` prints on stderr: ``engine: openvino, bf16 (the fastest
        installed; --engine to choose)``, or ``(as asked)`` when ``--engine`` named it."""
        how = "the fastest installed; --engine to choose" if self.chosen else "as asked"
        return f"engine: {self.engine}, {self.precision} ({how})"


# TensorFlow in fp32: what `predict_on_batch` has always run.
TENSORFLOW_FP32 = EngineChoice()


def cpu_flags(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags the kernel reports (the first ``flags`` line), or an empty set
    where ``cpuinfo`` cannot be read (not Linux)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def has_native_bf16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bf16 natively (AVX512_BF16 or AMX, see `BF16_FLAGS`)."""
    return not cpu_flags(cpuinfo).isdisjoint(BF16_FLAGS)


def openvino_installed() -> bool:
    """Whether ``import openvino`` would find the package (without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def choose(
    engine: str | None = None,
    precision: str = "fp32",
    cpuinfo: str | os.PathLike = "/proc/cpuinfo",
) -> EngineChoice:
    """The engine and precision to run with.

    Args:
        engine: ``"tensorflow"``, ``"openvino"``, or ``None`` for the fastest installed:
            OpenVINO when it is installed, else TensorFlow.
        precision: ``"fp32"`` (default; the checkpoints' accuracy figures are fp32) or
            ``"bf16"``.
        cpuinfo: where the CPU's feature flags are read for bf16.

    Raises:
        ValueError: an unknown engine or precision, bf16 on a CPU without native bf16, or
            OpenVINO asked for and not installed (one line saying what to do).
        CacheFolderError: OpenVINO chosen and ``$VSWIN_OPENVINO_CACHE`` unusable
            (`check_cache_folder`).
    """
    if engine is not None and engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and not has_native_bf16(cpuinfo):
        raise ValueError(
            "bf16 needs a CPU with native bf16 (AVX512_BF16 or AMX) and this one has neither; "
            "use precision fp32"
        )
    if engine == "openvino" and not openvino_installed():
        raise ValueError(
            "the openvino engine needs OpenVINO: pip install 'videoswin-tf[openvino]', or use "
            "engine tensorflow"
        )
    if engine is None:
        choice = EngineChoice("openvino" if openvino_installed() else "tensorflow", precision, True)
    else:
        choice = EngineChoice(engine, precision)
    if choice.engine == "openvino":
        check_cache_folder()
    return choice


class CacheFolderError(ValueError):
    """``$VSWIN_OPENVINO_CACHE`` names something that cannot hold the cache."""


def check_cache_folder() -> None:
    """Refuse, before any model is built, a ``$VSWIN_OPENVINO_CACHE`` that is not a folder this
    process can write in (or create); nothing when it is unset.

    Raises:
        CacheFolderError: one line naming the value and what to do, for the folder or a bad
            ``$VSWIN_OPENVINO_CACHE_ENTRIES``.
    """
    value = os.environ.get(CACHE_ENV)
    if not value:
        return
    try:
        openvino_cache.max_entries()
    except ValueError as error:
        raise CacheFolderError(str(error)) from None
    folder = Path(value)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if existing == folder and not folder.is_dir():
        problem = "is not a folder"
    elif existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        problem = f"cannot be written ({existing} is read-only for this user)"
    elif not existing.is_dir():
        problem = f"cannot be created ({existing} is a file)"
    else:
        return
    raise CacheFolderError(
        f"{CACHE_ENV}={value} {problem}; point it at a folder this user can write, or unset it"
    )


# model -> {(engine, precision, what, clip shape): what runs it}. Weak keys: an entry lives as
# long as its model does; nothing stored holds a reference to the model.
_BUILT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def tensorflow_model(model, precision: str):
    """``model`` itself for fp32; for bf16 a copy of it under ``mixed_bfloat16`` with the
    same weights, built once per model. ``model`` is a `TFSwinTransformer3D` (or any model
    whose config takes a top-level ``dtype`` policy)."""
    if precision == "fp32":
        return model
    built = _BUILT.setdefault(model, {})
    key = ("tensorflow", precision)
    if key not in built:
        built[key] = _mixed_copy(model, "mixed_bfloat16")
    return built[key]


def _mixed_copy(model, policy: str):
    config = {**model.get_config(), "dtype": policy}
    copy = type(model).from_config(config)
    if not copy.built:
        copy.build((None, None, None, None, 3))  # (B, T, H, W, 3)
    copy.set_weights(model.get_weights())
    return copy


def openvino_runner(owner, net, precision: str, clip_shape: tuple[int, ...], what: str = "model"):
    """``net`` (a Keras model or function of float clips) compiled by OpenVINO for one clip of
    ``clip_shape[1:]``, built once per ``owner`` (the model the caller holds), precision,
    ``what`` (a name of ``net``'s role) and clip size. The runner takes clips of any batch,
    runs them one after another and returns what ``net`` returns for the batch, as numpy.

    One clip at a time: a batch's traced graph grows with it (the attention and MLP chunks of
    `videoswin_tf.layers`), and Swin-T's conversion took 4.0 s for 3 clips before the chunks
    and 64 s after, against 12 s for one; one clip keeps both cores busy (3 clips one at a
    time 0.93 s each, together 2.86 s, under load), and the last, smaller batch of a video is
    no second graph to convert."""
    one_clip = (1, *tuple(clip_shape)[1:])
    built = _BUILT.setdefault(owner, {})
    key = ("openvino", precision, what, one_clip)
    if key not in built:
        built[key] = _compile_openvino(net, one_clip, precision)
    return functools.partial(_clip_by_clip, built[key])


def _clip_by_clip(run: Runner, clips: np.ndarray):
    outputs = [run(clips[index : index + 1]) for index in range(len(clips))]
    if isinstance(outputs[0], dict):
        return {name: np.concatenate([out[name] for out in outputs]) for name in outputs[0]}
    return np.concatenate(outputs)


def openvino_model(net, clip_shape: tuple[int | None, ...]):
    """``net`` (a Keras model or function of float clips) as an ``openvino.Model`` for clips
    of ``clip_shape`` (``None`` for a dimension of any size): traced by ``tf.function`` and
    converted in memory by ``openvino.convert_model``. Its input is ``clip``; its outputs are
    ``net``'s dict keys, or ``output`` for a single tensor. Attention and LayerNorm are traced
    in the patterns OpenVINO fuses (`openvino_trace`)."""
    import openvino
    import tensorflow as tf

    from videoswin_tf.layers.tracing import openvino_trace

    def forward(clip):
        out = net(clip, training=False)
        return dict(out) if isinstance(out, dict) else {"output": out}

    with openvino_trace():
        function = tf.function(forward).get_concrete_function(
            tf.TensorSpec(clip_shape, tf.float32, name="clip")
        )
    return openvino.convert_model(function)


def compile_openvino(converted, precision: str = "fp32", cache_dir: Path | None = None):
    """An ``openvino.Model`` (or IR file) compiled for the CPU in ``precision``, keeping
    OpenVINO's compiled blob in ``cache_dir`` when given (its ``CACHE_DIR``), without the
    weights (``CACHE_MODE`` ``OPTIMIZE_SIZE``: a later process maps them from the IR file it
    compiles). Swin-T 1x32x224x224 with its chunked attention and MLP (every chunk's node
    keeps its own packed copy of the weights in a full blob): blob 3.3 MB against 349 MB,
    0.61 GiB resident after loading it and one pass against 0.92, loaded in 0.5 against 0.6 s.

    Its threads are not pinned to cores (``ENABLE_CPU_PINNING`` off; on by default): a pinned
    thread waits while another process runs on its core. Swin-T 1x32x224x224 on 2 shared Zen
    cores, load 2.3-2.5: fresh processes alternating, 4 pairs, median pass 0.644 against
    1.186 s, 0.480 against 0.489, 0.464 against 0.481 and 0.886 against 1.102, the fastest
    pass of each as fast (0.459-0.484 against 0.465-1.139); one process alternating, 21
    passes twice: 18-20% less wall and 10-13% less CPU time, the fastest pass the same.
    """
    import openvino

    config = {
        "INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[precision],
        "ENABLE_CPU_PINNING": False,
    }
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
        config["CACHE_MODE"] = "OPTIMIZE_SIZE"
    return openvino.Core().compile_model(converted, "CPU", config)


def ir_key(net, clip_shape: tuple[int, ...]) -> str | None:
    """The name of ``net``'s cached IR for clips of ``clip_shape``: a SHA-256 (hex) of the IR
    format, the OpenVINO, Keras and package versions, the clip shape, ``net``'s architecture
    (``to_json``) and every weight's path, dtype, shape and bytes. ``None`` where ``net`` is
    not a Keras model whose architecture serializes (it is then never cached)."""
    import keras
    import openvino

    from videoswin_tf import __version__

    try:
        architecture = net.to_json()
    except (AttributeError, NotImplementedError, TypeError, ValueError):
        return None
    digest = hashlib.sha256()
    versions = [IR_FORMAT, openvino.__version__, keras.__version__, __version__]
    digest.update(json.dumps([*versions, list(clip_shape), architecture]).encode())
    for weight in net.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(json.dumps([weight.path, str(value.dtype), value.shape]).encode())
        digest.update(value.data)
    return digest.hexdigest()


def _compile_openvino(net, clip_shape: tuple[int, ...], precision: str) -> Runner:
    cache = os.environ.get(CACHE_ENV)
    key = ir_key(net, clip_shape) if cache else None
    if key is None:
        with tempfile.TemporaryDirectory(prefix="vswin-openvino-") as folder:
            _write_ir(net, clip_shape, Path(folder))
            compiled = compile_openvino(str(Path(folder) / IR_XML), precision)
    else:
        write = functools.partial(_write_ir, net, clip_shape)
        with openvino_cache.cached_ir(cache, key, write) as entry:
            compiled = compile_openvino(str(entry.xml), precision, entry.compiled)
    names = [output.get_any_name() for output in compiled.outputs]
    request = compiled.create_infer_request()

    def run(clip: np.ndarray):
        results = request.infer({0: np.ascontiguousarray(clip, np.float32)})
        found = {name: np.array(results[i]) for i, name in enumerate(names)}
        return found["output"] if list(found) == ["output"] else found

    return run


def return_freed_memory() -> None:
    """Give the heap that tracing and converting freed back to the system (glibc's
    ``malloc_trim``), so that compiling does not add to it: Swin-T 1x32x224x224, the bench's
    ov-fp32 row added 1.015 GiB against 1.040 without it. Nothing where the C library has no
    ``malloc_trim`` (not glibc) or cannot be opened this way (Windows)."""
    try:
        trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    except (OSError, TypeError):
        return
    if trim is not None:
        trim(0)


def _write_ir(net, clip_shape: tuple[int, ...], folder: Path) -> None:
    """``net`` traced, converted and saved as float32 IR in ``folder`` (``model.xml``,
    ``model.bin``); the trace and the converted model are gone, and the heap they held is
    given back (`return_freed_memory`), when this returns."""
    import openvino

    model = openvino_model(net, clip_shape)
    openvino.save_model(model, folder / IR_XML, compress_to_fp16=False)
    del model
    return_freed_memory()
