"""The benchmarks' count of the matrix products of a forward pass, against mmaction2's model."""

import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from videoswin_tf.convert.configs.resolve import resolve_config
from videoswin_tf.convert.references.mmaction2 import build_reference

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from flops import backbone_flops, matrix_products


@pytest.mark.slow  # builds and runs mmaction2's Swin-T: about 4 s on a quiet machine
def test_dense_products_are_the_linear_layers_mmaction2_runs():
    """Every (rows, in, out) of mmaction2's nn.Linear calls, on a clip whose windows pad and
    whose patch mergings pad, is one of our Dense products, as many times (51 for Swin-T)."""
    spec = resolve_config("swin_t_k400").replace(num_classes=None)
    clip_shape = (1, 8, 64, 96, 3)
    model = build_reference(spec)
    ran = Counter()

    def record(layer, inputs, _):
        ran[(inputs[0].numel() // layer.in_features, layer.in_features, layer.out_features)] += 1

    for layer in model.backbone.modules():
        if isinstance(layer, torch.nn.Linear):
            layer.register_forward_hook(record)
    with torch.no_grad():
        model(torch.zeros(1, 3, 8, 64, 96))
    ours = Counter()
    for product in matrix_products(spec, clip_shape):
        if product.kind == "dense":
            ours[(product.m, product.k, product.n)] += product.count
    assert ours == ran
    assert ran.total() == 51


def test_swin_t_and_b_flops_on_a_32_frame_clip():
    named = {name: resolve_config(name) for name in ("swin_t_k400", "swin_b_k400")}
    flops = {name: backbone_flops(spec, (1, 32, 224, 224, 3)) for name, spec in named.items()}
    assert flops == {"swin_t_k400": 175_527_690_240, "swin_b_k400": 562_664_833_024}
