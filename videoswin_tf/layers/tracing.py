"""Whether the graph being traced is the one converted for OpenVINO.

`videoswin_tf.inference.openvino_model` traces the model within `openvino_trace`; the layers
ask `in_openvino_trace` and then trace the patterns that OpenVINO's CPU plugin fuses
(`WindowAttention3D`: one fused attention per block; a shifted block's mask as query and key
columns; `LayerNormalization`: one MVN node). TensorFlow, JAX and torch never enter it and
keep the patterns that are faster for them. The weights and the function are the same.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

_TRACING = contextvars.ContextVar("videoswin_tf_openvino_trace", default=False)


@contextlib.contextmanager
def openvino_trace() -> Iterator[None]:
    """Within this block the layers trace the graph that is converted for OpenVINO
    (`in_openvino_trace` is true); it is false again after the block, also on an error."""
    token = _TRACING.set(True)
    try:
        yield
    finally:
        _TRACING.reset(token)


def in_openvino_trace() -> bool:
    """Whether the layers are being traced for OpenVINO (inside `openvino_trace`)."""
    return _TRACING.get()
