"""The Keras model on its own: shapes, parameter counts, errors, precision, training, saving.

Backend-agnostic: `test_torch_backend.py` runs this file again with KERAS_BACKEND=torch.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest

from videoswin_tf import (
    TFSwinTransformer3D,
    tf_video_swin_base,
    tf_video_swin_large,
    tf_video_swin_small,
    tf_video_swin_tiny,
)
from videoswin_tf.layers import (
    DropPath,
    I3DHead,
    Mlp,
    PatchEmbed3D,
    PatchMerging,
    SwinStage,
    SwinTransformerBlock3D,
    WindowAttention3D,
)

# A small model with every feature of the real ones: 4 stages, several heads, shifted
# windows, window sizes that force padding and shrinking at these clip sizes.
SMALL = {
    "embed_dim": 16,
    "depths": (2, 2, 2, 2),
    "num_heads": (1, 2, 2, 4),
    "window_size": (4, 3, 3),
    "num_classes": 7,
    "drop_path_rate": 0.1,
}


def clip(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


@pytest.fixture(scope="module")
def small_model():
    return TFSwinTransformer3D(**SMALL)


@pytest.mark.parametrize(
    "builder, kwargs, expected",
    [
        (tf_video_swin_tiny, {"num_classes": 400}, 28_158_070),
        (tf_video_swin_small, {"num_classes": 400}, 49_816_678),
        (tf_video_swin_base, {"num_classes": 400}, 88_048_984),
        (tf_video_swin_base, {"num_classes": 600}, 88_253_984),
        (tf_video_swin_base, {"num_classes": 174, "window_size": (16, 7, 7)}, 88_834_038),
        (tf_video_swin_large, {"num_classes": 400}, 196_953_916),
    ],
    ids=["T-400", "S-400", "B-400", "B-600", "B-ssv2", "L-400"],
)
def test_trainable_parameters_equal_the_reference(builder, kwargs, expected):
    model = builder(**kwargs)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == expected
    assert not model.non_trainable_weights  # the position index is computed, not stored


def test_backbone_only_has_no_head_parameters():
    assert sum(
        int(np.prod(w.shape)) for w in tf_video_swin_tiny(include_top=False).weights
    ) == 28_158_070 - (768 * 400 + 400)


@pytest.mark.parametrize(
    "shape",
    [
        (1, 8, 48, 48, 3),  # every axis a multiple of patch and window
        (2, 8, 48, 48, 3),  # batch 2
        (1, 1, 32, 32, 3),  # one frame: D pads to 1 token, windows shrink on every axis
        (1, 5, 50, 70, 3),  # nothing divides: pad in patch embed, blocks and merging
        (1, 9, 37, 29, 3),  # odd everything, non-square
        (2, 3, 20, 100, 3),  # windows shrink on some axes and pad on others
    ],
)
def test_logits_shape_over_input_sizes(small_model, shape):
    logits = small_model(clip(shape))
    assert tuple(logits.shape) == (shape[0], 7)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(logits)))


def test_stage_features_shapes(small_model):
    features = small_model.stage_features(clip((2, 5, 50, 70, 3)))
    # patch (2, 4, 4): D = ceil(5 / 2) = 3, H = ceil(50 / 4) = 13, W = ceil(70 / 4) = 18,
    # then H and W halve with rounding up at each merging.
    assert [tuple(f.shape) for f in features] == [
        (2, 3, 13, 18, 16),
        (2, 3, 7, 9, 32),
        (2, 3, 4, 5, 64),
        (2, 3, 2, 3, 128),
    ]


def test_without_top_returns_pooled_features(small_model):
    backbone = TFSwinTransformer3D(**{**SMALL, "include_top": False})
    backbone.set_weights(small_model.get_weights()[: len(backbone.weights)])
    x = clip((2, 4, 32, 32, 3))
    pooled = backbone(x)
    assert tuple(pooled.shape) == (2, 128)
    expected = keras.ops.mean(small_model.stage_features(x)[-1], axis=(1, 2, 3))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pooled), keras.ops.convert_to_numpy(expected), atol=1e-6
    )


def test_batch_items_are_independent(small_model):
    x = clip((2, 5, 50, 70, 3))
    both = keras.ops.convert_to_numpy(small_model(x))
    second = keras.ops.convert_to_numpy(small_model(x[1:]))
    np.testing.assert_allclose(both[1:], second, atol=2e-5)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((8, 32, 32, 3), "expected a video clip of rank 5"),
        ((1, 1, 8, 32, 32, 3), "expected a video clip of rank 5"),
        ((1, 3, 8, 32, 32), "expected 3 channels last"),
        ((1, 0, 32, 32, 3), "got an empty clip of shape (1, 0, 32, 32, 3)"),
    ],
)
def test_wrong_input_raises_clear_error(small_model, shape, message):
    with pytest.raises(ValueError, match=r"\(batch, frames, height, width, 3\)") as error:
        small_model(np.zeros(shape, "float32"))
    assert message in str(error.value)


def test_head_in_channels_must_match_the_backbone():
    with pytest.raises(ValueError, match="in_channels=1024 does not match the backbone"):
        tf_video_swin_tiny(in_channels=1024)


def test_seed_snippet_runs_as_written(tmp_path):
    model = tf_video_swin_tiny(num_classes=400)
    path = str(tmp_path / "TFVideoSwinT_K400_IN1K_P244_W877_32x224.weights.h5")
    model.save_weights(path)
    model_tf = tf_video_swin_tiny(num_classes=400)
    model_tf.load_weights(path)  # before any call: every variable already exists
    y_pred = model_tf(keras.ops.ones((1, 32, 224, 224, 3)))
    assert tuple(y_pred.shape) == (1, 400)


def test_seed_norm_layer_factory_is_accepted_and_serialized():
    norm = functools.partial(keras.layers.LayerNormalization, epsilon=1e-05)
    model = TFSwinTransformer3D(**SMALL, norm_layer=norm)
    assert model.norm.epsilon == 1e-5
    assert model.get_config()["norm_layer"]["config"]["epsilon"] == 1e-5
    assert TFSwinTransformer3D.from_config(model.get_config()).norm.epsilon == 1e-5


def test_keras_file_round_trip(small_model, tmp_path):
    x = clip((1, 5, 50, 70, 3))
    path = str(tmp_path / "model.keras")
    small_model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, TFSwinTransformer3D)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(small_model(x))
    )


def test_weights_file_round_trip(small_model, tmp_path):
    x = clip((2, 3, 20, 100, 3))
    path = str(tmp_path / "small.weights.h5")
    small_model.save_weights(path)
    fresh = TFSwinTransformer3D(**SMALL)
    assert not np.allclose(
        keras.ops.convert_to_numpy(fresh(x)), keras.ops.convert_to_numpy(small_model(x))
    )
    fresh.load_weights(path)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(fresh(x)), keras.ops.convert_to_numpy(small_model(x))
    )


LAYERS = [
    (PatchEmbed3D, {"patch_size": (2, 4, 4), "embed_dim": 8, "patch_norm": False}),
    (WindowAttention3D, {"dim": 8, "window_size": (2, 3, 3), "num_heads": 2, "qk_scale": 0.5}),
    (
        SwinTransformerBlock3D,
        {"dim": 8, "num_heads": 2, "shift_size": (1, 1, 1), "window_size": (2, 3, 3)},
    ),
    (
        SwinStage,
        {"dim": 8, "depth": 2, "num_heads": 2, "drop_path": [0.0, 0.1], "downsample": True},
    ),
    (PatchMerging, {"dim": 8}),
    (Mlp, {"dim": 8, "hidden_dim": 32, "drop": 0.1}),
    (DropPath, {"rate": 0.2, "seed": 3}),
    (I3DHead, {"num_classes": 5, "in_channels": 8, "dropout_rate": 0.3}),
]


@pytest.mark.parametrize("cls, kwargs", LAYERS, ids=[cls.__name__ for cls, _ in LAYERS])
def test_every_layer_config_round_trips(cls, kwargs):
    config = cls(**kwargs).get_config()
    for name, value in kwargs.items():
        assert config[name] == (tuple(value) if isinstance(value, tuple) else value)
    assert cls.from_config(config).get_config() == config


def test_layer_norm_traced_for_openvino_computes_keras_layer_norm():
    """Inside `openvino_trace` the model's LayerNorm computes over rows
    ``(tokens, C)`` in OpenVINO's MVN pattern: Keras' values to float32 rounding, and both
    equal to NumPy's layer norm."""
    from videoswin_tf.layers.norm import LayerNormalization, build_norm, norm_config
    from videoswin_tf.layers.tracing import openvino_trace

    norm = build_norm(norm_config(), "norm")
    assert type(norm) is LayerNormalization and norm.epsilon == 1e-5
    x = clip((2, 3, 4, 5, 8)) * 3.0 + 1.0
    norm.build(x.shape)
    gamma, beta = clip((8,), seed=1), clip((8,), seed=2)
    norm.set_weights([gamma, beta])
    keras_formula = keras.ops.convert_to_numpy(norm(x))
    with openvino_trace():
        mvn_pattern = keras.ops.convert_to_numpy(norm(x))
    centred = x - x.mean(-1, keepdims=True)
    expected = centred / np.sqrt((centred**2).mean(-1, keepdims=True) + 1e-5) * gamma + beta
    np.testing.assert_allclose(mvn_pattern, keras_formula, atol=2e-6, rtol=0)
    np.testing.assert_allclose(mvn_pattern, expected, atol=2e-6, rtol=0)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_gives_float32_logits(policy):
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        model = TFSwinTransformer3D(**SMALL)
        x = clip((2, 5, 50, 70, 3))
        logits = model(x)
        features = model.stage_features(x)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    compute = policy.split("_")[1]
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert keras.backend.standardize_dtype(features[0].dtype) == compute
    assert all(keras.backend.standardize_dtype(w.dtype) == "float32" for w in model.weights)
    reference = TFSwinTransformer3D(**SMALL)
    reference.set_weights(model.get_weights())
    expected = keras.ops.convert_to_numpy(reference(x))
    got = keras.ops.convert_to_numpy(logits)
    assert np.all(np.isfinite(got))
    # Half precision: agree with float32 to a few percent of the logits' scale.
    assert np.abs(got - expected).max() < 0.1 * np.abs(expected).max()


