"""Whether the graph being traced is the one converted for OpenVINO.

`videoswin_tf.inference.openvino_model` traces the model within `openvino_trace`; the layers
ask `in_openvino_trace` and then trace the patterns that OpenVINO's CPU plugin fuses
(`WindowAttention3D`: one fused attention per block; a shifted block's mask as query and key
columns; `LayerNormalization`: one MVN node). TensorFlow, JAX and torch never enter it and
keep the patterns that are faster for them. The weights and the function are the same.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class _Tracing(threading.local):
    """Whether this thread is inside `openvino_trace`. A ``threading.local`` attribute, not a
    ``contextvars.ContextVar``: ``torch.compile`` (Dynamo) reads an attribute into the graph
    it traces and recompiles when it changes, where ``ContextVar.get`` breaks the graph (one
    break per layer call: 41 on a 4-stage model)."""

    on = False


_TRACING = _Tracing()


@contextlib.contextmanager
def openvino_trace() -> Iterator[None]:
    """Within this block the layers trace the graph that is converted for OpenVINO
    (`in_openvino_trace` is true, in this thread); it is as before again after the block, also
    on an error."""
    before, _TRACING.on = _TRACING.on, True
    try:
        yield
    finally:
        _TRACING.on = before


def in_openvino_trace() -> bool:
    """Whether the layers are being traced for OpenVINO (inside `openvino_trace`)."""
    return _TRACING.on
