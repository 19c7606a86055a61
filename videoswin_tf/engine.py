"""Which engine runs `predict` on the TensorFlow backend: a plain graph or XLA.

Measured with Swin-T on 2-core CPUs (README, Benchmarks): where TensorFlow runs its oneDNN
kernels (it turns them on by itself on CPUs with AVX-512 VNNI, BF16 or AMX) the plain graph is
faster than XLA (AMD EPYC Zen 5, and an AVX-512 Intel machine where XLA gave nothing); where it
does not (AVX2 CPUs such as Zen 3, or ``TF_ENABLE_ONEDNN_OPTS=0``), XLA was 1.6x faster (Zen 3:
2.6 s against 4.0-4.5 s), its fused element-wise kernels replacing Eigen's separate passes over
the large attention tensors. Keras itself leaves XLA off on every CPU-only TensorFlow.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def onednn_enabled() -> bool:
    """Whether this TensorFlow process runs oneDNN's CPU kernels."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow without this probe: assume its default on x86, oneDNN
        return True
    return bool(_pywrap_util_port.IsMklEnabled())


def xla_for_predict() -> bool:
    """Whether `predict` should be compiled with XLA in this TensorFlow process.

    ``True`` where a GPU is visible, as Keras decides itself; on CPUs, where oneDNN is off.
    """
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU")) or not onednn_enabled()