def test_dropout_and_drop_path_act_only_in_training():
    model = TFSwinTransformer3D(**{**SMALL, "drop_path_rate": 0.5, "drop_rate": 0.2})
    x = clip((2, 4, 32, 32, 3))
    inference = [keras.ops.convert_to_numpy(model(x, training=False)) for _ in range(2)]
    np.testing.assert_array_equal(inference[0], inference[1])
    training = keras.ops.convert_to_numpy(model(x, training=True))
    assert not np.allclose(training, inference[0], atol=1e-3)


def test_drop_path_drops_whole_samples():
    layer = DropPath(0.5, seed=1)
    out = keras.ops.convert_to_numpy(layer(np.ones((64, 3, 4), "float32"), training=True))
    per_sample = out.reshape(64, -1)
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert np.all(per_sample.min(axis=1) == per_sample.max(axis=1))
    assert 0 < (per_sample[:, 0] == 0).sum() < 64


def test_fit_lowers_the_loss_on_a_tiny_batch():
    keras.utils.set_random_seed(0)
    model = TFSwinTransformer3D(**SMALL)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = clip((4, 4, 32, 32, 3))
    y = np.array([0, 1, 2, 3])
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=3, batch_size=4, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert after < before


def test_functional_model_over_unknown_sizes_runs_on_real_clips(small_model):
    inputs = keras.Input((None, None, None, 3))
    features = TFSwinTransformer3D(**{**SMALL, "include_top": False})(inputs)
    wrapped = keras.Model(inputs, keras.layers.Dense(3)(features))
    assert tuple(wrapped(clip((2, 5, 50, 70, 3))).shape) == (2, 3)
    assert tuple(wrapped(clip((1, 1, 32, 32, 3))).shape) == (1, 3)
