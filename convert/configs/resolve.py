"""Model configs given by the user: a named config (``configs/*.json``), a path to one of our
JSON files, or a path to an mmaction2 recognition config (``.py``), each made a `ModelSpec`.

What the checkpoint's own tensors say is `videoswin_tf.convert.mapping.inference`'s job.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from videoswin_tf.architectures import DEFAULT_PATCH, DEFAULT_WINDOW
from videoswin_tf.convert.configs.mmaction2_reader import UnreadableConfig, read_config
from videoswin_tf.convert.mapping.spec import ARCHITECTURES, ModelSpec
from videoswin_tf.named_configs import (
    CONFIG_DIR,
    ConfigFileError,
    NamedConfig,
    read_config_json,
    shipped_configs,
)

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
# Where mmaction2's package keeps its Swin recognition configs.
MMACTION2_SWIN_CONFIGS = ".mim/configs/recognition/swin"

# Defaults of mmaction2's SwinTransformer3D, for keys an mmaction2 config leaves out.
UPSTREAM_DEFAULTS = {
    "window_size": DEFAULT_WINDOW,
    "patch_size": DEFAULT_PATCH,
    "drop_path_rate": 0.1,
}
# The authors' configs (Video-Swin-Transformer, configs/_base_/models/swin/swin_tiny.py and the
# children of configs/recognition/swin/) give the architecture as explicit fields, no ``arch``;
# a field they leave out takes the default of their SwinTransformer3D
# (mmaction/models/backbones/swin_transformer.py), which differs from mmaction2 1.x's.
AUTHORS_DEFAULTS = {
    "embed_dim": 96,
    "depths": [2, 2, 6, 2],
    "num_heads": [3, 6, 12, 24],
    "window_size": (2, 7, 7),
    "patch_size": (4, 4, 4),
    "drop_path_rate": 0.2,
}


class ConfigError(ValueError):
    """A config that cannot be used; the message names it, what is wrong and what to do."""


def named_configs() -> dict[str, ModelSpec]:
    """Every config shipped in ``configs/*.json``, by name."""
    return {name: _spec_from_json(config.data, config.path) for name, config in _shipped().items()}


def describe(name: str) -> dict[str, Any]:
    """The descriptive fields of a named config: ``pretrain``, ``dataset``, ``acc1``,
    ``acc5`` (top-1/top-5 accuracy, %), ``params`` (parameters with head) and ``flops``
    (as the authors report them, e.g. ``"87.9G"``)."""
    shipped = _shipped()
    if name not in shipped:
        raise ConfigError(_unknown_name(name, shipped))
    data = shipped[name].data
    return {field: data.get(field) for field in DESCRIPTIVE_FIELDS}


def resolve_config(value: str, trust_config: bool = False) -> ModelSpec:
    """The model ``value`` names.

    Args:
        value: a named config (``swin_t_k400``), a path to one of our JSON config files, or a
            path to an mmaction2 recognition config ``.py`` (``_base_`` inheritance resolved;
            its name is the file stem and it has no release).
        trust_config: run a ``.py`` config with mmengine instead of reading it as data
            (`mmaction2_reader`, which refuses configs that need running).

    Raises:
        ConfigError: an unknown name (the message lists the known ones), a missing file or a
            file that does not describe a Video Swin recognizer.
    """
    shipped = _shipped()
    if value in shipped:
        return _spec_from_json(shipped[value].data, shipped[value].path)
    path = Path(value)
    if path.suffix in (".json", ".py"):
        if not path.is_file():
            raise ConfigError(_missing_file(path))
        if path.suffix == ".json":
            return _spec_from_json(_read_json(path), path)
        return _spec_from_mmaction(path, trust_config)
    raise ConfigError(_unknown_name(value, shipped))


def _shipped() -> dict[str, NamedConfig]:
    try:
        return shipped_configs()
    except ConfigFileError as error:
        raise ConfigError(str(error)) from error


def _missing_file(path: Path) -> str:
    """What is said about a config file ``path`` that does not exist: for a ``.py``, where
    mmaction2's configs are (its installed package's folder, found without importing it), and
    for a path under ``/.mim``, that the ``$(python ...)`` meant to give that folder gave
    nothing."""
    if path.suffix != ".py":
        return f"{path}: no such config file"
    spec = importlib.util.find_spec("mmaction")
    package = spec.submodule_search_locations if spec is not None else None
    where = (
        f"mmaction2's Swin configs are in {Path(package[0]) / MMACTION2_SWIN_CONFIGS}"
        if package
        else f"mmaction2's Swin configs ship in its package's {MMACTION2_SWIN_CONFIGS} (pip "
        "install 'videoswin-tf[convert]' installs it)"
    )
    empty = (
        "; the $(python ...) meant to print mmaction2's folder printed nothing: run it alone to "
        "see why (that python may lack mmaction2)"
        if path.parts[1:2] == (".mim",)
        else ""
    )
    return f"{path}: no such config file{empty}; {where}"


def _unknown_name(value: str, shipped: dict) -> str:
    names = ", ".join(shipped) if shipped else f"none (no .json files in {CONFIG_DIR})"
    return (
        f"unknown config {value!r}; named configs: {names}. Or pass a path to a .json config "
        f"like those in configs/, or to an mmaction2 recognition config (.py)"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return read_config_json(path)
    except ConfigFileError as error:
        raise ConfigError(str(error)) from error


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
        return _explicit_architecture(given, path)
    architecture = _architecture(data["arch"], path)
    for field, value in given.items():
        expected = architecture[field]
        if (tuple(value) if isinstance(value, list) else value) != expected:
            raise ConfigError(
                f"{path}: {field} {value!r} contradicts arch {data['arch']!r} ({field} "
                f"{list(expected) if isinstance(expected, tuple) else expected}); drop one of them"
            )
    return architecture


def _explicit_architecture(given: dict[str, Any], path: Path) -> dict[str, Any]:
    """``embed_dim``, ``depths``, ``num_heads`` given as fields, checked (lists or tuples)."""
    embed_dim, depths, num_heads = given["embed_dim"], given["depths"], given["num_heads"]
    if not (
        _positive_int(embed_dim)
        and _int_list(depths)
        and _int_list(num_heads)
        and len(depths) == len(num_heads)
    ):
        raise ConfigError(
            f"{path}: embed_dim must be a positive integer, depths and num_heads lists of "
            f"positive integers of the same length; got {embed_dim!r}, {depths!r}, "
            f"{num_heads!r}"
        )
    return {"embed_dim": embed_dim, "depths": tuple(depths), "num_heads": tuple(num_heads)}


def _int_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(_positive_int(v) for v in value)


def _spec_from_mmaction(path: Path, trust_config: bool = False) -> ModelSpec:
    """Build a `ModelSpec` from an mmaction2 recognition config (backbone and cls_head), read
    as data by `mmaction2_reader`, or run by mmengine with ``trust_config``."""
    model = (_run_config(path) if trust_config else _read_config(path)).get("model") or {}
    backbone = model.get("backbone") or {}
    if not str(backbone.get("type", "")).endswith("SwinTransformer3D"):
        raise ConfigError(
            f"{path}: model.backbone.type is {backbone.get('type')!r}; only SwinTransformer3D "
            f"configs describe a Video Swin model"
        )
    architecture, defaults = _backbone_architecture(backbone, path)
    head = model.get("cls_head")
    if head is not None and not str(head.get("type", "")).endswith("I3DHead"):
        raise ConfigError(
            f"{path}: model.cls_head.type is {head.get('type')!r}; only the I3D head "
            f"(cls_head.fc_cls) is supported"
        )
    settings = {key: backbone.get(key, default) for key, default in defaults.items()}
    return ModelSpec(
        name=path.stem,
        **architecture,
        window_size=_triple(settings["window_size"], "model.backbone.window_size", path),
        patch_size=_triple(settings["patch_size"], "model.backbone.patch_size", path),
        num_classes=None if head is None else head["num_classes"],
        drop_path_rate=float(settings["drop_path_rate"]),
    )


def _backbone_architecture(
    backbone: dict[str, Any], path: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The architecture of a ``model.backbone`` in either codebase's form, with the defaults of
    that codebase's SwinTransformer3D for the settings it leaves out: mmaction2 1.x's ``arch``
    (a name or a dict of ``embed_dims``/``depths``/``num_heads``), or the authors' explicit
    ``embed_dim``/``depths``/``num_heads``."""
    explicit = [field for field in ARCH_FIELDS if field in backbone]
    if "arch" in backbone and explicit:
        raise ConfigError(
            f"{path}: model.backbone has both arch and {', '.join(explicit)}; mmaction2 1.x "
            f"configs use arch, the authors' configs the explicit fields: keep one form"
        )
    if "arch" in backbone:
        return _architecture(backbone["arch"], path), UPSTREAM_DEFAULTS
    if explicit:
        given = {field: backbone.get(field, AUTHORS_DEFAULTS[field]) for field in ARCH_FIELDS}
        return _explicit_architecture(given, path), AUTHORS_DEFAULTS
    raise ConfigError(
        f"{path}: model.backbone names no architecture; give arch (mmaction2 1.x, e.g. "
        f"arch='tiny') or embed_dim, depths and num_heads (the authors' configs)"
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
