"""The two attention paths of `WindowAttention3D` compute the same thing, on every backend."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from videoswin_tf.layers.attention import WindowAttention3D
from videoswin_tf.layers.windows import (
    shifted_window_mask,
    shifted_window_mask_factors,
    shifted_window_regions,
)

COMPARE = """
import keras, numpy as np
from videoswin_tf.layers import attention
from videoswin_tf.layers.attention import WindowAttention3D
from videoswin_tf.layers.windows import (
    shifted_window_mask,
    shifted_window_mask_factors,
    shifted_window_regions,
)

keras.utils.set_random_seed(0)
layer = WindowAttention3D(16, (2, 3, 3), 2, name="attn")
layer.build((None, 18, 16))
table = layer.relative_position_bias_table
table.assign(np.random.default_rng(1).normal(0, 1.5, tuple(table.shape)).astype("float32"))
regions = shifted_window_regions((4, 6, 6), (2, 3, 3), (1, 1, 1))  # 8 windows of 18 tokens
mask = shifted_window_mask(regions)
worst = 0.0
# With CHUNK_BYTES 8192 (3 windows' 2x18x18 float32 logits; 2 divides the 8 windows of a mask)
# the windows are attended 2 at a time.
cases = ((1, True, None), (3, True, None), (3, False, None), (1, True, 8192), (3, True, 8192))
cases += ((3, False, 8192),)
for clips, with_mask, chunk_bytes in cases:
    attention.CHUNK_BYTES = chunk_bytes or 8 * 2**20
    windows = np.random.default_rng(clips).standard_normal((clips * 8, 18, 16)).astype("float32")
    qkv = keras.ops.reshape(layer.qkv(windows), (-1, 18, 3, 2, 8))
    m = mask if with_mask else None
    explicit = keras.ops.convert_to_numpy(layer.explicit_attention(qkv, m, False))
    fused = keras.ops.convert_to_numpy(layer.backend_attention(qkv, m))
    assert explicit.shape == (clips * 8, 18, 16)
    worst = max(worst, float(np.abs(explicit - fused).max()))
