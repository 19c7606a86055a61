"""Pretrained weights of the named presets: downloaded once into the Keras cache through
``keras.utils.get_file``, always checked against a SHA-256 that did not come from the download
location.

Where from: `DEFAULT_BASE_URL`, or the ``VIDEOSWIN_WEIGHTS_URL`` environment variable (an
``https://`` or ``file://`` URL, or a local folder: mirrors, air-gapped sites, tests).
Which hashes: the package's ``weights_hashes.json`` (generated from a release's
``manifest.json`` by ``vswin-convert release --pin``), or, for a private release, the local
``manifest.json`` that ``VIDEOSWIN_WEIGHTS_MANIFEST`` names.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
from pathlib import Path
from typing import Any

from videoswin_tf.presets import Preset
from videoswin_tf.weights_file import NATIVE_SUFFIX

DEFAULT_BASE_URL = "https://github.com/videoswin-tf/videoswin-tf/releases/download/v0.1.0/"
URL_VARIABLE = "VIDEOSWIN_WEIGHTS_URL"
MANIFEST_VARIABLE = "VIDEOSWIN_WEIGHTS_MANIFEST"
HASHES_FILE = "weights_hashes.json"
# The package's table of published hashes (written by `vswin-convert release --pin`).
HASH_TABLE = importlib.resources.files("videoswin_tf") / HASHES_FILE
CACHE_SUBDIR = os.path.join("models", "videoswin_tf")


class WeightsDownloadError(RuntimeError):
    """Pretrained weights that could not be fetched (no network, a missing file)."""


class UnverifiedWeightsError(WeightsDownloadError):
    """No published SHA-256 for a preset's file: it is not downloaded unverified."""


class WeightsHashError(WeightsDownloadError):
    """A downloaded file whose SHA-256 is not the published one (nothing kept)."""


def base_url() -> str:
    """Where release files are fetched from, ending in ``/``."""
    value = os.environ.get(URL_VARIABLE) or DEFAULT_BASE_URL
    if value.startswith(("https://", "file://")):
        return value.rstrip("/") + "/"
    if "://" not in value and Path(value).is_dir():
        return Path(value).resolve().as_uri() + "/"
    raise WeightsDownloadError(
        f"{URL_VARIABLE}={value!r} is neither an https:// or file:// URL nor an existing "
        "folder; point it at the folder or URL that holds the release files"
    )


def hashes_from_manifest(manifest: dict[str, Any]) -> dict[str, str]:
    """``{file name: SHA-256}`` of the assets of a release manifest (``manifest.json``)."""
    return {entry["file"]: entry["sha256"] for entry in manifest["assets"]}


def published_hashes() -> dict[str, str]:
    """``{file name: SHA-256}`` from ``VIDEOSWIN_WEIGHTS_MANIFEST`` when set, else from the
    package's hash table."""
    manifest = os.environ.get(MANIFEST_VARIABLE)
    if manifest:
        path = Path(manifest)
        if "://" in manifest or not path.is_file():
            raise WeightsDownloadError(
                f"{MANIFEST_VARIABLE}={manifest!r} is not a local file; name the manifest.json "
                "of the release you trust, on this machine (never one fetched beside the weights)"
            )
        try:
            return hashes_from_manifest(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as error:
            raise WeightsDownloadError(
                f"{path} is not a release manifest ({error!r}); name the manifest.json that "
                "vswin-convert release wrote"
            ) from error
    return json.loads(HASH_TABLE.read_text(encoding="utf-8"))["sha256"]


def can_fetch(preset: Preset) -> bool:
    """Whether `fetch_preset_weights` can fetch ``preset``'s weights: a SHA-256 is published
    for its file (`published_hashes`; the package's table is empty until a release is pinned,
    and without one it raises `UnverifiedWeightsError`). A ``VIDEOSWIN_WEIGHTS_MANIFEST``
    that cannot be read counts as no hash."""
    try:
        return preset_file_name(preset) in published_hashes()
    except WeightsDownloadError:
        return False


def preset_file_name(preset: Preset) -> str:
    """The release file a preset downloads, e.g.
    ``"TFVideoSwinT_K400_IN1K_P244_W877_32x224.weights.h5"``."""
    return preset.release + NATIVE_SUFFIX


def fetch_preset_weights(preset: Preset, cache_dir: str | os.PathLike | None = None) -> Path:
    """The local path of ``preset``'s weights, downloaded on first use and verified.

    Args:
        preset: the named model.
        cache_dir: the Keras cache; default ``$KERAS_HOME`` or ``~/.keras``. Files go under
            ``models/videoswin_tf/`` there.

    Raises:
        UnverifiedWeightsError: no published SHA-256 for the file.
        WeightsHashError: the downloaded file is not the published one.
        WeightsDownloadError: the download failed (no network, not found).
    """
    import keras

    name = preset_file_name(preset)
    expected = published_hashes().get(name)
    if expected is None:
        raise UnverifiedWeightsError(
            f"no published SHA-256 for {name} (preset {preset.name!r}), so it is not "
            f"downloaded unverified; set {MANIFEST_VARIABLE} to the manifest.json of a release "
            f"you trust (with {URL_VARIABLE} pointing at its files), or convert the checkpoint "
            f"yourself with `vswin-convert --config {preset.name} --pth ...` and pass "
            "weights=<the .weights.h5 path>"
        )
    if cache_dir is None:
        cache_dir = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    folder = Path(cache_dir) / CACHE_SUBDIR
    target = folder / name
    if target.is_file():
        if sha256(target) == expected:
            return target
        target.unlink()  # an older or damaged copy: fetched again below
    origin = base_url() + name
    partial = f".{name}.partial"
    folder.mkdir(parents=True, exist_ok=True)  # get_file falls back to /tmp for a missing one
    try:
        keras.utils.get_file(
            fname=partial,
            origin=origin,
            file_hash=expected,
            hash_algorithm="sha256",
            cache_dir=str(cache_dir),
            cache_subdir=CACHE_SUBDIR,
            force_download=True,
        )
        os.replace(folder / partial, target)
    except ValueError as error:  # get_file's verdict on a file that arrived with another hash
        raise WeightsHashError(
            f"{origin} does not have the published SHA-256 {expected[:12]}...: a damaged or "
            "different file, not kept; check the mirror, or the manifest you named"
        ) from error
    except Exception as error:
        raise WeightsDownloadError(
            f"could not download {origin}: {error}; check the network, or set {URL_VARIABLE} "
            "to a mirror or a local folder holding the release files"
        ) from error
    finally:
        (folder / partial).unlink(missing_ok=True)
    return target


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
