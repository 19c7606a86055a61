"""Checkpoint keys to Keras variables: the mapping is the `RULES` table, read top to bottom.

Each rule pairs a checkpoint key pattern (mmaction2 1.x names, as `sources.checkpoint`
normalizes them) with the path of a Keras variable on `TFSwinTransformer3D` and the layout
change between them. ``{i}`` is a stage, ``{j}`` a block. Keras paths walk attributes, with
numbers indexing lists: ``stages.1.blocks.0.attn.qkv.kernel`` is
``model.stages[1].blocks[0].attn.qkv.kernel``.

`assign` maps a whole state dict: every Keras variable must be assigned exactly once and
every checkpoint key must be consumed or be one of the `DERIVED` buffers; otherwise it raises
`MappingError` listing every problem and assigns nothing. `extract` runs the same table
backwards (each layout change's inverse is in `INVERSES`): a model's canonical state dict.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import numpy as np

from videoswin_tf.layers.windows import relative_position_index
from videoswin_tf.variable_paths import resolve


def same(tensor: np.ndarray) -> np.ndarray:
    return tensor


def linear(tensor: np.ndarray) -> np.ndarray:
    """PyTorch Linear ``[out, in]`` to Keras Dense ``[in, out]``."""
    return tensor.T


def conv3d(tensor: np.ndarray) -> np.ndarray:
    """PyTorch Conv3d ``[O, I, D, H, W]`` to Keras Conv3D ``[D, H, W, I, O]``."""
    return tensor.transpose(2, 3, 4, 1, 0)


def conv3d_back(tensor: np.ndarray) -> np.ndarray:
    """Keras Conv3D ``[D, H, W, I, O]`` to PyTorch Conv3d ``[O, I, D, H, W]``."""
    return tensor.transpose(4, 3, 0, 1, 2)


# The inverse of each layout change of `RULES` (a transpose is its own inverse).
INVERSES: dict[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]] = {
    same: same,
    linear: linear,
    conv3d: conv3d_back,
}

PATCH_KEY = "backbone.patch_embed.proj.weight"  # the key the architecture is first read from
HEAD_KEY = "cls_head.fc_cls.weight"
BLOCK = "backbone.layers.{i}.blocks.{j}"
KERAS_BLOCK = "stages.{i}.blocks.{j}"

RULES: list[tuple[str, str, Callable[[np.ndarray], np.ndarray]]] = [
    (PATCH_KEY, "patch_embed.proj.kernel", conv3d),
    ("backbone.patch_embed.proj.bias", "patch_embed.proj.bias", same),
    ("backbone.patch_embed.norm.weight", "patch_embed.norm.gamma", same),
    ("backbone.patch_embed.norm.bias", "patch_embed.norm.beta", same),
    (f"{BLOCK}.norm1.weight", f"{KERAS_BLOCK}.norm1.gamma", same),
    (f"{BLOCK}.norm1.bias", f"{KERAS_BLOCK}.norm1.beta", same),
    (
        f"{BLOCK}.attn.relative_position_bias_table",
        f"{KERAS_BLOCK}.attn.relative_position_bias_table",
        same,
    ),
    (f"{BLOCK}.attn.qkv.weight", f"{KERAS_BLOCK}.attn.qkv.kernel", linear),
    (f"{BLOCK}.attn.qkv.bias", f"{KERAS_BLOCK}.attn.qkv.bias", same),
    (f"{BLOCK}.attn.proj.weight", f"{KERAS_BLOCK}.attn.proj.kernel", linear),
    (f"{BLOCK}.attn.proj.bias", f"{KERAS_BLOCK}.attn.proj.bias", same),
    (f"{BLOCK}.norm2.weight", f"{KERAS_BLOCK}.norm2.gamma", same),
    (f"{BLOCK}.norm2.bias", f"{KERAS_BLOCK}.norm2.beta", same),
    (f"{BLOCK}.mlp.fc1.weight", f"{KERAS_BLOCK}.mlp.fc1.kernel", linear),
    (f"{BLOCK}.mlp.fc1.bias", f"{KERAS_BLOCK}.mlp.fc1.bias", same),
    (f"{BLOCK}.mlp.fc2.weight", f"{KERAS_BLOCK}.mlp.fc2.kernel", linear),
    (f"{BLOCK}.mlp.fc2.bias", f"{KERAS_BLOCK}.mlp.fc2.bias", same),
    ("backbone.layers.{i}.downsample.norm.weight", "stages.{i}.merging.norm.gamma", same),
    ("backbone.layers.{i}.downsample.norm.bias", "stages.{i}.merging.norm.beta", same),
    (
        "backbone.layers.{i}.downsample.reduction.weight",
        "stages.{i}.merging.reduction.kernel",
        linear,
    ),
    ("backbone.norm3.weight", "norm.gamma", same),
    ("backbone.norm3.bias", "norm.beta", same),
    (HEAD_KEY, "head.fc_cls.kernel", linear),
    ("cls_head.fc_cls.bias", "head.fc_cls.bias", same),
]

# Buffers that checkpoints store but the Keras model computes. Each is checked against the
# model's own value (a mismatch means a different window size) and then set aside.
DERIVED: list[tuple[str, str]] = [
    (f"{BLOCK}.attn.relative_position_index", f"{KERAS_BLOCK}.attn"),
]


class MappingError(ValueError):
    """A state dict does not fit the model; the message lists every problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            f"the checkpoint does not fit the Keras model ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}):\n" + "\n".join(f"  - {p}" for p in problems)
        )


