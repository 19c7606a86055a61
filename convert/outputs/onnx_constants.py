"""Attention constants of an ONNX export computed at run time instead of stored.

tf2onnx freezes the model and lets TensorFlow's constant folder evaluate everything that does
not depend on the clip. Two things in Video Swin do not: each block's relative position bias
(its table gathered by a fixed index, ``(heads, N, N)`` per block) and each shifted block's
window mask (``(nWindows, N, N)``, cut into one constant per chunk of windows). On Swin-T at
32x224x224 they are 119 MB of a 231 MB file whose weights are 113 MB (README, Export).

`unfold_attention_constants` finds those folded initializers by value and rebuilds each one
from what it was made of, as a few nodes that run when the model runs:

- a bias ``(.., heads, N', N')`` becomes ``Gather(table, index)``, transposed; the table is
  the layer's weight ``((2Wd-1)(2Wh-1)(2Ww-1), heads)`` and the index ``(N', N')`` is itself
  computed, as ``row - col`` of two ``N'``-long vectors (the flat relative offset of tokens
  ``i`` and ``j`` is ``r_i - r_j + c``, `videoswin_tf.layers.windows.relative_position_index`);
- a mask ``(k, .., N, N)`` of ``0`` and one negative value becomes
  ``Where(labels_i == labels_j, 0, value)`` over int32 region labels ``(k, N)`` (tokens attend
  where their labels agree, `videoswin_tf.layers.windows.shifted_window_mask`).

An initializer is replaced only when the rebuilt value equals it bit for bit (checked here in
numpy), so the graph computes exactly what it computed before. Runtimes that fold constants
when they load a model (ONNX Runtime, OpenVINO) fold these nodes back at load time, so the
speed of the loaded model does not change.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

# Smallest folded constant worth rebuilding, in elements: below this the nodes cost more than
# the bytes they save.
MIN_ELEMENTS = 256


@dataclasses.dataclass(frozen=True)
class UnfoldReport:
    """What `unfold_attention_constants` replaced.

    Attributes:
        biases: bias initializers rebuilt from a table.
        masks: mask initializers rebuilt from region labels.
        bytes_before: bytes of the initializers that were replaced.
        bytes_after: bytes of the initializers that replace them (tables, offsets, labels).
    """

    biases: int
    masks: int
    bytes_before: int
    bytes_after: int


def token_offsets(window_size: Sequence[int], num_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` int64 ``(N', 1)`` and ``(N',)`` whose difference ``rows - cols`` is
    ``relative_position_index(window_size)[:N', :N']``, the index the layer gathers with
    (`videoswin_tf.layers.windows`).

    Token ``i`` (depth-major in the window) sits at ``(d, h, w)``; its flat coordinate is
    ``r_i = d (2Wh-1)(2Ww-1) + h (2Ww-1) + w`` and the table row of the pair ``(i, j)`` is
    ``r_i - r_j + c`` with ``c = (Wd-1)(2Wh-1)(2Ww-1) + (Wh-1)(2Ww-1) + (Ww-1)``.
    """
    wd, wh, ww = window_size
    strides = np.array([(2 * wh - 1) * (2 * ww - 1), 2 * ww - 1, 1], np.int64)
    coords = np.stack(np.meshgrid(np.arange(wd), np.arange(wh), np.arange(ww), indexing="ij"))
    flat = (coords.reshape(3, -1).T @ strides)[:num_tokens]  # (N',)
    centre = int(np.array([wd - 1, wh - 1, ww - 1]) @ strides)
    return (flat + centre)[:, None], flat


