"""The named configs shipped in ``configs/`` (installed as ``videoswin_tf.configs``), read once.

One reader for both packages: the presets (`videoswin_tf.presets`) and the converter
(`videoswin_tf.convert.configs.resolve`) take the same JSON objects from `shipped_configs`, each
validating the fields it uses. A config's ``name`` must equal its file name.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import json
import os
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(str(importlib.resources.files("videoswin_tf.configs")))


class ConfigFileError(ValueError):
    """A JSON config file that cannot be read; the message names the file and what is wrong."""


@dataclasses.dataclass(frozen=True)
class NamedConfig:
    """One shipped config file.

    Attributes:
        name: the config's name, e.g. ``"swin_t_k400"`` (also its file stem).
        path: the JSON file.
        data: its JSON object, as written (not to be modified).
    """

    name: str
    path: Path
    data: dict[str, Any]


def read_config_json(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in the config file ``path``.

    Raises:
        ConfigFileError: the file cannot be read, is not JSON, or holds something other than
            an object.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigFileError(f"{path}: not a readable JSON config ({error})") from error
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: a config must be a JSON object, got {type(data).__name__}")
    return data


def shipped_configs() -> dict[str, NamedConfig]:
    """Every shipped config, by name, in file-name order.

    Raises:
        ConfigFileError: a file is unreadable or its ``name`` differs from its file name.
    """
    return dict(_read_shipped())


@functools.cache
def _read_shipped() -> tuple[tuple[str, NamedConfig], ...]:
    configs = []
    for path in sorted(CONFIG_DIR.glob("*.json")):
        data = read_config_json(path)
        name = data.get("name")
        if name != path.stem:
            raise ConfigFileError(f"{path}: name {name!r} must equal the file name {path.stem!r}")
        configs.append((name, NamedConfig(name, path, data)))
    return tuple(configs)
