"""`onnx_constants`: folded attention biases and masks rebuilt as run-time nodes, exactly."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from videoswin_tf.convert.outputs.onnx_constants import (
    bias_from_table,
    region_labels,
    token_offsets,
    unfold_attention_constants,
)
from videoswin_tf.layers.windows import (
    relative_position_index,
    shifted_window_mask,
    shifted_window_regions,
)

WINDOW = (2, 3, 3)  # N = 18 tokens, a table of 3 * 5 * 5 = 75 rows


@pytest.mark.parametrize(("window", "tokens"), [((8, 7, 7), 392), ((8, 7, 7), 196), (WINDOW, 18)])
def test_token_offsets_difference_is_the_relative_position_index(window, tokens):
    rows, cols = token_offsets(window, tokens)
    assert rows.shape == (tokens, 1) and cols.shape == (tokens,)
    expected = relative_position_index(window)[:tokens, :tokens]
    np.testing.assert_array_equal(rows - cols, expected)


def test_region_labels_rebuild_a_shifted_window_mask_and_refuse_other_arrays():
    regions = shifted_window_regions((4, 6, 6), WINDOW, (1, 1, 1))  # (8 windows, 18)
    mask = np.asarray(shifted_window_mask(regions, "float32"))
    labels, masked = region_labels(mask)
    assert labels.shape == (8, 18) and labels.dtype == np.int32 and masked == -100.0
    # Same region where the labels agree: the labels partition tokens as the regions do.
    same = labels[:, :, None] == labels[:, None, :]
    np.testing.assert_array_equal(same, regions[:, :, None] == regions[:, None, :])

    not_transitive = np.zeros((1, 3, 3), np.float32)
    not_transitive[0, 0, 2] = not_transitive[0, 2, 0] = -100.0  # 0~1, 1~2, but 0 !~ 2
    assert region_labels(not_transitive) is None
    three_values = mask.copy()
    three_values[0, 0, -1] = -50.0
    assert region_labels(three_values) is None


def graph_of(constants: dict[str, np.ndarray]) -> onnx.ModelProto:
    """``y = x + c1 + c2 + ...`` over ``x`` ``(3, 2, 18, 18)``, each ``c`` an initializer."""
    nodes, previous = [], "x"
    for index, name in enumerate(constants):
        nodes.append(helper.make_node("Add", [previous, name], [f"sum{index}"]))
        previous = f"sum{index}"
    nodes.append(helper.make_node("Identity", [previous], ["y"]))
    shape = [3, 2, 18, 18]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return session.run(["y"], {"x": x})[0]


def test_unfold_rebuilds_matching_biases_and_masks_and_keeps_the_rest():
    rng = np.random.default_rng(0)
    table = rng.standard_normal((75, 2)).astype(np.float32)
    other = rng.standard_normal((75, 2)).astype(np.float32)
    rows, cols = token_offsets(WINDOW, 18)
    bias = bias_from_table(table, rows, cols)[None]  # (1, 2, 18, 18)
    regions = shifted_window_regions((2, 6, 3), WINDOW, (1, 1, 0))  # (2 windows, 18)
    mask = np.asarray(shifted_window_mask(regions, "float32"))[:, None]  # (2, 1, 18, 18)
    mask = np.concatenate([mask, mask[:1]])  # (3, 1, 18, 18), as x's batch of windows
    unrelated = rng.standard_normal((1, 2, 18, 18)).astype(np.float32)
    model = graph_of({"bias": bias, "mask": mask, "unrelated": unrelated})
    x = rng.standard_normal((3, 2, 18, 18)).astype(np.float32)
    before = run(model, x)

    report = unfold_attention_constants(model, {"block/table": other, "attn/table": table}, WINDOW)
    onnx.checker.check_model(model, full_check=True)
    assert (report.biases, report.masks) == (1, 1)
    assert report.bytes_before == bias.nbytes + mask.nbytes
    # the table (75 x 2 float32), rows and cols (18 int64 each), the mask's labels (3 x 18
    # int32), the two shapes (4 int64 each), the masked value and zero (float32), two axes
    assert report.bytes_after == 600 + 2 * 144 + 216 + 2 * 32 + 2 * 4 + 2 * 8
    names = {t.name for t in model.graph.initializer}
    assert {"attn/table", "unrelated"} <= names and not {"bias", "mask", "block/table"} & names
    np.testing.assert_array_equal(run(model, x), before)


def test_unfold_keeps_a_bias_that_no_table_makes():
    rng = np.random.default_rng(1)
    table = rng.standard_normal((75, 2)).astype(np.float32)
    rows, cols = token_offsets(WINDOW, 18)
    bias = bias_from_table(table, rows, cols)[None]
    bias[0, 0, 0, 0] += 1e-6  # one element off: not this table's bias any more
    model = graph_of({"bias": bias})
    report = unfold_attention_constants(model, {"attn/table": table}, WINDOW)
    assert (report.biases, report.masks, report.bytes_before) == (0, 0, 0)
    assert [t.name for t in model.graph.initializer] == ["bias"]
