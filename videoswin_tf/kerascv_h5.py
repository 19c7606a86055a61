"""KerasCV's Video Swin weight files (``keras_cv.models.VideoSwinBackbone`` and a
``VideoClassifier`` over it, keras-cv 0.9), read by structure without importing keras_cv.

Keras 3 saves a model (``save_weights("*.weights.h5")``, or the ``model.weights.h5`` member of a
``save("*.keras")`` archive) as nested groups named after each layer's class in snake case, a
counter from the second repeat on (``dense``, ``dense_1``), and each layer's own variables as
``vars/0``, ``vars/1`` ... in creation order. KerasCV's files therefore hold::

    [layers/video_swin_backbone/]             the backbone (the root of a backbone's file)
      layers/video_swin_patching_and_embedding/layers/{conv3d,layer_normalization}
      layers/video_swin_basic_layer[_i]         stage i (no suffix for stage 0)
        blocks/video_swin_transformer_block[_j]   block j: layers/layer_normalization[_1]
          (norm1, norm2), attn/layers/dense[_1] (qkv, proj), attn/vars/0 (the bias table),
          layers/mlp/{fc1,fc2}
        downsample/{norm,reduction}             the patch merging (stages 0 to 2)
      layers/layer_normalization                the final norm
    layers/dense                                a classifier's ``predictions`` layer

The Keras 3 rewrite of the seed (innat/VideoSwin v2) is the code KerasCV ported, with the same
classes, so its files have this structure too: only a ``.keras`` archive's config.json tells
them apart (`archive_classes`).

Every group maps onto one layer (or variable) of this package's model (`GROUPS`, `BLOCK`,
`MERGING`), whose variables have the same shapes and order (Keras on both sides), so values are
copied as they are. KerasCV builds each attention layer's bias table for the window it uses on
the input it was built on (`get_window_size`: a window no smaller than the tokens shrinks to
them), so a model built on a clip smaller than its window has tables of other sizes per stage,
which no model of one window holds: `file_config` refuses such a file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py

from videoswin_tf import legacy_h5

NAME = "KerasCV's VideoSwinBackbone layout (keras-cv 0.9, Keras 3)"
ARCHIVE_CONFIG = "config.json"
ARCHIVE_WEIGHTS = "model.weights.h5"
KERAS_CV_PACKAGE = "keras_cv"  # config.json's ``module`` / ``registered_name`` start
BACKBONE = "layers/video_swin_backbone/"
EMBEDDING = "layers/video_swin_patching_and_embedding/layers/"
STAGE = "layers/video_swin_basic_layer"
BLOCK_GROUP = "blocks/video_swin_transformer_block"
BIAS_TABLE = "attn/vars/0"

# (model path, file group below the backbone root); a group's ``vars`` are the layer's weights.
GROUPS = (
    ("patch_embed.proj", EMBEDDING + "conv3d"),
    ("patch_embed.norm", EMBEDDING + "layer_normalization"),
    ("norm", "layers/layer_normalization"),
)
# (path below a block, file group below the block's group); the bias table is a variable.
BLOCK = (
    ("norm1", "layers/layer_normalization"),
    ("attn.qkv", "attn/layers/dense"),
    ("attn.proj", "attn/layers/dense_1"),
    ("attn.relative_position_bias_table", BIAS_TABLE),
    ("norm2", "layers/layer_normalization_1"),
    ("mlp.fc1", "layers/mlp/fc1"),
    ("mlp.fc2", "layers/mlp/fc2"),
)
MERGING = (("reduction", "downsample/reduction"), ("norm", "downsample/norm"))
HEAD = ("head.fc_cls", "layers/dense")  # below the file's root, not the backbone's


def numbered(base: str, index: int) -> str:
    """Keras 3's name for the ``index``-th layer of one class: ``base``, ``base_1``, ..."""
    return base if index == 0 else f"{base}_{index}"


