"""The pure window functions, checked on cases small enough to work out by hand."""

import numpy as np
import pytest
from keras import ops

from videoswin_tf.layers.windows import (
    bias_gather_index,
    bias_table_size,
    effective_window,
    relative_position_index,
    shifted_window_gather,
    shifted_window_labels,
    shifted_window_mask,
    shifted_window_mask_factors,
    shifted_window_regions,
    take_tokens,
    window_partition,
    window_reverse,
)


@pytest.mark.parametrize(
    "size, window, shift, expected",
    [
        ((16, 56, 56), (8, 7, 7), (4, 3, 3), ((8, 7, 7), (4, 3, 3))),
        ((8, 56, 56), (8, 7, 7), (4, 3, 3), ((8, 7, 7), (0, 3, 3))),  # exact fit: no shift
        ((3, 5, 9), (8, 7, 7), (4, 3, 3), ((3, 5, 7), (0, 0, 3))),  # shrink on D and H
        ((1, 1, 1), (8, 7, 7), (0, 0, 0), ((1, 1, 1), (0, 0, 0))),
    ],
)
def test_effective_window(size, window, shift, expected):
    assert effective_window(size, window, shift) == expected


def test_bias_table_sizes_of_the_published_windows():
    assert bias_table_size((8, 7, 7)) == 2535
    assert bias_table_size((16, 7, 7)) == 5239


def test_relative_position_index_by_hand():
    index = relative_position_index((2, 2, 2))  # strides (9, 3, 1), offset (1, 1, 1) -> 13
    assert index.shape == (8, 8) and index.dtype == np.int64
    assert np.all(np.diag(index) == 13)
    # token 0 is (0, 0, 0), token 7 is (1, 1, 1): (0-1+1)*9 + (0-1+1)*3 + (0-1+1) = 0
    assert index[0, 7] == 0 and index[7, 0] == 26
    # token 5 is (1, 0, 1), token 2 is (0, 1, 0): (1+1)*9 + (-1+1)*3 + (1+1) = 20
    assert index[5, 2] == 20
    full = relative_position_index((8, 7, 7))
    assert full.shape == (392, 392) and full.min() == 0 and full.max() == 2534


@pytest.mark.parametrize(
    "window, num_tokens",
    [((2, 2, 2), 8), ((2, 2, 2), 5), ((8, 7, 7), 392), ((8, 7, 7), 196), ((4, 3, 5), 1)],
)
def test_bias_gather_index_is_the_sliced_relative_position_index(window, num_tokens):
    """Computed in keras.ops (for graphs torch.compile traces whole) yet equal to the NumPy
    index the reference slices, in int32."""
    index = ops.convert_to_numpy(bias_gather_index(window, num_tokens))
    assert index.dtype == np.int32
    expected = relative_position_index(window)[:num_tokens, :num_tokens].reshape(-1)
    np.testing.assert_array_equal(index, expected)


@pytest.mark.parametrize(
    "padded, window, shift",
    [
        ((1, 4, 4), (1, 2, 2), (0, 1, 1)),
        ((4, 6, 6), (2, 3, 3), (1, 1, 1)),
        ((2, 6, 3), (2, 3, 3), (1, 1, 0)),
        ((16, 56, 56), (8, 7, 7), (4, 3, 3)),
    ],
)
def test_shifted_window_labels_equal_the_numpy_regions(padded, window, shift):
    labels = ops.convert_to_numpy(shifted_window_labels(padded, window, shift))
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, shifted_window_regions(padded, window, shift))


def test_shifted_window_labels_transpose_no_int32(monkeypatch):
    """TensorFlow's oneDNN transpose of int32 logs an error line ("oneDNN supports DT_INT32
    only on platforms with AVX-512") into every run with shifted windows."""
    import keras

    transposed = []

    def transpose(x, axes=None):
        transposed.append(keras.backend.standardize_dtype(x.dtype))
        return original(x, axes)

    original = keras.ops.transpose
    monkeypatch.setattr(keras.ops, "transpose", transpose)
    labels = shifted_window_labels((4, 6, 6), (2, 3, 3), (1, 1, 1))
    assert transposed == ["float32"]
    assert keras.backend.standardize_dtype(labels.dtype) == "int32"


