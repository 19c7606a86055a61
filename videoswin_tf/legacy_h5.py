"""The Keras 2 HDF5 layouts of this model's weights, read and written by structure.

Keras reads any ``*.h5`` name that is not ``*.weights.h5`` as the Keras 2 (legacy) layout: root
attribute ``layer_names``; one group per name with attribute ``weight_names`` (the layer's
weights, recursively, in the order Keras 2 tracks them) and one dataset per weight. Its own
loader pairs file and model weights by position, so a file is only read right in the order its
writer used. Two orders of this model's weights exist (`LAYOUTS`):

- `SEED`: what the seed's ``TFSwinTransformer3D.save_weights`` writes (innat/VideoSwin v1.0,
  tf.keras 2; its October 2023 release ``TFVideoSwin{T,S,B}_{K400,K600,SSV2}_..._32x224.h5``):
  groups ``TFPatchEmbed3D``, ``pos_drop``, ``TFBasicLayer1..4``, ``norm``, ``adt_avg_pool3d``,
  ``head``; a block saves norm1, qkv, proj, its bias table, norm2, fc1, fc2; a patch merging its
  reduction, then its norm. Weight names carry Keras 2's process-global layer counters
  (``dense_4/kernel:0``), which start elsewhere when the saving process had built other layers
  first, so they never identify a weight here. This package writes this layout (`write_seed`),
  with the names a fresh seed process gives, so the seed's own code loads its files.
- `EARLIER`: this package's ``.h5`` files up to 0.1.0: groups ``patch_embed``, ``layers_0..3``,
  ``norm``, ``cls_head``; a block saves norm1, its bias table, qkv, proj, norm2, fc1, fc2; a
  merging its norm, then its reduction. Read only.

`assignments` walks the model in a layout's order and pairs each model weight with the next
weight of its group in the file, requiring the same leaf name (``gamma``, ``kernel``,
``relative_position_bias_table``, ...) and the same shape.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import h5py
import numpy as np


class LayoutError(ValueError):
    """A file in one of the `LAYOUTS` that is damaged, or whose shapes fit no model config."""


BIAS_TABLE = "relative_position_bias_table"
DAMAGED = "; the file is damaged or incomplete: download or write it again"
# The seed's spatial window (its builders fix (8, 7, 7); its SSv2 file uses (16, 7, 7)).
SEED_SPATIAL_WINDOW = (7, 7)


@dataclasses.dataclass(frozen=True)
class Layout:
    """One Keras 2 HDF5 order of this model's weights.

    Attributes:
        name: how messages name it.
        groups: ``(group name, model path)`` in ``layer_names`` order; the path is ``None`` for
            a group without weights, ``"stages"`` for one group per stage (the group name a
            format string with ``{index}`` from 0 and ``{number}`` from 1).
        block: paths, from a block, of its weighted layers (or variables) in saved order.
        merging: the same for a stage's patch merging, saved after the stage's blocks.
    """

    name: str
    groups: tuple[tuple[str, str | None], ...]
    block: tuple[str, ...]
    merging: tuple[str, ...]

    @property
    def first_stage(self) -> str:
        """Group name of stage 0, which every file of the layout has."""
        group = next(group for group, path in self.groups if path == "stages")
        return group.format(index=0, number=1)

    @property
    def head_group(self) -> str:
        """Group name of the classification head (empty or absent in a backbone-only file)."""
        return next(group for group, path in self.groups if path == "head")


SEED = Layout(
    name="the seed's layout, innat/VideoSwin v1",
    groups=(
        ("TFPatchEmbed3D", "patch_embed"),
        ("pos_drop", None),
        ("TFBasicLayer{number}", "stages"),
        ("norm", "norm"),
        ("adt_avg_pool3d", None),
        ("head", "head"),
    ),
    block=(
        "norm1",
        "attn.qkv",
        "attn.proj",
        "attn.relative_position_bias_table",
        "norm2",
        "mlp.fc1",
        "mlp.fc2",
    ),
    merging=("reduction", "norm"),
)
EARLIER = Layout(
    name="this package's layout up to 0.1.0",
    groups=(
        ("patch_embed", "patch_embed"),
        ("layers_{index}", "stages"),
        ("norm", "norm"),
        ("cls_head", "head"),
    ),
    block=(
        "norm1",
        "attn.relative_position_bias_table",
        "attn.qkv",
        "attn.proj",
        "norm2",
        "mlp.fc1",
        "mlp.fc2",
    ),
    merging=("norm", "reduction"),
)
LAYOUTS = (SEED, EARLIER)


def detect(file: h5py.File) -> Layout | None:
    """The layout of ``file`` (its ``layer_names`` list the layout's first stage group), or
    ``None`` for another file."""
    names = attribute_list(file, "layer_names")
    return next((layout for layout in LAYOUTS if layout.first_stage in names), None)


def model_weights(model, layout: Layout) -> dict[str, list]:
    """``model``'s variables per group of ``layout`` that holds weights, each in saved order."""
    return {group: variables for group, variables, _ in _groups(model, layout) if variables}


def assignments(model, file: h5py.File, layout: Layout) -> tuple[list, list[str]]:
    """Pairs ``(variable, value)`` for every weight of ``model``, read from ``file`` in
    ``layout``, and the problems found (a group missing or with another number of weights, a
    weight of another kind or shape); all pairs are checked, none is assigned."""
    pairs, problems = [], []
    stored = attribute_list(file, "layer_names")
    for group, variables in model_weights(model, layout).items():
        if group not in stored:
            problems.append(f"the file has no group {group!r}")
            continue
        try:
            saved = _named_values(file, group)
        except LayoutError as error:
            problems.append(str(error))
            continue
        if len(saved) != len(variables):
            problems.append(
                f"group {group!r} holds {len(saved)} weights, the model's "
                f"{_owner(variables)} has {len(variables)}"
            )
            continue
        for (name, value), variable in zip(saved, variables, strict=True):
            if leaf(name) != variable.name or tuple(value.shape) != tuple(variable.shape):
                problems.append(
                    f"{group}/{name} {tuple(value.shape)} is not {_relative(variable)} "
                    f"{tuple(variable.shape)}"
                )
            else:
                pairs.append((variable, np.asarray(value)))
    return pairs, problems


def write_seed(model, file: h5py.File) -> None:
    """Write ``model``'s weights into the open, empty ``file`` in the `SEED` layout, with the
    weight names a fresh seed process gives them and the root attributes Keras writes."""
    import keras  # only with a model at hand: reading a file's layout needs no Keras

    _set_text(file, "backend", "tensorflow")
    _set_text(file, "keras_version", keras.__version__)
    groups = list(_groups(model, SEED))
    _set_text(file, "layer_names", [group for group, _, _ in groups])
    counters: Counter = Counter()
    for group, variables, stage in groups:
        if stage is None:
            prefixes = [_SEED_PREFIXES.get((group, variable.name), group) for variable in variables]
        else:
            prefixes = _seed_stage_prefixes(stage, counters)
        names = [
            f"{prefix}/{variable.name}:0"
            for prefix, variable in zip(prefixes, variables, strict=True)
        ]
        saved = file.create_group(group)
        _set_text(saved, "weight_names", names)
        for name, variable in zip(names, variables, strict=True):
            saved.create_dataset(name, data=np.asarray(variable.numpy()), track_times=False)
    file.create_group("top_level_model_weights").attrs["weight_names"] = np.array([])


def seed_config(file: h5py.File, window_hint: Sequence[int] | None = None) -> dict[str, Any]:
    """The model config a `SEED` layout file fits, read off its shapes (the seed's files record
    none): width and patch from the patch embedding's kernel ``(Pd, Ph, Pw, 3, C)``, depth as
    bias tables per stage group, heads as their columns, classes from ``head/kernel``.

    The window is known only through the bias table's rows ``(2Wd-1)(2Wh-1)(2Ww-1)``: it is
    ``window_hint`` when that gives those rows; otherwise ``Wd`` is solved with the spatial
    window of ``window_hint``, then the seed's 7x7; a `LayoutError` when neither gives them.
    """
    groups = {name: _named_values(file, name) for name in attribute_list(file, "layer_names")}
    kernel = _first(groups, "TFPatchEmbed3D", "kernel")
    depths, heads, rows = [], [], 0
    while f"TFBasicLayer{len(depths) + 1}" in groups:
        group = f"TFBasicLayer{len(depths) + 1}"
        table = _first(groups, group, BIAS_TABLE)
        depths.append(sum(leaf(name) == BIAS_TABLE for name, _ in groups[group]))
        heads.append(int(table.shape[1]))
        rows = int(table.shape[0])
    head = _first(groups, "head", "kernel") if groups.get("head") else None
    return {
        "embed_dim": int(kernel.shape[-1]),
        "depths": depths,
        "num_heads": heads,
        "window_size": window_from_rows(rows, window_hint),
        "patch_size": [int(size) for size in kernel.shape[:3]],
        "include_top": head is not None,
        "num_classes": None if head is None else int(head.shape[1]),
        "preset": None,
        "labels": None,
    }


def attribute_list(group: h5py.Group, name: str) -> list[str]:
    """A list attribute as Keras writes it: whole, or split into ``name0``, ``name1`` ... when
    it outgrows an HDF5 object header; bytes decoded."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values += list(group.attrs[f"{name}{chunk}"])
            chunk += 1
    return [value.decode("utf8") if isinstance(value, bytes) else str(value) for value in values]


def leaf(weight_name: str) -> str:
    """The variable's own name in a Keras weight name: ``dense_4/kernel:0`` -> ``kernel``."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


# Names the seed gives the weights outside its stages: (group, variable) -> layer name.
_SEED_PREFIXES = {
    ("TFPatchEmbed3D", "kernel"): "embed_proj",
    ("TFPatchEmbed3D", "bias"): "embed_proj",
    ("TFPatchEmbed3D", "gamma"): "embed_norm",
    ("TFPatchEmbed3D", "beta"): "embed_norm",
}


def _seed_stage_prefixes(stage, counters: Counter) -> list[str]:
    """The Keras 2 layer name of each weight of ``stage`` in `SEED` order, as a fresh seed
    process numbers them: one counter per layer class, counted in creation order."""

    def draw(base: str) -> str:
        count = counters[base]
        counters[base] += 1
        return base if count == 0 else f"{base}_{count}"

    prefixes = []
    for block in stage.blocks:
        norm1, qkv, proj = draw("layer_normalization"), draw("dense"), draw("dense")
        attention, norm2 = draw("tf_window_attention3d"), draw("layer_normalization")
        mlp = draw("tf_mlp")
        fc1, fc2 = f"{mlp}/{draw('dense')}", f"{mlp}/{draw('dense')}"
        prefixes += _per_variable(block, SEED.block, (norm1, qkv, proj, attention, norm2, fc1, fc2))
    if stage.merging is not None:
        merging = draw("tf_patch_merging")
        layers = (f"{merging}/{draw('dense')}", f"{merging}/{draw('layer_normalization')}")
        prefixes += _per_variable(stage.merging, SEED.merging, layers)
    return prefixes


def _per_variable(root, paths: Sequence[str], names: Sequence[str]) -> list[str]:
    """``names`` (one per path) repeated once per variable at that path."""
    return [
        name for name, path in zip(names, paths, strict=True) for _ in _variables(root, (path,))
    ]


def _variables(root, paths: Sequence[str]) -> list:
    """The variables at ``paths`` below ``root``: a layer's weights, or the variable itself."""
    import keras  # only with a model at hand: reading a file's layout needs no Keras

    found = []
    for path in paths:
        target = root
        for part in path.split("."):
            target = getattr(target, part)
        found += list(target.weights) if isinstance(target, keras.layers.Layer) else [target]
    return found


def _set_text(group: h5py.Group, name: str, text: str | list[str]) -> None:
    """A text attribute as Keras 2 writes it: variable-length ASCII; an empty list as an empty
    float array."""
    if isinstance(text, list) and not text:
        group.attrs[name] = np.array([])
    else:
        group.attrs.create(name, text, dtype=h5py.string_dtype("ascii"))


def _groups(model, layout: Layout):
    """``(group name, variables in saved order, stage or None)`` in ``layer_names`` order;
    groups without weights have none, a head the model lacks is left out."""
    for group, path in layout.groups:
        if path == "stages":
            for index, stage in enumerate(model.stages):
                variables = [
                    variable
                    for block in stage.blocks
                    for variable in _variables(block, layout.block)
                ]
                if stage.merging is not None:
                    variables += _variables(stage.merging, layout.merging)
                yield group.format(index=index, number=index + 1), variables, stage
        elif path is None:
            yield group, [], None
        elif getattr(model, path) is not None:
            yield group, _variables(model, (path,)), None


def _named_values(file: h5py.File, group: str) -> list[tuple[str, h5py.Dataset]]:
    if group not in file:
        raise LayoutError(f"it lists a group {group!r} that it does not hold{DAMAGED}")
    names = attribute_list(file[group], "weight_names")
    missing = [name for name in names if name not in file[group]]
    if missing:
        raise LayoutError(
            f"its group {group!r} lists a weight {missing[0]!r} it does not hold{DAMAGED}"
        )
    return [(name, file[group][name]) for name in names]


def _first(groups: dict, group: str, leaf_name: str) -> h5py.Dataset:
    """The first weight called ``leaf_name`` of ``group``; a `LayoutError` if there is none."""
    found = [value for name, value in groups.get(group, []) if leaf(name) == leaf_name]
    if not found:
        raise LayoutError(f"its group {group!r} holds no {leaf_name}{DAMAGED}")
    return found[0]


def window_from_rows(rows: int, hint: Sequence[int] | None) -> list[int]:
    """The window ``(Wd, Wh, Ww)`` whose bias tables have ``rows`` rows (see `seed_config`).

    Raises:
        LayoutError: no window with the hint's or the seed's spatial size gives ``rows``.
    """
    if hint is not None and rows == math.prod(2 * size - 1 for size in hint):
        return list(hint)
    spatials = ([tuple(hint[1:])] if hint is not None else []) + [SEED_SPATIAL_WINDOW]
    for height, width in spatials:
        depth, left = divmod(rows, (2 * height - 1) * (2 * width - 1))
        if not left and depth % 2 == 1:
            return [(depth + 1) // 2, height, width]
    raise LayoutError(
        f"its relative position bias tables have {rows} rows, which no window (Wd, Wh, Ww) "
        f"with (Wh, Ww) in {spatials} gives ((2Wd-1)(2Wh-1)(2Ww-1) rows); build the model "
        "with the window it was trained with and call load_weights"
    )


def _relative(variable) -> str:
    """A variable's path below the model: ``layers_0/blocks_0/attn/qkv/kernel``."""
    return variable.path.split("/", 1)[-1]


def _owner(variables: list) -> str:
    return _relative(variables[0]).split("/", 1)[0] if variables else "model"