def backbone_root(file: h5py.Group) -> str | None:
    """The backbone's group in ``file`` (``""`` for a backbone's own file, `BACKBONE` in a
    classifier's), or ``None`` when ``file`` holds no KerasCV Video Swin backbone."""
    for root in ("", BACKBONE):
        if f"{root}{EMBEDDING}conv3d" in file and f"{root}{STAGE}" in file:
            return root
    return None


def is_kerascv(file: h5py.Group) -> bool:
    """Whether ``file`` (an open Keras 3 weights file) is in this layout."""
    return "layer_names" not in file.attrs and backbone_root(file) is not None


def entries(file: h5py.Group) -> Iterator[tuple[str, str]]:
    """``(model path, file path)`` for every layer group and variable the file's structure
    has, stages and blocks counted as the file holds them (dotted model paths; numbers index
    ``stages`` and ``blocks``)."""
    root = backbone_root(file) or ""
    for path, group in GROUPS:
        yield path, root + group
    stage = 0
    while f"{root}{numbered(STAGE, stage)}" in file:
        stage_group = f"{root}{numbered(STAGE, stage)}/"
        block = 0
        while stage_group + numbered(BLOCK_GROUP, block) in file:
            block_group = stage_group + numbered(BLOCK_GROUP, block) + "/"
            for path, group in BLOCK:
                yield f"stages.{stage}.blocks.{block}.{path}", block_group + group
            block += 1
        if stage_group + "downsample" in file:
            for path, group in MERGING:
                yield f"stages.{stage}.merging.{path}", stage_group + group
        stage += 1
    if root and HEAD[1] in file:
        yield HEAD


def file_config(file: h5py.Group, window_hint: Sequence[int] | None = None) -> dict[str, Any]:
    """The model config ``file`` fits, read off its shapes (weights files record none): width
    and patch from the patch embedding's kernel ``(Pd, Ph, Pw, 3, C)``, depth as blocks per
    stage, heads as the bias tables' columns, the window from their rows
    (`legacy_h5.window_from_rows`, with ``window_hint``), classes from the head's kernel.

    Raises:
        legacy_h5.LayoutError: a part is missing, or the bias tables differ in rows between
            stages (KerasCV built the model on a clip smaller than its window), or no window
            gives their rows.
    """
    root = backbone_root(file) or ""
    kernel = _dataset(file, root + EMBEDDING + "conv3d/vars/0")
    tables: dict[int, list] = {}
    for path, group in entries(file):
        if path.endswith("relative_position_bias_table"):
            tables.setdefault(int(path.split(".")[1]), []).append(_dataset(file, group))
    rows = sorted({int(table.shape[0]) for blocks in tables.values() for table in blocks})
    if len(rows) > 1:
        raise legacy_h5.LayoutError(
            f"its bias tables have {', '.join(map(str, rows[:-1]))} and {rows[-1]} rows in "
            "different stages: "
            "KerasCV built the model on a clip smaller than its window, which shrank the window "
            "of some stages, and no model of one window holds those; build the KerasCV model on "
            "a clip at least as large as the window (e.g. 32x224x224) and save it again"
        )
    head = _dataset(file, HEAD[1] + "/vars/0") if head_classes(file) is not None else None
    return {
        "embed_dim": int(kernel.shape[-1]),
        "depths": [len(tables[stage]) for stage in sorted(tables)],
        "num_heads": [int(tables[stage][0].shape[1]) for stage in sorted(tables)],
        "window_size": legacy_h5.window_from_rows(rows[0] if rows else 0, window_hint),
        "patch_size": [int(size) for size in kernel.shape[:3]],
        "include_top": head is not None,
        "num_classes": None if head is None else int(head.shape[1]),
        "preset": None,
        "labels": None,
    }


def head_classes(file: h5py.Group) -> int | None:
    """Classes of a classifier file's head; ``None`` for a backbone's file."""
    head = f"{HEAD[1]}/vars/1"
    return int(file[head].shape[0]) if backbone_root(file) and head in file else None