def test_partition_and_reverse_order_and_round_trip():
    x = np.arange(1 * 4 * 6 * 6 * 1, dtype="float32").reshape(1, 4, 6, 6, 1)
    windows = ops.convert_to_numpy(window_partition(x, (2, 3, 3)))
    assert windows.shape == (2 * 2 * 2, 18, 1)
    # window 1 is (nD=0, nH=0, nW=1); its first token is x[0, 0, 0, 3], its second x[0, 0, 0, 4]
    assert windows[1, 0, 0] == x[0, 0, 0, 3, 0] and windows[1, 1, 0] == x[0, 0, 0, 4, 0]
    # tokens run depth-major: token 9 is (d=1, h=0, w=0) of window 0
    assert windows[0, 9, 0] == x[0, 1, 0, 0, 0]
    back = ops.convert_to_numpy(window_reverse(windows, (2, 3, 3), (4, 6, 6)))
    np.testing.assert_array_equal(back, x)


def test_shift_mask_regions():
    regions = shifted_window_regions((1, 4, 4), (1, 2, 2), (0, 1, 1))
    assert regions.shape == (4, 4)  # 4 windows of 1x2x2 tokens
    # rows and cols 0-1 are region 0, 2 region 1, 3 region 2; label = 3 * row's + col's region.
    # The last window holds (row, col) = (2, 2), (2, 3), (3, 2), (3, 3).
    np.testing.assert_array_equal(regions[3], [4, 5, 7, 8])
    np.testing.assert_array_equal(regions[0], [0, 0, 0, 0])
    mask = ops.convert_to_numpy(shifted_window_mask(regions))
    assert mask.shape == (4, 4, 4)
    np.testing.assert_array_equal(mask[0], np.zeros((4, 4)))  # interior window: one region
    # last window holds rows {2, 3} x cols {2, 3}: four regions, each token alone
    np.testing.assert_array_equal(mask[3], np.where(np.eye(4), 0.0, -100.0))
    # window (0, 1): cols 2 and 3 are different regions, rows are not
    np.testing.assert_array_equal(
        mask[1] == 0, np.array([[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]], bool)
    )


@pytest.mark.parametrize(
    "padded_size, window, shift",
    [((1, 6, 6), (1, 2, 2), (0, 1, 1)), ((4, 6, 9), (2, 3, 3), (1, 1, 2))],
)
def test_shifted_window_gather_is_the_roll_and_window_partition(padded_size, window, shift):
    """The gather gives exactly the rolled feature map's `window_partition` (the windows in its
    order, which `shifted_window_regions` labels), for two clips; the scatter undoes it."""
    gather, scatter = shifted_window_gather(padded_size, window, shift)
    assert gather.dtype == scatter.dtype == np.int32
    x = np.arange(2 * np.prod(padded_size) * 3, dtype="float32").reshape(2, *padded_size, 3)
    num_tokens = int(np.prod(window))
    windows = ops.convert_to_numpy(take_tokens(x, gather, (num_tokens,)))
    rolled = np.roll(x, [-s for s in shift], axis=(1, 2, 3))
    np.testing.assert_array_equal(windows, ops.convert_to_numpy(window_partition(rolled, window)))
    regions = shifted_window_regions(padded_size, window, shift)
    assert windows.shape == (2 * regions.shape[0], num_tokens, 3)
    back = ops.convert_to_numpy(take_tokens(windows, scatter, padded_size))
    np.testing.assert_array_equal(back, x)


def test_shifted_window_mask_factors_give_the_mask_as_a_product():
    """(1, 6, 6) in 1x2x2 windows shifted (0, 1, 1): the corner window holds 4 regions, so 4
    columns; ``qm . km`` is the additive mask of every window exactly (-100 or 0)."""
    regions = shifted_window_regions((1, 6, 6), (1, 2, 2), (0, 1, 1))
    query_columns, key_columns = shifted_window_mask_factors(regions)
    assert query_columns.shape == key_columns.shape == (9, 1, 4, 4)
    assert query_columns.dtype == key_columns.dtype == np.float32
    product = query_columns[:, 0] @ key_columns[:, 0].transpose(0, 2, 1)  # (9, 4, 4)
    np.testing.assert_array_equal(product, ops.convert_to_numpy(shifted_window_mask(regions)))
    assert np.count_nonzero(product) == 4 * 8 + 12  # 8 pairs in each 2-region window, 12
