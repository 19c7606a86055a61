"""The checkpoint-to-Keras mapping table and its error reporting (no torch needed)."""

import numpy as np
import pytest

from videoswin_tf import TFSwinTransformer3D
from videoswin_tf.convert.mapping.rules import RULES, MappingError, assign, expected_keys, plan
from videoswin_tf.convert.mapping.spec import ModelSpec
from videoswin_tf.layers.windows import relative_position_index

SPEC = ModelSpec("mini", 8, (1, 2, 1, 1), (1, 2, 2, 4), window_size=(2, 3, 3), num_classes=5)


@pytest.fixture(scope="module")
def model():
    return TFSwinTransformer3D(**SPEC.keras_kwargs())


def torch_shape(key: str, keras_shape) -> tuple:
    """The PyTorch layout of a Keras variable's shape (inverse of the table's transforms)."""
    if keras_shape and len(keras_shape) == 5:
        d, h, w, i, o = keras_shape
        return (o, i, d, h, w)
    if key.endswith(".weight") and len(keras_shape) == 2:
        return tuple(reversed(keras_shape))
    return tuple(keras_shape)


def full_state(model):
    rng = np.random.default_rng(0)
    state = {}
    for key, (path, _) in expected_keys(model).items():
        variable = model
        for part in path.split("."):
            variable = variable[int(part)] if part.isdigit() else getattr(variable, part)
        state[key] = rng.standard_normal(torch_shape(key, variable.shape)).astype("float32")
    for i, depth in enumerate(SPEC.depths):
        for j in range(depth):
            key = f"backbone.layers.{i}.blocks.{j}.attn.relative_position_index"
            state[key] = relative_position_index(SPEC.window_size)
    return state


def test_every_variable_gets_exactly_one_key(model):
    expected = expected_keys(model)
    paths = [path for path, _ in expected.values()]
    assert len(paths) == len(set(paths)) == len(model.weights)
    # 4 patch embed + 13 per block x 5 blocks + 3 per merging x 3 + 2 final norm + 2 head
    assert len(expected) == 4 + 13 * 5 + 3 * 3 + 2 + 2


def test_assign_sets_values_in_keras_layout(model):
    state = full_state(model)
    assignments = assign(model, state)
    assert len(assignments) == len(model.weights)
    np.testing.assert_array_equal(
        np.asarray(model.patch_embed.proj.kernel),
        state["backbone.patch_embed.proj.weight"].transpose(2, 3, 4, 1, 0),
    )
    np.testing.assert_array_equal(
        np.asarray(model.stages[1].blocks[1].attn.qkv.kernel),
        state["backbone.layers.1.blocks.1.attn.qkv.weight"].T,
    )
    np.testing.assert_array_equal(
        np.asarray(model.stages[2].merging.reduction.kernel),
        state["backbone.layers.2.downsample.reduction.weight"].T,
    )
    np.testing.assert_array_equal(np.asarray(model.norm.gamma), state["backbone.norm3.weight"])
    np.testing.assert_array_equal(
        np.asarray(model.head.fc_cls.kernel), state["cls_head.fc_cls.weight"].T
    )


def test_all_problems_are_listed_and_nothing_is_assigned(model):
    state = full_state(model)
    before = [np.asarray(w).copy() for w in model.weights]
    del state["backbone.layers.1.blocks.0.mlp.fc2.bias"]
    del state["cls_head.fc_cls.bias"]
    state["backbone.layers.0.blocks.0.attn.qkv.weight"] = np.zeros((24, 9), "float32")
    state["backbone.layers.9.blocks.0.norm1.weight"] = np.zeros(8, "float32")
    state["backbone.extra_thing"] = np.zeros(3, "float32")
    state["backbone.layers.0.blocks.0.attn.relative_position_index"] = relative_position_index(
        (2, 7, 7)
    )
    with pytest.raises(MappingError) as error:
        assign(model, state)
    message = str(error.value)
    assert "(6 problems)" in message
    for expected in [
        "backbone.layers.1.blocks.0.mlp.fc2.bias: missing from the checkpoint "
        "(needed for stages.1.blocks.0.mlp.fc2.bias)",
        "cls_head.fc_cls.bias: missing from the checkpoint",
        "backbone.layers.0.blocks.0.attn.qkv.weight: wrong shape [24, 9], "
        "stages.0.blocks.0.attn.qkv.kernel needs [8, 24] in Keras layout ([9, 24] given)",
        "backbone.layers.9.blocks.0.norm1.weight [8]: left over",
        "backbone.extra_thing [3]: left over",
        "backbone.layers.0.blocks.0.attn.relative_position_index [98, 98]: not the index of "
        "the model's window (2, 3, 3) [18, 18]",
    ]:
        assert expected in message
    for old, variable in zip(before, model.weights, strict=False):
        np.testing.assert_array_equal(old, np.asarray(variable))


def test_backbone_only_model_rejects_head_keys():
    backbone = TFSwinTransformer3D(**SPEC.replace(num_classes=None).keras_kwargs())
    state = full_state(TFSwinTransformer3D(**SPEC.keras_kwargs()))
    with pytest.raises(MappingError, match=r"cls_head.fc_cls.weight \[5, 64\]: left over"):
        plan(backbone, state)
    head_free = {k: v for k, v in state.items() if not k.startswith("cls_head.")}
    assert len(plan(backbone, head_free)) == len(backbone.weights)


def test_rules_are_unique_and_cover_both_sides():
    keys = [key for key, _, _ in RULES]
    paths = [path for _, path, _ in RULES]
    assert len(keys) == len(set(keys)) and len(paths) == len(set(paths))
