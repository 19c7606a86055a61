"""Model configs: the named ones shipped in ``configs/``, config files, and the checkpoint itself.

A config is given as a name (``swin_t_k400``), a path to one of our JSON files, or a path to an
mmaction2 recognition config (``.py``). Without one, `infer_spec` reads the architecture off
the checkpoint's tensor shapes; with one, `spec_disagreements` lists every way it contradicts
them.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from convert.checkpoint import CheckpointError
from convert.config_reader import UnreadableConfig, read_config
from convert.spec import ARCHITECTURES, ModelSpec
from videoswin_tf.layers.windows import bias_table_size, relative_position_index

CONFIG_DIR = Path(str(importlib.resources.files("videoswin_tf.configs")))
SPEC_FIELDS = (
    "name",
    "arch",
    "window_size",
    "patch_size",
    "drop_path_rate",
    "num_classes",
    "clip_frames",
    "clip_size",
    "release",
    "source",
)
# Optional: with ``"arch": null`` they define a custom architecture; with a named arch they must
# agree with it.
ARCH_FIELDS = ("embed_dim", "depths", "num_heads")
DESCRIPTIVE_FIELDS = ("pretrain", "dataset", "acc1", "acc5", "params", "flops")
# Read by the model package (`videoswin_tf.presets`): the label map and the test-time pipeline.
PRESET_FIELDS = ("labels", "test_pipeline")
ARCH_ALIASES = {"t": "tiny", "s": "small", "b": "base", "l": "large"}

# Defaults of mmaction2's SwinTransformer3D, for keys an mmaction2 config leaves out.
UPSTREAM_DEFAULTS = {"window_size": (8, 7, 7), "patch_size": (2, 4, 4), "drop_path_rate": 0.1}

PATCH_KEY = "backbone.patch_embed.proj.weight"
HEAD_KEY = "cls_head.fc_cls.weight"
TABLE_KEY = "backbone.layers.{i}.blocks.{j}.attn.relative_position_bias_table"
INDEX_KEY = "backbone.layers.{i}.blocks.{j}.attn.relative_position_index"
BLOCK_PATTERN = re.compile(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.")


class ConfigError(ValueError):
    """A config that cannot be used; the message names it, what is wrong and what to do."""


def named_configs() -> dict[str, ModelSpec]:
    """Every config shipped in ``configs/*.json``, by name."""
    return {name: _spec_from_json(data, path) for name, (data, path) in _shipped().items()}


def describe(name: str) -> dict[str, Any]:
    """The descriptive fields of a named config: ``pretrain``, ``dataset``, ``acc1``,
    ``acc5`` (top-1/top-5 accuracy, %), ``params`` (parameters with head) and ``flops``
    (as the authors report them, e.g. ``"87.9G"``)."""
    shipped = _shipped()
    if name not in shipped:
        raise ConfigError(_unknown_name(name, shipped))
    data = shipped[name][0]
    return {field: data.get(field) for field in DESCRIPTIVE_FIELDS}


def resolve_config(value: str, trust_config: bool = False) -> ModelSpec:
    """The model ``value`` names.

    Args:
        value: a named config (``swin_t_k400``), a path to one of our JSON config files, or a
            path to an mmaction2 recognition config ``.py`` (``_base_`` inheritance resolved;
            its name is the file stem and it has no release).
        trust_config: run a ``.py`` config with mmengine instead of reading it as data
            (`convert.config_reader`, which refuses configs that need running).

    Raises:
        ConfigError: an unknown name (the message lists the known ones), a missing file or a
            file that does not describe a Video Swin recognizer.
    """
    shipped = _shipped()
    if value in shipped:
        data, path = shipped[value]
        return _spec_from_json(data, path)
    path = Path(value)
    if path.suffix in (".json", ".py"):
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        if path.suffix == ".json":
            return _spec_from_json(_read_json(path), path)
        return _spec_from_mmaction(path, trust_config)
    raise ConfigError(_unknown_name(value, shipped))


def _shipped() -> dict[str, tuple[dict[str, Any], Path]]:
    configs: dict[str, tuple[dict[str, Any], Path]] = {}
    for path in sorted(CONFIG_DIR.glob("*.json")):
        data = _read_json(path)
        name = data.get("name")
        if name != path.stem:
            raise ConfigError(f"{path}: name {name!r} must equal the file name {path.stem!r}")
        configs[name] = (data, path)
    return configs


def _unknown_name(value: str, shipped: dict) -> str:
    names = ", ".join(shipped) if shipped else f"none (no .json files in {CONFIG_DIR})"
    return (
        f"unknown config {value!r}; named configs: {names}. Or pass a path to a .json config "
        f"like those in configs/, or to an mmaction2 recognition config (.py)"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not a readable JSON config ({error})") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a JSON object, got {type(data).__name__}")
    return data


def _spec_from_json(data: dict[str, Any], path: Path) -> ModelSpec:
    """Validate one of our JSON configs and build its `ModelSpec`."""
    known = SPEC_FIELDS + ARCH_FIELDS + DESCRIPTIVE_FIELDS + PRESET_FIELDS
    missing = [field for field in SPEC_FIELDS if field not in data]
    unknown = [field for field in data if field not in known]
    if missing or unknown:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(unknown)}"] if unknown else []
        )
        raise ConfigError(f"{path}: {'; '.join(problems)} (fields: {', '.join(known)})")
    num_classes = data["num_classes"]
    if num_classes is not None and not _positive_int(num_classes):
        raise ConfigError(
            f"{path}: num_classes must be a positive integer or null, got {num_classes!r}"
        )
    for field in ("clip_frames", "clip_size"):
        if not _positive_int(data[field]):
            raise ConfigError(f"{path}: {field} must be a positive integer, got {data[field]!r}")
    return ModelSpec(
        name=data["name"],
        **_json_architecture(data, path),
        window_size=_triple(data["window_size"], "window_size", path),
        patch_size=_triple(data["patch_size"], "patch_size", path),
        num_classes=num_classes,
        drop_path_rate=float(data["drop_path_rate"]),
        clip_frames=data["clip_frames"],
        clip_size=data["clip_size"],
        release=data["release"],
        source=data["source"],
    )


def _json_architecture(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """``embed_dim``, ``depths``, ``num_heads`` of a JSON config: from a named ``arch``
    (explicit fields must then agree with it) or, with ``"arch": null``, the explicit fields."""
    given = {field: data[field] for field in ARCH_FIELDS if field in data}
    if data["arch"] is None:
        missing = [field for field in ARCH_FIELDS if field not in given]
        if missing:
            raise ConfigError(
                f'{path}: "arch": null needs {", ".join(missing)} for a custom architecture'
            )
        embed_dim, depths, num_heads = given["embed_dim"], given["depths"], given["num_heads"]
        if not (
            _positive_int(embed_dim)
            and _int_list(depths)
            and _int_list(num_heads)
            and len(depths) == len(num_heads)
        ):
            raise ConfigError(
                f"{path}: embed_dim must be a positive integer, depths and num_heads lists of "
                f"positive integers of the same length; got {embed_dim!r}, {depths!r}, {num_heads!r}"
            )
        return {"embed_dim": embed_dim, "depths": tuple(depths), "num_heads": tuple(num_heads)}
    architecture = _architecture(data["arch"], path)
    for field, value in given.items():
        expected = architecture[field]
        if (tuple(value) if isinstance(value, list) else value) != expected:
            raise ConfigError(
                f"{path}: {field} {value!r} contradicts arch {data['arch']!r} ({field} "
                f"{list(expected) if isinstance(expected, tuple) else expected}); drop one of them"
            )
    return architecture


def _int_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_positive_int(v) for v in value)


def _spec_from_mmaction(path: Path, trust_config: bool = False) -> ModelSpec:
    """Build a `ModelSpec` from an mmaction2 recognition config (backbone and cls_head), read
    as data by `convert.config_reader`, or run by mmengine with ``trust_config``."""
    model = (_run_config(path) if trust_config else _read_config(path)).get("model") or {}
    backbone = model.get("backbone") or {}
    if not str(backbone.get("type", "")).endswith("SwinTransformer3D"):
        raise ConfigError(
            f"{path}: model.backbone.type is {backbone.get('type')!r}; only SwinTransformer3D "
            f"configs describe a Video Swin model"
        )
    if "arch" not in backbone:
        raise ConfigError(f"{path}: model.backbone has no arch")
    head = model.get("cls_head")
    if head is not None and not str(head.get("type", "")).endswith("I3DHead"):
        raise ConfigError(
            f"{path}: model.cls_head.type is {head.get('type')!r}; only the I3D head "
            f"(cls_head.fc_cls) is supported"
        )
    settings = {key: backbone.get(key, default) for key, default in UPSTREAM_DEFAULTS.items()}
    return ModelSpec(
        name=path.stem,
        **_architecture(backbone["arch"], path),
        window_size=_triple(settings["window_size"], "model.backbone.window_size", path),
        patch_size=_triple(settings["patch_size"], "model.backbone.patch_size", path),
        num_classes=None if head is None else head["num_classes"],
        drop_path_rate=float(settings["drop_path_rate"]),
    )


def _read_config(path: Path) -> dict[str, Any]:
    try:
        return read_config(path)
    except UnreadableConfig as error:
        raise ConfigError(str(error)) from error


def _run_config(path: Path) -> dict[str, Any]:
    """The config as mmengine's ``Config.fromfile`` gives it: the file is executed."""
    try:
        from mmengine.config import Config
    except ImportError as error:
        raise ConfigError(
            f"{path}: running mmaction2 configs needs mmengine ({error}); install it with: "
            f"pip install videoswin-tf[convert]"
        ) from error
    try:
        return Config.fromfile(str(path)).to_dict()
    except Exception as error:  # mmengine raises many types for a broken config
        raise ConfigError(
            f"{path}: mmengine could not read it ({type(error).__name__}: {error})"
        ) from error


def _architecture(arch: Any, path: Path) -> dict[str, Any]:
    """``embed_dim``, ``depths`` and ``num_heads`` from an arch name or an mmaction2 arch dict
    (``embed_dims``, ``depths``, ``num_heads``)."""
    if isinstance(arch, str):
        name = ARCH_ALIASES.get(arch.lower(), arch.lower())
        if name not in ARCHITECTURES:
            raise ConfigError(
                f"{path}: unknown arch {arch!r}; choose one of {', '.join(ARCHITECTURES)}"
            )
        return dict(ARCHITECTURES[name])
    if isinstance(arch, dict) and set(arch) == {"embed_dims", "depths", "num_heads"}:
        return {
            "embed_dim": int(arch["embed_dims"]),
            "depths": tuple(int(d) for d in arch["depths"]),
            "num_heads": tuple(int(h) for h in arch["num_heads"]),
        }
    raise ConfigError(
        f"{path}: arch must be one of {', '.join(ARCHITECTURES)} or a dict with embed_dims, "
        f"depths and num_heads, got {arch!r}"
    )


def _triple(value: Any, field: str, path: Path) -> tuple[int, int, int]:
    if (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(_positive_int(v) for v in value)
    ):
        return tuple(int(v) for v in value)
    raise ConfigError(f"{path}: {field} must be three positive integers, got {value!r}")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# --- The checkpoint's own account of the architecture -------------------------------------


@dataclasses.dataclass(frozen=True)
class _Observed:
    """What a canonical state dict's tensor shapes say, with the keys they come from."""

    embed_dim: int
    patch_size: tuple[int, int, int]
    patch_source: str
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    table_rows: int
    table_source: str
    index: np.ndarray | None
    index_source: str | None
    num_classes: int | None
    head_source: str | None


def _observe(state: dict[str, np.ndarray]) -> _Observed:
    if PATCH_KEY not in state:
        raise CheckpointError(
            f"cannot read the architecture: {PATCH_KEY} is missing (not a Video Swin backbone?)"
        )
    patch = state[PATCH_KEY]
    if patch.ndim != 5 or patch.shape[1] != 3 or 0 in patch.shape:
        raise CheckpointError(
            f"{PATCH_KEY} has shape {list(patch.shape)}; a Video Swin patch embedding is a "
            f"Conv3d [C, 3, Pd, Ph, Pw]"
        )
    depths = _depths(state)
    num_heads = []
    rows = None
    for i, depth in enumerate(depths):
        for j in range(depth):
            key = TABLE_KEY.format(i=i, j=j)
            if key not in state:
                raise CheckpointError(f"cannot read the architecture: {key} is missing")
            table = state[key]
            heads = table.shape[1] if table.ndim == 2 else 0
            if not (table.shape[0] and heads and (patch.shape[0] << i) % heads == 0):
                raise CheckpointError(
                    f"{key} has shape {list(table.shape)}; a relative position bias table is "
                    f"[rows, heads] with heads dividing the stage's {patch.shape[0] << i} "
                    f"channels (from {_source(PATCH_KEY, patch)})"
                )
            if rows is None:
                rows = table.shape[0]
            elif table.shape[0] != rows:
                raise CheckpointError(
                    f"{key} has {table.shape[0]} rows but {TABLE_KEY.format(i=0, j=0)} has "
                    f"{rows}: the blocks disagree on the window size"
                )
        num_heads.append(int(state[TABLE_KEY.format(i=i, j=0)].shape[1]))
    table_key = TABLE_KEY.format(i=0, j=0)
    index_key = INDEX_KEY.format(i=0, j=0)
    head = state.get(HEAD_KEY)
    if head is not None and (head.ndim != 2 or 0 in head.shape):
        raise CheckpointError(
            f"{HEAD_KEY} has shape {list(head.shape)}; the classifier is a Linear "
            f"[classes, channels]"
        )
    return _Observed(
        embed_dim=int(patch.shape[0]),
        patch_size=tuple(int(p) for p in patch.shape[2:]),
        patch_source=_source(PATCH_KEY, patch),
        depths=depths,
        num_heads=tuple(num_heads),
        table_rows=int(rows),
        table_source=_source(table_key, state[table_key]),
        index=state.get(index_key),
        index_source=_source(index_key, state[index_key]) if index_key in state else None,
        num_classes=None if head is None else int(head.shape[0]),
        head_source=None if head is None else _source(HEAD_KEY, head),
    )


def _depths(state: dict[str, np.ndarray]) -> tuple[int, ...]:
    """Blocks per stage, counted from ``backbone.layers.i.blocks.j.*`` keys."""
    blocks: dict[int, set[int]] = {}
    for key in state:
        match = BLOCK_PATTERN.match(key)
        if match:
            blocks.setdefault(int(match[1]), set()).add(int(match[2]))
    if not blocks:
        raise CheckpointError(
            "cannot read the architecture: no backbone.layers.<i>.blocks.<j>.* keys"
        )
    if sorted(blocks) != list(range(len(blocks))):
        raise CheckpointError(f"backbone.layers stages {sorted(blocks)} are not numbered 0, 1, ...")
    for stage, found in sorted(blocks.items()):
        if sorted(found) != list(range(len(found))):
            raise CheckpointError(
                f"backbone.layers.{stage} has blocks {sorted(found)}, not numbered 0, 1, ..."
            )
    return tuple(len(blocks[stage]) for stage in range(len(blocks)))


def _source(key: str, tensor: np.ndarray) -> str:
    return f"{key} {list(tensor.shape)}"


def _window_fits(window: tuple[int, ...], seen: _Observed) -> bool:
    """Whether ``window`` gives the checkpoint's table length and (if stored) index."""
    if bias_table_size(window) != seen.table_rows:
        return False
    return seen.index is None or (
        seen.index.shape == (math.prod(window),) * 2
        and np.array_equal(seen.index, relative_position_index(window))
    )


def _window_candidates(seen: _Observed) -> list[tuple[int, int, int]]:
    """Every window whose table (and stored index, if any) matches the checkpoint's."""
    odd_divisors = [d for d in range(1, seen.table_rows + 1, 2) if seen.table_rows % d == 0]
    windows = []
    for a in odd_divisors:
        for b in odd_divisors:
            c, remainder = divmod(seen.table_rows, a * b)
            if remainder == 0 and c % 2 == 1:
                window = ((a + 1) // 2, (b + 1) // 2, (c + 1) // 2)
                if seen.index is None or seen.index.shape[0] == math.prod(window):
                    windows.append(window)
    return [window for window in windows if _window_fits(window, seen)]


def _checkpoint_window(seen: _Observed) -> tuple[int, int, int] | list[tuple[int, int, int]]:
    """The checkpoint's window, or the candidates left when it cannot be pinned down (those
    with ``Wh == Ww`` if there are any)."""
    candidates = _window_candidates(seen)
    square = [w for w in candidates if w[1] == w[2]]
    for narrowed in (candidates, square, [w for w in square if w[1] == 7]):
        if len(narrowed) == 1:
            return narrowed[0]
    return square or candidates


def _window_source(seen: _Observed) -> str:
    return seen.table_source + (f" and {seen.index_source}" if seen.index_source else "")


def infer_spec(state: dict[str, np.ndarray]) -> ModelSpec:
    """The `ModelSpec` (named ``"inferred"``) that a canonical state dict's shapes describe.

    embed_dim and patch size come from the patch embedding Conv3d, depths from counting
    blocks, heads from the bias tables' second dimension, the window from the bias table
    length ``(2Wd-1)(2Wh-1)(2Ww-1)`` and the stored ``relative_position_index`` (which pins
    it exactly; without it, ``Wh == Ww`` and then ``Wh == Ww == 7`` are assumed to settle
    ties), classes from ``cls_head.fc_cls.weight`` (None without a head).

    Raises:
        CheckpointError: a key the architecture is read from is missing or malformed, or the
            window cannot be determined (pass a config then).
    """
    seen = _observe(state)
    window = _checkpoint_window(seen)
    if isinstance(window, list):
        found = ", ".join(str(w) for w in window) or "none"
        raise CheckpointError(
            f"cannot tell the window size from {_window_source(seen)}: matching windows "
            f"{found}; pass a config (--config) that names it"
        )
    return ModelSpec(
        name="inferred",
        embed_dim=seen.embed_dim,
        depths=seen.depths,
        num_heads=seen.num_heads,
        window_size=window,
        patch_size=seen.patch_size,
        num_classes=seen.num_classes,
    )


def spec_disagreements(config: ModelSpec, state: dict[str, np.ndarray]) -> list[str]:
    """Every way ``config`` contradicts the checkpoint's tensors, one line each (empty when
    they agree). Compared: embed_dim, patch_size, depths, num_heads, window_size and
    num_classes (a backbone-only checkpoint fits any head). drop_path_rate and the clip are
    not visible in weights.

    Raises:
        CheckpointError: as `infer_spec`, except that an undetermined window is no error here.
    """
    seen = _observe(state)
    lines = []

    def compare(field: str, ours: Any, theirs: Any, source: str) -> None:
        if ours != theirs:
            lines.append(f"{field}: config {ours}, checkpoint {theirs} (from {source})")

    compare("embed_dim", config.embed_dim, seen.embed_dim, seen.patch_source)
    compare("patch_size", tuple(config.patch_size), seen.patch_size, seen.patch_source)
    compare("depths", tuple(config.depths), seen.depths, "backbone.layers.<i>.blocks.<j>.* keys")
    compare(
        "num_heads",
        tuple(config.num_heads),
        seen.num_heads,
        "backbone.layers.<i>.blocks.0.attn.relative_position_bias_table [rows, heads]",
    )
    window = tuple(config.window_size)
    if not _window_fits(window, seen):
        theirs = _checkpoint_window(seen)
        if isinstance(theirs, tuple):
            compare("window_size", window, theirs, _window_source(seen))
        else:
            tokens = math.prod(window)
            index = f" and a {tokens}x{tokens} index" if seen.index is not None else ""
            lines.append(
                f"window_size: config {window} needs a bias table of {bias_table_size(window)} rows"
                f"{index}, checkpoint has {_window_source(seen)}"
            )
    if seen.num_classes is not None and config.num_classes != seen.num_classes:
        ours = "None (backbone only)" if config.num_classes is None else config.num_classes
        compare("num_classes", ours, seen.num_classes, seen.head_source)
    return lines
