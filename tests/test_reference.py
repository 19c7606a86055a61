"""The upstream reference wrapper and the synthetic checkpoint values (torch, mmaction2)."""

import numpy as np
import pytest
import torch
from conftest import SMALL_SPEC

from videoswin_tf.convert.configs.resolve import named_configs
from videoswin_tf.convert.mapping.spec import ARCHITECTURES, ModelSpec
from videoswin_tf.convert.references.mmaction2 import (
    build_reference,
    load_reference_state,
    reference_forward,
)
from videoswin_tf.convert.references.synthetic import distinctive_state

PARAMETERS = [
    ("swin_t_k400", 28_158_070),
    ("swin_s_k400", 49_816_678),
    ("swin_b_k400", 88_048_984),
    ("swin_b_k400_in22k", 88_048_984),
    ("swin_b_k600_in22k", 88_253_984),
    ("swin_b_ssv2", 88_834_038),
]


@pytest.mark.parametrize("name, expected", PARAMETERS)
def test_published_configs_have_the_published_parameter_counts(name, expected):
    model = build_reference(named_configs()[name])
    assert sum(p.numel() for p in model.parameters()) == expected


def test_swin_large_parameter_count():
    model = build_reference(ModelSpec("large", **ARCHITECTURES["large"], num_classes=400))
    assert sum(p.numel() for p in model.parameters()) == 196_953_916


def test_state_dict_keys_are_mmaction2_1x():
    model = build_reference(SMALL_SPEC)
    state = model.state_dict()
    assert not model.training
    assert all(key.startswith(("backbone.", "cls_head.")) for key in state)
    assert [key for key in state if "norm3" in key] == [
        "backbone.norm3.weight",
        "backbone.norm3.bias",
    ]
    assert not any(key.startswith("backbone.norm.") for key in state)
    assert [key for key in state if key.startswith("cls_head.")] == [
        "cls_head.fc_cls.weight",
        "cls_head.fc_cls.bias",
    ]
    assert tuple(state["cls_head.fc_cls.weight"].shape) == (10, 256)
    assert state["backbone.layers.0.blocks.0.attn.relative_position_index"].dtype == torch.int64
    assert tuple(state["backbone.layers.0.blocks.0.attn.relative_position_bias_table"].shape) == (
        75,
        1,
    )


def test_backbone_only_model_has_no_head():
    model = build_reference(SMALL_SPEC.replace(num_classes=None))
    assert model.cls_head is None
    assert not any(key.startswith("cls_head.") for key in model.state_dict())
    clip = np.zeros((1, 4, 32, 32, 3), np.float32)
    out = reference_forward(model, clip)
    assert out["logits"] is None
    assert out["pooled"].shape == (1, 256)


def test_seeded_build_is_reproducible_and_leaves_the_global_rng_alone():
    rng_state = torch.get_rng_state()
    first, again, other = (build_reference(SMALL_SPEC, seed=s).state_dict() for s in (3, 3, 4))
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not torch.equal(
        first["backbone.patch_embed.proj.weight"], other["backbone.patch_embed.proj.weight"]
    )


@pytest.fixture(scope="module")
def loaded_small():
    model = build_reference(SMALL_SPEC)
    state = {key: value.numpy() for key, value in distinctive_state(SMALL_SPEC, seed=0).items()}
    load_reference_state(model, state)
    return model, state


def test_reference_forward_stage_shapes_and_meaning(loaded_small):
    model, state = loaded_small
    clip = np.random.default_rng(0).standard_normal((2, 5, 30, 30, 3)).astype(np.float32)
    out = reference_forward(model, clip)
    # 5 frames pad to 6 (patch 2), 30 pixels to 32 (patch 4): 3 x 8 x 8 tokens at stage 0
    assert [s.shape for s in out["stages"]] == [
        (2, 3, 8, 8, 32),
        (2, 3, 4, 4, 64),
        (2, 3, 2, 2, 128),
        (2, 3, 1, 1, 256),
    ]
    assert all(s.dtype == np.float32 for s in out["stages"])
    assert out["pooled"].shape == (2, 256) and out["logits"].shape == (2, 10)

    x = torch.from_numpy(clip.transpose(0, 4, 1, 2, 3).copy())
    with torch.no_grad():
        tokens = model.backbone.patch_embed(x)
        stage0 = model.backbone.layers[0](tokens, do_downsample=False)  # before its merging
        backbone = model.backbone(x)
    np.testing.assert_array_equal(out["stages"][0], stage0.numpy())
    np.testing.assert_array_equal(out["stages"][3], backbone.permute(0, 2, 3, 4, 1).numpy())
    np.testing.assert_allclose(
        out["pooled"], out["stages"][3].mean(axis=(1, 2, 3)), rtol=1e-5, atol=1e-6
    )
    logits = out["pooled"] @ state["cls_head.fc_cls.weight"].T + state["cls_head.fc_cls.bias"]
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-5)


