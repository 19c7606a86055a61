"""Keras 3 Video Swin weight files, read by structure: the Keras 3 rewrite's (innat/VideoSwin v2:
``VideoSwin{T,S,B}`` classifiers and ``VideoSwinBackbone``) and KerasCV's port of it
(``keras_cv.models.VideoSwinBackbone`` and a ``VideoClassifier`` over it, keras-cv 0.9).

Keras 3 saves a model as nested groups named after each layer's class (snake case, a counter for
repeats: ``dense``, ``dense_1``) with a ``vars`` group holding the layer's own variables as
``0``, ``1``, ... in creation order. Both codes have the same classes, so their files,
``model.save_weights("*.weights.h5")`` or the ``model.weights.h5`` member of a
``model.save("*.keras")`` archive, hold the same groups::

    [layers/video_swin_backbone/]           the backbone (the file root for a backbone alone)
      layers/video_swin_patching_and_embedding/layers/{conv3d,layer_normalization}/vars
      layers/video_swin_basic_layer[_n]/     a stage; n counts from 1
        blocks/video_swin_transformer_block[_m]/  a block: norm1 and norm2 as
          layers/layer_normalization[_1], attn/vars/0 (bias table), attn/layers/dense[_1]
          (qkv, proj), layers/mlp/{fc1,fc2}
        downsample/{norm,reduction}           the patch merging (not in the last stage)
      layers/layer_normalization/vars       the top norm
    layers/dense/vars                       a classifier's head ``predictions`` (softmax)

`TABLE` maps each of those onto this package's model (`videoswin_tf.TFSwinTransformer3D`), whose
variables have the same layouts (Keras on both sides), so values are copied as they are.
`SOURCES` says which code wrote a file: a ``.keras`` archive by the classes its config.json
names, a ``*.weights.h5`` by the name Keras (3.9 and later) records on the patch embedding's
``vars`` group. A ``*.weights.h5`` of an older Keras records no names and holds the same weights
either way: it is read as `DEFAULT`'s (the rewrite, the code KerasCV ported) unless the user
names its code (`BY_KEY`, ``vswin-convert --source``).
`file_config` reads the model a file fits off its shapes; `assignments` pairs every variable
with its value and names every difference. A ``.keras`` archive is opened as data (its zip's
weights member through h5py, its config.json as JSON): its code is never loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import h5py

from videoswin_tf import legacy_h5
from videoswin_tf.file_kind import ARCHIVE_CONFIG
from videoswin_tf.variable_paths import resolve

ARCHIVE_WEIGHTS = "model.weights.h5"
BACKBONE = "layers/video_swin_backbone"
EMBEDDING = "layers/video_swin_patching_and_embedding"
STAGE = "layers/video_swin_basic_layer"
BLOCK = "blocks/video_swin_transformer_block"
MERGING = "downsample"
HEAD = "layers/dense"
TOP_NORM = "layers/layer_normalization"
BIAS_TABLE = "attn/vars/0"


@dataclasses.dataclass(frozen=True)
class Keras3Source:
    """One code that saves this layout, and what tells its files apart.

    Attributes:
        key: how ``vswin-convert --source`` names it.
        name: the layout, as messages name it.
        owner: the code, possessive, as notes name it (``"the rewrite's"``).
        builder: the code as the subject of a sentence (``"KerasCV"``).
        model: its model, as advice names it (``"the KerasCV model"``).
        embedding_name: the name its patch embedding layer has (recorded by Keras >= 3.9 on the
            layer's ``vars`` group, and the layer `get_layer` finds in its model).
        packages: how the ``registered_name``/``module`` of its classes start in a ``.keras``
            archive's config.json.
        activation: its classifiers' default head activation (a ``*.weights.h5`` records none).
    """

    key: str
    name: str
    owner: str
    builder: str
    model: str
    embedding_name: str
    packages: tuple[str, ...]
    activation: str | None = "softmax"


REWRITE = Keras3Source(
    "rewrite",
    "the Keras 3 rewrite's layout, innat/VideoSwin v2",
    "the rewrite's",
    "the rewrite",
    "the rewrite's model",
    "patching_and_embedding",
    ("swin.transformer.", "videoswin."),
)
KERASCV = Keras3Source(
    "kerascv",
    "KerasCV's VideoSwinBackbone layout (keras-cv 0.9, Keras 3)",
    "KerasCV's",
    "KerasCV",
    "the KerasCV model",
    "videoswin_patching_and_embedding",
    ("keras_cv",),
)
SOURCES = (REWRITE, KERASCV)
DEFAULT = REWRITE  # for a *.weights.h5 that records no layer names (Keras before 3.9)
BY_KEY = {source.key: source for source in SOURCES}


@dataclasses.dataclass(frozen=True)
class Part:
    """One kind of group of the file and the variables it holds.

    Attributes:
        model_path: where the group's variables live on the model, dotted; ``{i}`` is a stage,
            ``{j}`` a block (numbers index lists).
        variables: ``(path below the group in the file, path below model_path)``.
    """

    model_path: str
    variables: tuple[tuple[str, str], ...]


def _dense(group: str, layer: str, bias: bool = True) -> tuple[tuple[str, str], ...]:
    names = ("kernel", "bias") if bias else ("kernel",)
    return tuple((f"{group}/vars/{index}", f"{layer}.{name}") for index, name in enumerate(names))


def _norm(group: str, layer: str) -> tuple[tuple[str, str], ...]:
    return ((f"{group}/vars/0", f"{layer}.gamma"), (f"{group}/vars/1", f"{layer}.beta"))


TABLE = {
    "embedding": Part(
        "patch_embed",
        _dense("layers/conv3d", "proj") + _norm("layers/layer_normalization", "norm"),
    ),
    "block": Part(
        "stages.{i}.blocks.{j}",
        (
            *_norm("layers/layer_normalization", "norm1"),
            (BIAS_TABLE, "attn.relative_position_bias_table"),
            *_dense("attn/layers/dense", "attn.qkv"),
            *_dense("attn/layers/dense_1", "attn.proj"),
            *_norm("layers/layer_normalization_1", "norm2"),
            *_dense("layers/mlp/fc1", "mlp.fc1"),
            *_dense("layers/mlp/fc2", "mlp.fc2"),
        ),
    ),
    "merging": Part(
        "stages.{i}.merging", _norm("norm", "norm") + _dense("reduction", "reduction", bias=False)
    ),
    "top_norm": Part("", _norm(TOP_NORM, "norm")),
    "head": Part("head", _dense(HEAD, "fc_cls")),
}


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the parts of one rewrite file are.

    Attributes:
        backbone: path of the backbone group (``""`` when the file is the backbone alone).
        stages: per stage, the block groups and the merging group (``None`` in the last).
        head: whether the file holds a classifier's head.
    """

    backbone: str
    stages: tuple[tuple[tuple[str, ...], str | None], ...]
    head: bool

    def entries(self) -> Iterator[tuple[str, str]]:
        """``(dataset path in the file, variable path on the model)`` for every weight."""
        prefix = f"{self.backbone}/" if self.backbone else ""
        yield from _part(TABLE["embedding"], prefix + EMBEDDING)
        for i, (blocks, merging) in enumerate(self.stages):
            for j, block in enumerate(blocks):
                yield from _part(TABLE["block"], block, i=i, j=j)
            if merging is not None:
                yield from _part(TABLE["merging"], merging, i=i)
        yield from _part(TABLE["top_norm"], self.backbone)
        if self.head:
            yield from _part(TABLE["head"], "")


def _part(part: Part, group: str, **index: int) -> Iterator[tuple[str, str]]:
    base = part.model_path.format(**index)
    for file_path, model_path in part.variables:
        yield (
            "/".join(p for p in (group, file_path) if p),
            ".".join(p for p in (base, model_path) if p),
        )


class Found(NamedTuple):
    """An open Keras 3 Video Swin weights file: its root group, `Layout` and `Keras3Source`."""

    file: h5py.Group
    layout: Layout
    source: Keras3Source


def detect(root: h5py.Group, archived: Keras3Source | None = None) -> Found | None:
    """``root`` (a Keras 3 weights file's root group) as `Found` when it holds a Video Swin
    backbone in this layout, else ``None``. The source is ``archived`` (the one a ``.keras``
    archive's config.json names) or the one whose patch embedding name the file records
    (`DEFAULT` when it records none); a recorded name of neither is ``None``."""
    backbone = BACKBONE if f"{BACKBONE}/{EMBEDDING}" in root else ""
    prefix = f"{backbone}/" if backbone else ""
    if f"{prefix}{EMBEDDING}" not in root or f"{prefix}{STAGE}" not in root:
        return None
    source = archived or _named_source(root.get(f"{prefix}{EMBEDDING}/vars"))
    if source is None:
        return None
    stages = []
    for stage in _numbered(root, prefix + STAGE):
        merging = f"{stage}/{MERGING}" if f"{stage}/{MERGING}" in root else None
        stages.append((tuple(_numbered(root, f"{stage}/{BLOCK}")), merging))
    head = bool(backbone) and f"{HEAD}/vars/0" in root
    return Found(root, Layout(backbone, tuple(stages), head), source)


def records_names(found: Found) -> bool:
    """Whether the file records its layers' names (Keras 3.9 and later), which tell the sources'
    ``*.weights.h5`` apart."""
    prefix = f"{found.layout.backbone}/" if found.layout.backbone else ""
    group = found.file.get(f"{prefix}{EMBEDDING}/vars")
    return group is not None and "name" in group.attrs


def _named_source(group: h5py.Group | None) -> Keras3Source | None:
    """The source whose patch embedding name ``group`` records; `DEFAULT` when none is."""
    name = group.attrs.get("name") if group is not None else None
    if name is None:
        return DEFAULT
    name = name.decode() if isinstance(name, bytes) else name
    return next((source for source in SOURCES if source.embedding_name == name), None)


def _numbered(root: h5py.Group, base: str) -> list[str]:
    """``base``, ``base_1``, ``base_2`` ... as long as ``root`` holds them (Keras 3 counts
    repeats of a class from the second)."""
    found = [base] if base in root else []
    while f"{base}_{len(found)}" in root:
        found.append(f"{base}_{len(found)}")
    return found


def file_config(root: h5py.Group, layout: Layout, window_hint: Sequence[int] | None = None):
    """The model config ``root`` fits, read off its shapes (these files record none): width
    and patch from the patch embedding's kernel ``(Pd, Ph, Pw, 3, C)``, depth as
    blocks per stage, heads as the bias tables' columns, the window from the first stage's
    table rows (`legacy_h5.window_from_rows`), classes from the head's kernel.

    Raises:
        legacy_h5.LayoutError: a part is missing or no window gives the tables' rows.
    """
    prefix = f"{layout.backbone}/" if layout.backbone else ""
    kernel = _dataset(root, f"{prefix}{EMBEDDING}/layers/conv3d/vars/0")
    tables = [_dataset(root, f"{blocks[0]}/{BIAS_TABLE}") for blocks, _ in layout.stages if blocks]
    if len(tables) != len(layout.stages):
        raise legacy_h5.LayoutError(f"a stage holds no blocks{legacy_h5.DAMAGED}")
    head = _dataset(root, f"{HEAD}/vars/0") if layout.head else None
    return {
        "embed_dim": int(kernel.shape[-1]),
        "depths": [len(blocks) for blocks, _ in layout.stages],
        "num_heads": [int(table.shape[1]) for table in tables],
        "window_size": legacy_h5.window_from_rows(int(tables[0].shape[0]), window_hint),
        "patch_size": [int(size) for size in kernel.shape[:3]],
        "include_top": head is not None,
        "num_classes": None if head is None else int(head.shape[1]),
        "preset": None,
        "labels": None,
    }


def check_one_window(found: Found) -> None:
    """Refuse a file whose stages' bias tables differ in rows: both codes size each table by the
    window they use on the clip the model was built on (a window no smaller than the tokens
    shrinks to them), so a model built on a clip smaller than its window holds tables that no
    model of one window does.

    Raises:
        legacy_h5.LayoutError: the rows differ (the message says how to save a file that fits).
    """
    rows = sorted(
        {int(_dataset(found.file, f"{block}/{BIAS_TABLE}").shape[0])
         for blocks, _ in found.layout.stages for block in blocks}
    )  # fmt: skip
    if len(rows) > 1:
        raise legacy_h5.LayoutError(
            f"its bias tables have {', '.join(map(str, rows[:-1]))} and {rows[-1]} rows in "
            f"different stages: {found.source.builder} built the model on a clip smaller than "
            "its window, which shrank the window of some stages, and no model of one window "
            f"holds those; build {found.source.model} on a clip at least as large as the window "
            "(e.g. 32x224x224) and save it again"
        )


def head_classes(root: h5py.Group, layout: Layout) -> int | None:
    """Classes of the file's head, or ``None`` for a backbone alone."""
    bias = root.get(f"{HEAD}/vars/1") if layout.head else None
    return None if bias is None else int(bias.shape[0])


def _dataset(root: h5py.Group, path: str) -> h5py.Dataset:
    if path not in root:
        raise legacy_h5.LayoutError(f"it holds no {path}{legacy_h5.DAMAGED}")
    return root[path]


def assignments(model, root: h5py.Group, layout: Layout) -> tuple[list, list[str]]:
    """Pairs ``(variable, value)`` for every weight of ``model`` from ``root``, and the problems
    found (a weight missing from the file, of another shape, or a file weight the model has no
    place for); all pairs are checked, none is assigned."""
    pairs, problems, used = [], [], set()
    for file_path, model_path in layout.entries():
        variable = resolve(model, model_path)
        if variable is None:
            if file_path in root:
                problems.append(f"{file_path} has no place in the model ({model_path})")
            continue
        used.add(id(variable))
        if file_path not in root:
            problems.append(f"the file holds no {file_path} (for {model_path})")
        elif tuple(root[file_path].shape) != tuple(variable.shape):
            problems.append(
                f"{file_path} {tuple(root[file_path].shape)} is not {model_path} "
                f"{tuple(variable.shape)}"
            )
        else:
            pairs.append((variable, root[file_path][()]))
    missing = [v.path for v in model.weights if id(v) not in used]
    problems += [f"the file holds nothing for {path}" for path in missing]
    known = {file_path for file_path, _ in layout.entries()}
    extra = [name for name in _datasets(root) if name not in known]
    problems += [f"{name} has no place in the model" for name in extra]
    return pairs, problems


def _datasets(root: h5py.Group) -> list[str]:
    """Paths of every dataset below ``root``."""
    found: list[str] = []

    def visit(name: str, item: h5py.Group | h5py.Dataset) -> None:
        if isinstance(item, h5py.Dataset):
            found.append(name)

    root.visititems(visit)
    return found


def archive_source(path: str | os.PathLike) -> Keras3Source | None:
    """The source whose classes a ``.keras`` archive's config.json names (read as data), or
    ``None`` for a file that is no such archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            if ARCHIVE_WEIGHTS not in archive.namelist():
                return None
            config = json.loads(archive.read(ARCHIVE_CONFIG))
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        return None
    names = class_names(config)
    return next((s for s in SOURCES if any(name.startswith(s.packages) for name in names)), None)


def class_names(config: Any) -> list[str]:
    """Every ``registered_name`` and ``module`` in a Keras config (nested dicts and lists)."""
    if isinstance(config, list):
        return [name for item in config for name in class_names(item)]
    if not isinstance(config, dict):
        return []
    own = [config[key] for key in ("registered_name", "module") if isinstance(config.get(key), str)]
    return own + [name for value in config.values() for name in class_names(value)]


def archive_config(path: str | os.PathLike) -> dict:
    """The config.json of a ``.keras`` archive, as data."""
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read(ARCHIVE_CONFIG))


@contextlib.contextmanager
def open_weights(
    path: str | os.PathLike, source: Keras3Source | None = None
) -> Iterator[Found | None]:
    """The open weights of a Keras 3 Video Swin file (``*.weights.h5``, or a ``.keras``
    archive's weights member read into memory) as `Found`; ``None`` for any other file, or
    (with ``source``) for a file of another source."""
    path = Path(path)
    archived = None
    if not path.is_file():
        yield None
        return
    if h5py.is_hdf5(path):
        data: Any = path
    elif zipfile.is_zipfile(path) and (archived := archive_source(path)) is not None:
        with zipfile.ZipFile(path) as archive:
            data = io.BytesIO(archive.read(ARCHIVE_WEIGHTS))
    else:
        yield None
        return
    with h5py.File(data, "r") as file:
        found = None if "layer_names" in file.attrs else detect(file, archived)  # Keras 2's
        yield None if found is None or source not in (None, found.source) else found
