"""Every weight of a Keras model re-drawn to a distinct, non-trivial value with a fixed seed.

Upstream code initialises bias tables to zeros and LayerNorms to 1 and 0, which hide a wrong
mapping; the tests that compare against upstream models stress them first.
"""

from __future__ import annotations

import numpy as np


def stress(model, seed: int, head: tuple[str, float] | None = None) -> None:
    """Re-draw each weight of ``model`` in order from ``numpy.random.default_rng(seed)``: bias
    tables ``N(0, 1.5)``, LayerNorm scales ``U(0.5, 1.5)`` and offsets ``U(-0.5, 0.5)``, kernels
    ``N(0, 1 / fan_in)``, biases ``N(0, 0.2)``; with ``head=(path part, std)`` the kernel whose
    path holds that part (the classifier's head) ``N(0, std)``."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape = tuple(weight.shape)
        if weight.name == "relative_position_bias_table":
            value = rng.normal(0.0, 1.5, shape)
        elif weight.name == "gamma":
            value = rng.uniform(0.5, 1.5, shape)
        elif weight.name == "beta":
            value = rng.uniform(-0.5, 0.5, shape)
        elif weight.name == "kernel" and head is not None and head[0] in weight.path:
            value = rng.normal(0.0, head[1], shape)
        elif weight.name == "kernel":
            value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape)
        else:
            value = rng.normal(0.0, 0.2, shape)
        weight.assign(value.astype("float32"))
