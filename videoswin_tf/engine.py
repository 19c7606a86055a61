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

import keras


@functools.cache
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


class PredictEngine:
    """Mixin for a Keras model whose `predict` picks its engine on TensorFlow: XLA where
    `xla_for_predict` says so, the plain graph otherwise; training and evaluation keep Keras'
    own choice. ``compile(jit_compile=True/False)`` (or ``run_eagerly=True``) chooses instead.

    Attributes:
        auto_predict_engine: whether `predict` still chooses (``True`` until ``compile`` is
            given an explicit ``jit_compile``).
    """

    auto_predict_engine = True

    def compile(self, *args, jit_compile="auto", **kwargs):
        """Keras' ``compile``; with ``jit_compile="auto"`` (the default) `predict` still
        chooses its engine itself (see `make_predict_function`)."""
        super().compile(*args, jit_compile=jit_compile, **kwargs)
        self.auto_predict_engine = jit_compile == "auto"

    def make_predict_function(self, force=False):
        """Keras' predict function, compiled with XLA where that is the faster engine: Keras'
        public ``jit_compile`` is set to the choice while Keras makes the function, then put
        back, so `fit` and `evaluate` are untouched."""
        if keras.backend.backend() != "tensorflow" or not self.auto_predict_engine:
            return super().make_predict_function(force)
        kept = self.jit_compile
        self.jit_compile = xla_for_predict()
        try:
            return super().make_predict_function(force)
        finally:
            self.jit_compile = kept

    def predict_on_batch(self, x):
        """Keras' ``predict_on_batch``; on torch, NumPy inputs are made tensors first, outside
        the function that ``jit_compile=True`` compiles (converting them inside breaks the
        graph ``torch.compile`` traces)."""
        if keras.backend.backend() == "torch":
            x = keras.tree.map_structure(keras.ops.convert_to_tensor, x)
        return super().predict_on_batch(x)

    @property
    def predict_engine(self) -> str:
        """What `predict` runs on: ``"eager"``, ``"graph"`` or ``"xla"`` (TensorFlow), or the
        backend's own compiled path (``"jit"``)."""
        if self.run_eagerly:
            return "eager"
        if keras.backend.backend() != "tensorflow":
            return "jit" if self.jit_compile else "eager"
        if not self.auto_predict_engine:
            return "xla" if self.jit_compile else "graph"
        return "xla" if xla_for_predict() else "graph"