def bias_from_table(table: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``(heads, N', N')`` bias of ``table`` ``(R, heads)``, as the rebuilt nodes compute it."""
    return np.transpose(table[rows - cols], (2, 0, 1))


def region_labels(mask: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Labels ``(k, N)`` and masked value that rebuild ``mask`` ``(k, N, N)``, or ``None``.

    ``mask`` must hold ``0`` where two tokens share a region and one negative value where they
    do not, with "shares a region" an equivalence (checked by rebuilding it).
    """
    values = np.unique(mask)  # sorted: the masked value, then 0
    if values[-1] != 0 or len(values) > 2:
        return None
    masked = float(values[0]) if len(values) == 2 else -100.0
    labels = np.argmax(mask == 0, axis=-1).astype(np.int32)  # first token of each one's region
    if not np.array_equal(mask_from_labels(labels, masked, mask.dtype), mask):
        return None
    return labels, masked


def mask_from_labels(labels: np.ndarray, masked: float, dtype) -> np.ndarray:
    """``(k, N, N)`` mask of labels ``(k, N)``, as the rebuilt nodes compute it."""
    same = labels[:, :, None] == labels[:, None, :]
    return np.where(same, np.zeros((), dtype), np.asarray(masked, dtype))


def unfold_attention_constants(
    model, tables: Mapping[str, np.ndarray], window_size: Sequence[int]
) -> UnfoldReport:
    """Replace, in place, the folded bias and mask initializers of an ONNX model.

    Args:
        model: an ``onnx.ModelProto`` written by tf2onnx from a Video Swin model.
        tables: each attention layer's relative position bias table ``(R, heads)`` float32,
            keyed by the variable's path (the new initializer's name).
        window_size: the configured window ``(Wd, Wh, Ww)`` of those layers.

    Returns:
        An `UnfoldReport`. Initializers that match nothing are left as they are.
    """
    from onnx import numpy_helper

    graph = model.graph
    consumers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    builder = NodeBuilder()
    biases = BiasMatcher(tables, window_size)
    kept, biases_done, masks_done, before = [], 0, 0, 0
    for tensor in graph.initializer:
        dims = tuple(tensor.dims)
        candidate = (
            tensor.data_type == 1  # FLOAT
            and len(dims) >= 3
            and dims[-1] == dims[-2] > 1
            and int(np.prod(dims)) >= MIN_ELEMENTS
            and consumers.get(tensor.name) == {"Add"}
        )
        if not candidate:
            kept.append(tensor)
            continue
        value = numpy_helper.to_array(tensor)
        if builder.bias(tensor.name, value, biases):
            biases_done += 1
        elif builder.mask(tensor.name, value):
            masks_done += 1
        else:
            kept.append(tensor)
            continue
        before += value.nbytes
    del graph.initializer[:]
    graph.initializer.extend(kept + builder.initializers)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(builder.nodes + nodes)  # the new nodes read initializers only
    after = sum(numpy_helper.to_array(t).nbytes for t in builder.initializers)
    return UnfoldReport(biases_done, masks_done, before, after)


class BiasMatcher:
    """Finds which layer's table, gathered for ``N'`` tokens, a folded bias is."""

    def __init__(self, tables: Mapping[str, np.ndarray], window_size: Sequence[int]):
        self.tables = {name: np.asarray(table, np.float32) for name, table in tables.items()}
        self.window_size = tuple(window_size)
        self.by_tokens: dict[int, dict[bytes, str]] = {}

    def offsets(self, num_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        return token_offsets(self.window_size, num_tokens)

    def find(self, value: np.ndarray) -> str | None:
        """The table name whose bias is ``value`` (any leading ones), or ``None``."""
        num_tokens = value.shape[-1]
        if num_tokens > int(np.prod(self.window_size)):
            return None
        if num_tokens not in self.by_tokens:
            rows, cols = self.offsets(num_tokens)
            self.by_tokens[num_tokens] = {
                digest(bias_from_table(table, rows, cols)): name
                for name, table in self.tables.items()
            }
        name = self.by_tokens[num_tokens].get(digest(value))
        if name is None:
            return None
        rows, cols = self.offsets(num_tokens)
        rebuilt = bias_from_table(self.tables[name], rows, cols)
        return name if np.array_equal(rebuilt.reshape(value.shape), value) else None


def digest(value: np.ndarray) -> bytes:
    """Hash of an array's float32 bytes, whatever its leading axes of one."""
    return hashlib.sha256(np.ascontiguousarray(value, np.float32).tobytes()).digest()


class NodeBuilder:
    """Collects the nodes and small initializers that rebuild folded constants."""

    def __init__(self):
        self.nodes: list = []
        self.initializers: list = []
        self.names: set[str] = set()

    def constant(self, name: str, value: np.ndarray) -> str:
        """An initializer ``name`` holding ``value`` (added once)."""
        from onnx import numpy_helper

        if name not in self.names:
            self.names.add(name)
            self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attributes) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def bias(self, target: str, value: np.ndarray, matcher: BiasMatcher) -> bool:
        """Rebuild ``target`` as ``Gather(table, rows - cols)``; whether it matched a table."""
        table = matcher.find(value)
        if table is None:
            return False
        num_tokens = value.shape[-1]
        rows, cols = matcher.offsets(num_tokens)
        prefix = f"{table}/runtime_bias_{num_tokens}"
        index = self.node(
            "Sub",
            [
                self.constant(f"{prefix}/rows", rows),
                self.constant(f"{prefix}/cols", cols),
            ],
            f"{prefix}/index",
        )  # (N', N')
        gathered = self.node(
            "Gather", [self.constant(table, matcher.tables[table]), index], f"{prefix}/gather"
        )  # (N', N', heads)
        heads = self.node("Transpose", [gathered], f"{target}/transposed", perm=[2, 0, 1])
        shape = self.constant(f"{target}/shape", np.array(value.shape, np.int64))
        self.node("Reshape", [heads, shape], target)
        return True

    def mask(self, target: str, value: np.ndarray) -> bool:
        """Rebuild ``target`` as ``Where(labels_i == labels_j, 0, masked)``; whether its
        values are a region mask."""
        found = region_labels(value.reshape(-1, *value.shape[-2:]))
        if found is None:
            return False
        labels, masked = found
        constant = self.constant(f"{target}/labels", labels)  # (k, N)
        rows = self.node(
            "Unsqueeze", [constant, self.constant("mask_axis_2", np.array([2]))], f"{target}/i"
        )
        cols = self.node(
            "Unsqueeze", [constant, self.constant("mask_axis_1", np.array([1]))], f"{target}/j"
        )
        same = self.node("Equal", [rows, cols], f"{target}/same")  # (k, N, N)
        zero = self.constant(f"mask_zero_{value.dtype}", np.zeros((), value.dtype))
        fill = self.constant(f"{target}/masked", np.asarray(masked, value.dtype))
        where = self.node("Where", [same, zero, fill], f"{target}/where")
        shape = self.constant(f"{target}/shape", np.array(value.shape, np.int64))
        self.node("Reshape", [where, shape], target)
        return True