def test_reference_forward_rejects_channels_first(loaded_small):
    with pytest.raises(
        ValueError,
        match=r"clip must be \(batch, frames, height, width, 3\), got shape \(1, 3, 4, 32, 32\)",
    ):
        reference_forward(loaded_small[0], np.zeros((1, 3, 4, 32, 32), np.float32))


def test_load_reference_state_lists_every_problem(loaded_small):
    model, state = loaded_small
    broken = dict(state)
    del broken["backbone.norm3.weight"]
    broken["backbone.norm.bias"] = broken.pop("backbone.norm3.bias")
    broken["cls_head.fc_cls.weight"] = np.zeros((11, 256), np.float32)
    with pytest.raises(ValueError) as error:
        load_reference_state(model, broken)
    assert str(error.value) == (
        "the state dict does not fit the reference model 'small' (4 problems):\n"
        "  - backbone.norm3.bias: missing from the state dict\n"
        "  - backbone.norm3.weight: missing from the state dict\n"
        "  - backbone.norm.bias [256]: left over, the reference has no place for it\n"
        "  - cls_head.fc_cls.weight: shape [11, 256], the reference needs [10, 256]"
    )


def test_distinctive_state_values_are_non_trivial():
    state = distinctive_state(SMALL_SPEC, seed=0)
    model_state = build_reference(SMALL_SPEC).state_dict()
    assert list(state) == list(model_state)
    for key, tensor in state.items():
        assert tensor.shape == model_state[key].shape, key
        if key.endswith("relative_position_index"):
            assert tensor.dtype == torch.int64 and torch.equal(tensor, model_state[key])
            continue
        assert tensor.dtype == torch.float32, key
        assert tensor.numel() == 1 or tensor.std() > 0.02, key
        assert torch.all(tensor != 0), key
        leaf = key.rpartition(".")[0].rpartition(".")[2]
        if key.endswith("relative_position_bias_table"):
            assert 1.2 < tensor.std() < 1.8, key
        elif leaf.startswith("norm") and key.endswith("weight"):
            assert tensor.min() >= 0.5 and tensor.max() <= 1.5 and tensor.std() > 0.2, key
        elif leaf.startswith("norm"):
            assert tensor.abs().max() <= 0.5 and tensor.std() > 0.2, key
    assert 0.08 < state["cls_head.fc_cls.weight"].std() < 0.12
    assert 0.1 < state["cls_head.fc_cls.bias"].abs().mean()
    # no two tensors share values (a swapped pair would go unnoticed)
    floats = [t for k, t in state.items() if not k.endswith("relative_position_index")]
    for i, a in enumerate(floats):
        assert not any(a.shape == b.shape and torch.equal(a, b) for b in floats[i + 1 :])


def test_distinctive_state_is_seeded():
    first, again, other = (distinctive_state(SMALL_SPEC, seed=s) for s in (0, 0, 1))
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not torch.equal(first["backbone.norm3.weight"], other["backbone.norm3.weight"])


def test_distinctive_weights_keep_24_blocks_finite_and_logits_of_order_one_to_ten():
    deep = SMALL_SPEC.replace(name="deep", depths=(2, 2, 18, 2))
    model = build_reference(deep)
    load_reference_state(model, {k: v.numpy() for k, v in distinctive_state(deep, seed=0).items()})
    clip = np.random.default_rng(1).standard_normal((2, 8, 64, 64, 3)).astype(np.float32)
    out = reference_forward(model, clip)
    for stage in out["stages"]:
        assert np.all(np.isfinite(stage)) and 0.5 < np.sqrt(np.mean(stage**2)) < 10
    assert 1 < np.abs(out["logits"]).max() < 20
    assert out["logits"].std() > 0.5


def test_synthetic_values_differ_between_configs_of_one_architecture():
    first = distinctive_state(SMALL_SPEC, seed=0)
    second = distinctive_state(SMALL_SPEC.replace(name="other"), seed=0)
    key = "backbone.layers.0.blocks.0.attn.qkv.weight"
    assert not torch.equal(first[key], second[key])