@dataclasses.dataclass
class Assignment:
    """One checkpoint tensor, in Keras layout, bound for one Keras variable."""

    key: str
    path: str
    variable: object
    value: np.ndarray


def expected_keys(model) -> dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    """Every checkpoint key ``model`` needs, with its Keras path and layout change.

    Expands `RULES` over the model's stages and blocks and keeps the rules whose Keras
    variable exists (a backbone-only model has no ``head``, the last stage no merging).
    """
    expected = {}
    for stage_index, stage in enumerate(model.stages):
        for block_index in range(len(stage.blocks)):
            for key, path, transform in RULES:
                names = {"i": stage_index, "j": block_index}
                full_path = path.format(**names)
                if resolve(model, full_path) is not None:
                    expected[key.format(**names)] = (full_path, transform)
    return expected


def plan(model, state: dict[str, np.ndarray]) -> list[Assignment]:
    """Match every checkpoint key to its Keras variable and check layouts, without assigning.

    Raises:
        MappingError: listing every missing, left-over or mis-shaped key and every derived
            buffer that disagrees with the model.
    """
    expected = expected_keys(model)
    problems: list[str] = []
    assignments: list[Assignment] = []
    for key in sorted(expected.keys() - state.keys(), key=_natural):
        problems.append(f"{key}: missing from the checkpoint (needed for {expected[key][0]})")
    for key in sorted(state, key=_natural):
        tensor = state[key]
        if key in expected:
            path, transform = expected[key]
            variable = resolve(model, path)
            value = transform(tensor)
            if tuple(value.shape) == tuple(variable.shape):
                assignments.append(Assignment(key, path, variable, value))
            else:
                problems.append(
                    f"{key}: wrong shape {list(tensor.shape)}, {path} needs "
                    f"{list(variable.shape)} in Keras layout ({list(value.shape)} given)"
                )
        elif (derived := _derived_rule(key)) is not None:
            problems += _check_derived(model, key, tensor, derived)
        else:
            problems.append(f"{key} {list(tensor.shape)}: left over, the model has no place for it")
    if problems:
        raise MappingError(problems)
    return assignments


def assign(model, state: dict[str, np.ndarray]) -> list[Assignment]:
    """Assign a canonical state dict to ``model``: all of it, or (on error) none of it."""
    assignments = plan(model, state)
    for item in assignments:
        item.variable.assign(item.value.astype(item.variable.dtype))
    return assignments


def extract(model) -> dict[str, np.ndarray]:
    """``model``'s weights as the canonical state dict that `assign` reads back into it.

    Every variable goes through its `RULES` row backwards (`INVERSES`); the `DERIVED` buffers
    (``relative_position_index``) are regenerated for each attention layer's window. Float
    tensors keep the variables' dtype (float32); the index buffers are int64, as PyTorch's.
    """
    state = {
        key: np.ascontiguousarray(INVERSES[transform](np.asarray(resolve(model, path).numpy())))
        for key, (path, transform) in expected_keys(model).items()
    }
    for stage_index, stage in enumerate(model.stages):
        for block_index in range(len(stage.blocks)):
            for pattern, path in DERIVED:
                names = {"i": stage_index, "j": block_index}
                attention = resolve(model, path.format(**names))
                if attention is not None:
                    index = relative_position_index(attention.window_size).astype(np.int64)
                    state[pattern.format(**names)] = index
    return state


def _derived_rule(key: str) -> str | None:
    """The Keras path of the layer that computes derived buffer ``key``, or None."""
    for pattern, path in DERIVED:
        match = _compile(pattern).match(key)
        if match:
            return path.format(**match.groupdict())
    return None


def _check_derived(model, key: str, tensor: np.ndarray, path: str) -> list[str]:
    attention = resolve(model, path)
    if attention is None:
        return [f"{key} {list(tensor.shape)}: left over, the model has no {path}"]
    expected = relative_position_index(attention.window_size)
    if not np.array_equal(tensor, expected):
        return [
            f"{key} {list(tensor.shape)}: not the index of the model's window "
            f"{attention.window_size} {list(expected.shape)}; the checkpoint uses another window "
            "size"
        ]
    return []


def _compile(pattern: str) -> re.Pattern:
    escaped = re.escape(pattern).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{j\}", r"(?P<j>\d+)")
    return re.compile(escaped + "$")


def _natural(key: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]