def assignments(model, file: h5py.Group) -> tuple[list, list[str]]:
    """Pairs ``(variable, value)`` for every weight of ``model`` read from ``file``, and the
    problems found (a layer or weight the file lacks or has beyond the model, another shape);
    all pairs are checked, none is assigned."""
    pairs, problems, used = [], [], set()
    for path, group in entries(file):
        target = _resolve(model, path)
        variables = _variables(target)
        saved = _saved(file, group)
        if target is None:
            problems.append(f"{group} has no place in the model ({path})")
            continue
        if len(saved) != len(variables):
            problems.append(
                f"{group} holds {len(saved)} weights, the model's {path} {len(variables)}"
            )
            continue
        for value, variable in zip(saved, variables, strict=True):
            used.add(id(variable))
            if tuple(value.shape) != tuple(variable.shape):
                problems.append(
                    f"{value.name.lstrip('/')} {tuple(value.shape)} is not {path} "
                    f"{tuple(variable.shape)}"
                )
            else:
                pairs.append((variable, value[()]))
    problems += [
        f"the file holds nothing for {variable.path}"
        for variable in model.weights
        if id(variable) not in used
    ]
    return pairs, problems


def archive_classes(path: str | os.PathLike) -> list[str]:
    """Every ``registered_name`` and ``module`` in a ``.keras`` archive's config.json, read as
    data; empty for a file that is no such archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read(ARCHIVE_CONFIG))
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        return []
    return _class_names(config)


def archive_config(path: str | os.PathLike) -> dict[str, Any]:
    """A ``.keras`` archive's config.json, as data."""
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read(ARCHIVE_CONFIG))


def is_kerascv_archive(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a ``.keras`` archive whose config.json names keras_cv's classes."""
    return any(name.startswith(KERAS_CV_PACKAGE) for name in archive_classes(path))


@contextlib.contextmanager
def open_weights(path: str | os.PathLike) -> Iterator[h5py.File | None]:
    """The open weights of a KerasCV file: a ``*.weights.h5``, or a KerasCV ``.keras``
    archive's weights member read into memory (never its code); ``None`` for any other file."""
    path = Path(path)
    if not path.is_file():
        yield None
        return
    if h5py.is_hdf5(path):
        source: Any = path
    elif zipfile.is_zipfile(path) and is_kerascv_archive(path):
        with zipfile.ZipFile(path) as archive:
            source = io.BytesIO(archive.read(ARCHIVE_WEIGHTS))
    else:
        yield None
        return
    with h5py.File(source, "r") as file:
        yield file if is_kerascv(file) else None


def _class_names(config: Any) -> list[str]:
    if isinstance(config, list):
        return [name for item in config for name in _class_names(item)]
    if not isinstance(config, dict):
        return []
    own = [config[key] for key in ("module", "registered_name") if isinstance(config.get(key), str)]
    return own + [name for value in config.values() for name in _class_names(value)]


def _dataset(file: h5py.Group, path: str) -> h5py.Dataset:
    if path not in file:
        raise legacy_h5.LayoutError(f"it holds no {path}{legacy_h5.DAMAGED}")
    return file[path]


def _saved(file: h5py.Group, group: str) -> list[h5py.Dataset]:
    """The datasets of a layer group (``vars/0``, ``vars/1`` ...) or the one dataset named."""
    if isinstance(file.get(group), h5py.Dataset):
        return [file[group]]
    found = []
    while f"{group}/vars/{len(found)}" in file:
        found.append(file[f"{group}/vars/{len(found)}"])
    return found


def _resolve(model, path: str):
    """The layer or variable at dotted ``path`` below ``model``, or ``None``."""
    node = model
    for part in path.split("."):
        if part.isdigit():
            index = int(part)
            node = node[index] if isinstance(node, list) and index < len(node) else None
        else:
            node = getattr(node, part, None)
        if node is None:
            return None
    return node


def _variables(target) -> list:
    if target is None:
        return []
    return list(target.weights) if hasattr(target, "weights") else [target]