print(worst)
"""


@pytest.mark.parametrize("backend", ["tensorflow", "torch", "jax"])
def test_backend_attention_equals_the_explicit_one(backend):
    pytest.importorskip(backend, reason=f"the {backend} backend is not installed")
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", COMPARE], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-5


def test_attention_dropout_is_active_in_training_only():
    keras.utils.set_random_seed(0)
    layer = WindowAttention3D(16, (2, 3, 3), 2, attn_drop=0.5)
    windows = np.random.default_rng(0).standard_normal((8, 18, 16)).astype("float32")
    mask = shifted_window_mask(shifted_window_regions((4, 6, 6), (2, 3, 3), (1, 1, 1)))
    inference = keras.ops.convert_to_numpy(layer(windows, attention_mask=mask))
    again = keras.ops.convert_to_numpy(layer(windows, attention_mask=mask, training=False))
    trained = keras.ops.convert_to_numpy(layer(windows, attention_mask=mask, training=True))
    np.testing.assert_array_equal(inference, again)
    assert np.abs(trained - inference).max() > 1e-2


def test_openvino_trace_attends_in_chunks_of_its_own_size_with_the_same_result(monkeypatch):
    """Inside `openvino_trace` (the OpenVINO trace) q, k, v come from three heads-major
    products with the kernel's thirds, the query's scaled, and the windows are attended in
    one pass where their q, k, v fit in `TRACED_CHUNK_BYTES`, else a chunk at a time (10368
    bytes: 3 windows' 3 x 18 x 16 float32; 2 with a mask of 8 windows a clip); the result
    equals the chunked one of TensorFlow's path (with a mask too), and the block resets."""
    from videoswin_tf.layers import attention
    from videoswin_tf.layers.tracing import openvino_trace

    monkeypatch.setattr(attention, "CHUNK_BYTES", 8192)  # 2 of a mask's 8 windows at a time
    keras.utils.set_random_seed(0)
    layer = WindowAttention3D(16, (2, 3, 3), 2)
    layer.build((None, 18, 16))
    table = layer.relative_position_bias_table
    table.assign(np.random.default_rng(1).normal(0, 1.5, tuple(table.shape)).astype("float32"))
    bias = layer.qkv.bias
    bias.assign(np.random.default_rng(3).normal(0, 1.0, tuple(bias.shape)).astype("float32"))
    mask = shifted_window_mask(shifted_window_regions((4, 6, 6), (2, 3, 3), (1, 1, 1)))
    windows = np.random.default_rng(2).standard_normal((3 * 8, 18, 16)).astype("float32")
    chunk_sizes = []
    sizes = attention.windows_per_chunk

    def spy(*args):
        chunk_sizes.append(sizes(*args))
        return chunk_sizes[-1]

    monkeypatch.setattr(attention, "windows_per_chunk", spy)
    # TensorFlow's calls: 8 KiB holds 3 windows' logits; 2 divides the mask's 8
    for traced_bytes, traced_sizes in ((8 * 2**20, [None, None]), (10368, [2, 3])):
        monkeypatch.setattr(attention, "TRACED_CHUNK_BYTES", traced_bytes)
        chunk_sizes.clear()
        for with_mask in (mask, None):
            chunked = keras.ops.convert_to_numpy(layer(windows, attention_mask=with_mask))
            with openvino_trace():
                traced = keras.ops.convert_to_numpy(layer(windows, attention_mask=with_mask))
            np.testing.assert_allclose(traced, chunked, atol=1e-6, rtol=0)
        assert chunk_sizes == [2, traced_sizes[0], 3, traced_sizes[1]]


def test_windows_per_chunk_keeps_a_chunk_in_one_clip_or_whole_clips():
    """With a clip's window count a chunk is a divisor of it or whole clips; ``None`` when
    one chunk holds every window or their number is unknown."""
    from videoswin_tf.layers.attention import windows_per_chunk

    assert windows_per_chunk(24, 100, 350) == 3  # no mask: any 3
    assert windows_per_chunk(24, 100, 350, clip_windows=8) == 2  # a divisor of 8
    assert windows_per_chunk(48, 100, 1900, clip_windows=8) == 16  # 2 whole clips, not 19
    assert windows_per_chunk(24, 100, 50, clip_windows=8) == 1  # at least one
    assert windows_per_chunk(24, 100, 2400, clip_windows=8) is None  # all in one
    assert windows_per_chunk(None, 100, 350) is None  # unknown while tracing


def test_mask_factors_outside_the_openvino_trace_are_refused():
    layer = WindowAttention3D(16, (2, 3, 3), 2)
    regions = shifted_window_regions((4, 6, 6), (2, 3, 3), (1, 1, 1))
    windows = np.zeros((8, 18, 16), "float32")
    with pytest.raises(ValueError) as error:
        layer(windows, mask_factors=shifted_window_mask_factors(regions))
    # Keras puts the layer's name before the message
    assert (
        "mask_factors are for the graph traced for OpenVINO (within openvino_trace); "
        "pass attention_mask (shifted_window_mask) instead"
    ) in str(error.value)


def test_openvino_trace_is_off_outside_its_block_and_after_an_error():
    from videoswin_tf.layers.tracing import in_openvino_trace, openvino_trace

    assert not in_openvino_trace()
    with pytest.raises(RuntimeError, match="inside"), openvino_trace():
        assert in_openvino_trace()
        raise RuntimeError("inside")
    assert not in_openvino_trace()


def test_traced_shifted_block_puts_the_mask_in_query_and_key_with_the_same_result(monkeypatch):
    """Inside `openvino_trace` a shifted block attends its 18 windows (2x3x3, W padded from
    8 to 9) in one pass, the mask as 8 extra query and key columns (the corner window holds 8
    regions), and gives the windowed result for two clips."""
    from videoswin_tf.layers import attention
    from videoswin_tf.layers.block import SwinTransformerBlock3D
    from videoswin_tf.layers.tracing import openvino_trace

    keras.utils.set_random_seed(0)
    block = SwinTransformerBlock3D(16, 2, window_size=(2, 3, 3), shift_size=(1, 1, 1))
    block.build((None, 4, 9, 8, 16))
    table = block.attn.relative_position_bias_table
    table.assign(np.random.default_rng(1).normal(0, 1.5, tuple(table.shape)).astype("float32"))
    x = np.random.default_rng(2).standard_normal((2, 4, 9, 8, 16)).astype("float32")
    windowed = keras.ops.convert_to_numpy(block(x))
    shapes = []
    with_columns = attention.with_mask_columns

    def spy(x, columns):
        extended = with_columns(x, columns)
        shapes.append((tuple(columns.shape), tuple(extended.shape)))
        return extended

    monkeypatch.setattr(attention, "with_mask_columns", spy)
    with openvino_trace():
        factored = keras.ops.convert_to_numpy(block(x))
    # query, key heads-major (heads, B * nWindows, N', head_dim 8 + 8 columns)
    assert shapes == [((18, 1, 18, 8), (2, 36, 18, 8 + 8))] * 2
    np.testing.assert_allclose(factored, windowed, atol=1e-5, rtol=0)


def test_openvino_trace_of_any_number_of_windows_runs_in_openvino():
    """Traced for OpenVINO with the number of windows unknown (clips of any batch), where its
    heads-major products fail at run time (OpenVINO 2026.4), the converted layer runs and
    gives the layer's result for 8 and 24 windows, masked."""
    import openvino

    from videoswin_tf import inference

    keras.utils.set_random_seed(0)
    layer = WindowAttention3D(16, (2, 3, 3), 2)
    layer.build((None, 18, 16))
    mask = shifted_window_mask(shifted_window_regions((4, 6, 6), (2, 3, 3), (1, 1, 1)))

    def attend(windows, training=False):
        return layer(windows, attention_mask=mask, training=training)

    converted = inference.openvino_model(attend, (None, 18, 16))
    compiled = openvino.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for count in (8, 24):
        windows = np.random.default_rng(count).standard_normal((count, 18, 16)).astype("float32")
        expected = keras.ops.convert_to_numpy(attend(windows))
        np.testing.assert_allclose(compiled(windows)[0], expected, atol=1e-5, rtol=0)
