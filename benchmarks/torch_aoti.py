"""The model on Keras' torch backend, compiled ahead of time: ``torch.export`` then AOTInductor.

Keras' ``jit_compile=True`` on torch (``torch.compile``) keeps torch's fp32 Dense products on
MKL, which runs its AVX2 code on AMD CPUs (86-111 GFLOP per CPU second on Swin-T's shapes on a
Zen 5, against oneDNN's 233-249): with static shapes, inductor's freezing packs a linear for
MKL (``mkl._mkl_linear``), and a symbolic batch does not survive this model's trace (the
windows' chunking and the attention's bias fix the batch). An AOTInductor compile
(``V.aot_compilation``) with freezing packs every linear for oneDNN instead
(``mkldnn._linear_pointwise``, whatever the shapes). README "Keras backends (issue 17)" gives
the measured result and the lines a user runs; the slow test in tests/test_backends.py keeps
the route's parity and its oneDNN linears.

Run with ``KERAS_BACKEND=torch``; the package compiled is for the clip's exact shape.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# torch.export lists every Keras layer's loss-tracking attributes as a possible side effect
SIDE_EFFECTS_WARNING = "While compiling, we found certain side effects"


@dataclass(frozen=True)
class CompiledModel:
    """A model compiled by `compile_ahead_of_time`.

    Attributes:
        run: ``clip -> outputs``: one forward pass on a torch float32 tensor of the compiled
            clip's shape ``(B, T, H, W, 3)``; returns the model's outputs as torch tensors.
        export_seconds: wall seconds of ``torch.export``.
        compile_seconds: wall seconds of AOTInductor's compile and the package's load.
    """

    run: Callable
    export_seconds: float
    compile_seconds: float


def compile_ahead_of_time(model, clip, package: str | Path, **inductor_configs) -> CompiledModel:
    """Export ``model`` for ``clip``'s shape and compile it with AOTInductor and freezing.

    Args:
        model: a built Keras model on the torch backend.
        clip: a torch float32 tensor ``(B, T, H, W, 3)``: the shape the package is for.
        package: the ``.pt2`` file to write (AOTInductor's package; it holds the weights).
        **inductor_configs: further inductor settings for the compile (``freezing`` is on).

    Returns:
        `CompiledModel`. Swin-T 1x8x224x224 on one Zen 5 core: minutes to compile.
    """
    import torch

    start = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=SIDE_EFFECTS_WARNING)
        exported = torch.export.export(model, (clip,), strict=True)
        exported_at = time.perf_counter()
        path = torch._inductor.aoti_compile_and_package(
            exported,
            package_path=str(package),
            inductor_configs={"freezing": True, **inductor_configs},
        )
    run = torch._inductor.aoti_load_package(path)
    return CompiledModel(run, exported_at - start, time.perf_counter() - exported_at)
