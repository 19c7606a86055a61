"""Release publishing: convert every available official checkpoint, write a manifest and the
model zoo table, and verify published assets against their manifest."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from videoswin_tf.convert.configs.resolve import describe, named_configs
from videoswin_tf.convert.converter import convert
from videoswin_tf.convert.errors import ConversionError
from videoswin_tf.convert.mapping.spec import ModelSpec, build_keras_model
from videoswin_tf.convert.outputs.weights import write_checked
from videoswin_tf.convert.parity import DEFAULT_PARITY, ParitySettings, run_parity
from videoswin_tf.weights_file import LEGACY_SUFFIX, NATIVE_SUFFIX

MANIFEST = "manifest.json"
MODEL_ZOO = "MODEL_ZOO.md"
VERSIONED = ("tensorflow", "keras", "torch", "mmaction2", "videoswin-tf")
ZOO_SECTIONS = {  # dataset in the config -> section heading of the seed's tables
    "Kinetics-400": "Kinetics 400",
    "Kinetics-600": "Kinetics 600",
    "Something-Something V2": "Something-Something V2",
}
FORMATS = f"{{{LEGACY_SUFFIX},{NATIVE_SUFFIX}}}"  # both formats of every asset, for logs
BACKBONE_NAMES = {"tiny": "Swin-T", "small": "Swin-S", "base": "Swin-B", "large": "Swin-L"}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """Versions of the packages that produced an asset."""
    return {name: importlib.metadata.version(name) for name in VERSIONED}


def release(
    sources: Path,
    assets: Path,
    parity: ParitySettings = DEFAULT_PARITY,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Convert every named config whose official source file is in ``sources``, each gated by
    ``parity``.

    Each asset is written under its release name in ``assets`` in both formats,
    ``<release>.weights.h5`` (parity-checked) and ``<release>.h5`` (the seed's name, the Keras 2
    layout, every variable checked equal), with its parity report; then
    ``manifest.json`` and ``MODEL_ZOO.md`` are written there. Missing sources are listed, not
    fatal; a failed conversion or parity stops the release before the manifest is written.

    Returns:
        the manifest.
    """
    configs = named_configs()
    present = {name: spec for name, spec in configs.items() if (sources / spec.source).is_file()}
    missing = [spec.source for name, spec in configs.items() if name not in present]
    if not present:
        raise ConversionError(
            f"no official source file in {sources}; expected any of: "
            + ", ".join(spec.source for spec in configs.values())
        )
    if missing:
        log(f"missing sources, not released: {', '.join(missing)}")
    assets.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, (name, spec) in enumerate(present.items(), start=1):
        log(f"=== [{index}/{len(present)}] {name}: {spec.source} -> {spec.release}{FORMATS}")
        source = sources / spec.source
        result = convert(
            source,
            config=name,
            out=assets / f"{spec.release}{NATIVE_SUFFIX}",
            force=True,
            parity=parity,
            log=log,
        )
        legacy = assets / f"{spec.release}{LEGACY_SUFFIX}"
        write_legacy_copy(spec, result.weights_path, legacy)
        log(f"wrote {legacy} (Keras 2 layout; every variable equal to {result.weights_path.name})")
        entries += [_entry(spec, source, result, path) for path in (legacy, result.weights_path)]
    manifest = {"assets": entries, "missing_sources": missing, "versions": versions()}
    _write_text(assets / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    _write_text(assets / MODEL_ZOO, model_zoo(manifest))
    log(f"released {len(present)} of {len(configs)} configs ({len(entries)} files) to {assets}")
    return manifest


def write_legacy_copy(spec: ModelSpec, native: Path, legacy: Path) -> None:
    """Write ``legacy`` (the seed's ``.h5`` name, Keras 2 layout) holding exactly the
    variables of the parity-checked ``native`` file; atomically."""
    model = build_keras_model(spec)
    model.load_weights(str(native))
    tmp = legacy.with_name(f".{legacy.name.removesuffix(LEGACY_SUFFIX)}.partial{LEGACY_SUFFIX}")
    try:
        write_checked(model, tmp, spec)
        os.replace(tmp, legacy)
    finally:
        tmp.unlink(missing_ok=True)


def pin_hashes(manifest: dict[str, Any], table: Path) -> None:
    """Write the package's hash table (``videoswin_tf/weights_hashes.json``): the SHA-256 of
    every asset of ``manifest``, which named presets check their downloads against."""
    from videoswin_tf.downloads import hashes_from_manifest

    data = {
        "generated_by": "vswin-convert release --pin, from the release's manifest.json",
        "sha256": hashes_from_manifest(manifest),
    }
    _write_text(table, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _entry(spec: ModelSpec, source: Path, result, weights: Path) -> dict[str, Any]:
    return {
        "file": weights.name,
        "format": "keras3" if weights.name.endswith(NATIVE_SUFFIX) else "keras2-h5",
        "bytes": weights.stat().st_size,
        "sha256": sha256(weights),
        "source": source.name,
        "source_sha256": sha256(source),
        "config": spec.name,
        "architecture": {
            "arch": spec.arch,
            "embed_dim": spec.embed_dim,
            "depths": list(spec.depths),
            "num_heads": list(spec.num_heads),
            "window_size": list(spec.window_size),
            "patch_size": list(spec.patch_size),
        },
        "classes": spec.num_classes,
        "parameters": result.parameters,
        "parity": result.report.to_json(),
    }


def model_zoo(manifest: dict[str, Any]) -> str:
    """The seed README's tables, with the config and model columns filled from the manifest and
    the names ``weights=`` takes for each model (`videoswin_tf.presets.Preset.names`: the
    config's, the seed's release name, the Keras 3 rewrite's)."""
    from videoswin_tf.presets import presets

    lines = [
        "# Model zoo",
        "",
        "Generated by `vswin-convert release` from `manifest.json`; every asset's SHA-256 is",
        "there in full (the table shows its first 12 digits). Check an asset with",
        "`vswin-convert verify --manifest manifest.json`.",
        "",
    ]
    by_config: dict[str, list] = {}
    for entry in manifest["assets"]:
        by_config.setdefault(entry["config"], []).append(entry)
    configs = named_configs()
    for dataset, heading in ZOO_SECTIONS.items():
        rows = sorted(  # the seed's order: smaller models first, then IN-1K before IN-22K
            (name for name in configs if describe(name)["dataset"] == dataset),
            key=lambda name: (describe(name)["params"], name),
        )
        lines += [
            f"## {heading}",
            "",
            "| Backbone | Pretrain | spatial crop | acc@1 | acc@5 | #params | FLOPs | config "
            "| model | `weights=` names |",
            "| :---: | :---: | :---: | :---: | :---: | :---: | :---: | :---: | :---: | :---: |",
        ]
        for name in rows:
            spec, meta, entries = configs[name], describe(name), by_config.get(name, [])
            model = (
                "<br>".join(f"`{entry['file']}` (`{entry['sha256'][:12]}`)" for entry in entries)
                or "not released"
            )
            preset = presets().get(name)
            names = "<br>".join(f"`{known}`" for known in preset.names) if preset else "none"
            lines.append(
                f"| {BACKBONE_NAMES[spec.arch]} | {meta['pretrain']} | {spec.clip_size} "
                f"| {meta['acc1']} | {meta['acc5']} | {round(meta['params'] / 1e6)}M "
                f"| {meta['flops']} | `configs/{name}.json` | {model} | {names} |"
            )
        lines.append("")
    return "\n".join(lines)


def read_manifest(path: Path) -> dict[str, Any]:
    """The ``manifest.json`` that `release` wrote at ``path``.

    Raises:
        ConversionError: the file is not JSON text, or holds no ``assets`` list.
    """
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        reason = "not UTF-8 text"
    except json.JSONDecodeError as error:
        reason = f"not JSON: {error}"
    else:
        if isinstance(manifest, dict) and isinstance(manifest.get("assets"), list):
            return manifest
        reason = "no list of assets"
    raise ConversionError(
        f"{path}: is not a release manifest ({reason}); pass the manifest.json that "
        "vswin-convert release wrote"
    )


def verify(
    manifest_path: Path,
    sources: Path | None = None,
    parity: ParitySettings = DEFAULT_PARITY,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Check every asset of a manifest: size, SHA-256, that it loads into its model, and, when
    its source file is in ``sources``, the source's SHA-256 and a fresh parity run
    (``parity``'s clip and gate).

    Returns:
        one line per failed asset (empty when all pass).
    """
    from videoswin_tf.convert.sources.checkpoint import load_checkpoint

    manifest = read_manifest(manifest_path)
    folder = manifest_path.parent
    configs = named_configs()
    failures = []
    for index, entry in enumerate(manifest["assets"], start=1):
        name, path = entry["file"], folder / entry["file"]
        log(f"[{index}/{len(manifest['assets'])}] {name}")
        problems = []
        if not path.is_file():
            failures.append(f"{name}: missing from {folder}")
            continue
        if path.stat().st_size != entry["bytes"]:
            problems.append(f"size {path.stat().st_size} bytes, manifest says {entry['bytes']}")
        if sha256(path) != entry["sha256"]:
            problems.append("SHA-256 differs from the manifest")
        spec = configs[entry["config"]]
        try:
            build_keras_model(spec).load_weights(str(path))
        except Exception as error:
            problems.append(f"does not load into {spec.name}: {error}")
        source = sources / entry["source"] if sources else None
        if source is not None and not source.is_file():
            log(f"        source {entry['source']} not in {sources}: parity not re-run")
        elif source is not None and not problems:
            if sha256(source) != entry["source_sha256"]:
                problems.append(f"source {entry['source']} SHA-256 differs from the manifest")
            else:
                report = run_parity(
                    spec,
                    load_checkpoint(source),
                    path,
                    parity.clip_shape(spec),
                    parity.seed,
                    parity.atol,
                    parity.rtol,
                )
                log(report.format())
                if not report.passed:
                    problems.append(f"parity failed: max |diff| {report.judged.max_abs:.3e}")
        if problems:
            failures.append(f"{name}: " + "; ".join(problems))
        else:
            log("        ok")
    return failures


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
