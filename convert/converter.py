"""The conversion pipeline: load, build, map, write, parity — each phase timed."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path
from typing import Callable, Iterator

from convert.checkpoint import LoadedCheckpoint, load_checkpoint
from convert.configs import infer_spec, resolve_config, spec_disagreements
from convert.inflation import DEFAULT_PATCH, DEFAULT_WINDOW, InflationError, inflate
from convert.output import atomic_write, check_destination
from convert.parity import DEFAULT_ATOL, DEFAULT_RTOL, ParityReport
from convert.preprocessing import write_preprocessing
from convert.spec import ModelSpec

WEIGHTS_SUFFIX = ".weights.h5"  # Keras 3's format; any other .h5 name: the Keras 2 layout
LEGACY_SUFFIX = ".h5"
REPORT_SUFFIX = ".parity.json"
SQUARABLE = 1.8e19  # the largest float32 magnitude whose square is still finite (about 1.84e19)


class ConversionError(Exception):
    """A conversion that cannot go on; the message says what is wrong and what to do."""


class ParityFailure(ConversionError):
    """The Keras model does not compute what the reference computes, within tolerance."""


@dataclasses.dataclass
class ConversionResult:
    """What a conversion produced.

    Attributes:
        spec: the model that was converted (``num_classes`` None for a backbone-only file).
        checkpoint: the loaded source checkpoint.
        weights_path: the written Keras weights file.
        report: the parity report, or None with parity off.
        report_path: where the report was saved, or None.
        parameters: number of values written (all trainable).
        timings: ``(phase, seconds)`` in the order the phases ran.
    """

    spec: ModelSpec
    checkpoint: LoadedCheckpoint
    weights_path: Path | None
    report: ParityReport | None
    report_path: Path | None
    parameters: int
    timings: list[tuple[str, float]]


def default_output(spec: ModelSpec, pth: Path, out_dir: Path = Path("checkpoints")) -> Path:
    """``<out_dir>/<release name>.weights.h5``, or the source file's stem when the config has
    no release name; backbone-only files end in ``_backbone``."""
    stem = spec.release or pth.name.removesuffix(".pth")
    if spec.num_classes is None:
        stem += "_backbone"
    return out_dir / (stem + WEIGHTS_SUFFIX)


def report_path_for(weights_path: Path) -> Path:
    stem = weights_path.name.removesuffix(WEIGHTS_SUFFIX).removesuffix(LEGACY_SUFFIX)
    return weights_path.with_name(stem + REPORT_SUFFIX)


def write_checked(model, path: Path, spec: ModelSpec) -> None:
    """Write ``model``'s weights to ``path`` in the format its name picks, recording the
    preset and label map of a named config; then load the file into a fresh model and require
    every variable to be exactly ``model``'s (the Keras 2 layout loads by position)."""
    from videoswin_tf.presets import presets
    from videoswin_tf.weights_file import save_weights, variable_differences

    preset = presets().get(spec.name)
    save_weights(
        model,
        path,
        preset=preset.name if preset else None,
        labels=preset.labels if preset and spec.num_classes else None,
    )
    fresh = build_keras_model(spec)
    fresh.load_weights(str(path))
    differing = variable_differences(model, fresh)
    if differing:
        raise ConversionError(
            f"{path.name} does not load back exactly: {len(differing)} variables differ "
            f"(first: {differing[0]}); nothing written"
        )


def convert(
    pth: str | os.PathLike,
    config: str | None = None,
    out: str | os.PathLike | None = None,
    force: bool = False,
    parity: bool = True,
    parity_frames: int | None = None,
    parity_size: int | None = None,
    parity_batch: int = 1,
    seed: int = 0,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    log: Callable[[str], None] = print,
    trust_config: bool = False,
) -> ConversionResult:
    """Convert an mmaction2 checkpoint into a Keras weights file, then prove parity.

    Args:
        pth: the PyTorch checkpoint.
        config: a named config, a config file (ours or mmaction2's), or None to infer the
            architecture from the checkpoint's tensor shapes.
        out: the weights file to write: ``*.weights.h5`` (Keras 3's format) or any other
            ``*.h5`` (the Keras 2 layout, the seed's file names); default `default_output`.
        force: overwrite an existing output file.
        parity: run the reference and the Keras model on the same clip and gate on it.
        parity_frames, parity_size: clip frames and height/width; default the config's clip.
        parity_batch: clips in the parity batch.
        seed: seed of the parity clip.
        atol, rtol: the parity gate (see `ParityReport.passed`).
        log: where progress lines go.
        trust_config: let mmengine run a ``.py`` config instead of reading it as data.

    Raises:
        ConversionError: bad input, a config that disagrees with the checkpoint, or keys
            that do not map; `ParityFailure` when parity fails. Nothing is left at the output
            path in any of these cases (a failed parity run still saves its report).
        CheckpointError, ConfigError: an unreadable checkpoint or config.
        OutputError: ``out`` is a directory, exists without ``force``, or its folder is
            missing or not writable; raised before the checkpoint is read.
    """
    pth = Path(pth)
    timings: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def phase(name: str, detail: str = "") -> Iterator[None]:
        log(f"[{name}] {detail}".rstrip())
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        timings.append((name, seconds))
        log(f"[{name}] done in {seconds:.1f} s")

    if out is not None and not str(out).endswith(LEGACY_SUFFIX):
        raise ConversionError(
            f"--out must end in {WEIGHTS_SUFFIX} (Keras 3's format) or {LEGACY_SUFFIX} (the Keras 2 "
            f"layout of the seed's files, e.g. TFVideoSwinT_K400_IN1K_P244_W877_32x224.h5), got {out}"
        )
    if out is not None:
        out = check_destination(out, force)

    with phase("load", str(pth)):
        checkpoint = load_checkpoint(pth)
        log(f"        {checkpoint.source_layout}, {len(checkpoint.state)} tensors")
        for note in checkpoint.notes:
            log(f"        note: {note}")

    if checkpoint.source is not None and checkpoint.source.inflate:
        checkpoint = _inflated(checkpoint, config, trust_config, log)
    spec = _resolve_spec(config, checkpoint, trust_config)
    if out is None:
        out = default_output(spec, pth)
        out.parent.mkdir(parents=True, exist_ok=True)
    out_path = check_destination(out, force)

    with phase("build", _describe(spec)):
        model = build_keras_model(spec)

    from convert.mapping import MappingError, assign

    with phase(
        "map", f"{len(checkpoint.state)} checkpoint tensors to {len(model.weights)} Keras variables"
    ):
        try:
            assignments = assign(model, checkpoint.state)
        except MappingError as error:
            raise ConversionError(f"{pth}: {error}") from error
        skipped = len(checkpoint.state) - len(assignments)
        log(
            f"        assigned {len(assignments)} variables; {skipped} derived buffers checked and skipped"
        )

    with atomic_write(out_path) as tmp_path:
        with phase("write", str(out_path)):
            write_checked(model, tmp_path, spec)
            if checkpoint.source is not None and checkpoint.source.preprocessing:
                write_preprocessing(tmp_path, checkpoint.source.preprocessing)
        del model
        report = report_path = None
        if parity:
            from convert.reference import reference_for

            reference = reference_for(checkpoint).description
            with phase("parity", f"{reference} vs Keras model loaded from the file"):
                clip_shape = parity_shape(spec, parity_frames, parity_size, parity_batch)
                report = run_parity(spec, checkpoint, tmp_path, clip_shape, seed, atol, rtol)
                report_path = report_path_for(out_path)
                with atomic_write(report_path) as tmp_report:
                    report.save(tmp_report)
            log(report.format())
            if not report.passed:
                raise ParityFailure(
                    f"parity failed: logits differ by {report.judged.max_abs:.3e} "
                    f"(atol {atol:g}, relative {report.judged.relative:.2e} vs rtol {rtol:g}); "
                    f"nothing written, report in {report_path}"
                )
    log(f"wrote {out_path}" + (f" and {report_path}" if report_path else ""))
    parameters = sum(item.value.size for item in assignments)
    return ConversionResult(spec, checkpoint, out_path, report, report_path, parameters, timings)


def build_keras_model(spec: ModelSpec):
    """A fresh `TFSwinTransformer3D` for ``spec``, every variable created."""
    from videoswin_tf import TFSwinTransformer3D

    return TFSwinTransformer3D(**spec.keras_kwargs(), name=spec.name)


def parity_shape(
    spec: ModelSpec, frames: int | None = None, size: int | None = None, batch: int = 1
) -> tuple[int, int, int, int, int]:
    """The parity clip ``(B, T, S, S, 3)``; frames and size default to the config's clip."""
    size = size or spec.clip_size
    return (batch, frames or spec.clip_frames, size, size, 3)


def run_parity(
    spec: ModelSpec,
    checkpoint: LoadedCheckpoint,
    weights_path: Path,
    clip_shape: tuple[int, ...],
    seed: int = 0,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> ParityReport:
    """Run the upstream reference for ``checkpoint``'s source (`convert.reference.REFERENCES`:
    mmaction2's model, mmaction2 inflating a 2D file, torchvision's model), and a fresh Keras
    model, loaded from ``weights_path``, on one seeded clip of ``clip_shape`` and compare them."""
    from convert.parity import compare, keras_forward, parity_clip
    from convert.reference import reference_for

    clip = parity_clip(clip_shape, seed)

    start = time.perf_counter()
    reference_out = reference_for(checkpoint).forward(spec, checkpoint, clip)
    _refuse_out_of_range_outputs(reference_out, checkpoint)
    seconds_reference = time.perf_counter() - start

    start = time.perf_counter()
    model = build_keras_model(spec)
    model.load_weights(str(weights_path))
    keras_out = keras_forward(model, clip)
    seconds_keras = time.perf_counter() - start

    return compare(
        spec.name,
        keras_out,
        reference_out,
        clip_shape,
        seed,
        atol,
        rtol,
        seconds=(seconds_keras, seconds_reference),
    )


def _inflated(
    checkpoint: LoadedCheckpoint,
    config: str | None,
    trust_config: bool,
    log: Callable[[str], None],
) -> LoadedCheckpoint:
    """``checkpoint`` (2D ImageNet Swin) inflated to the config's window and patch, or to
    mmaction2's defaults without a config."""
    target = resolve_config(config, trust_config) if config is not None else None
    window = target.window_size if target else DEFAULT_WINDOW
    patch = target.patch_size if target else DEFAULT_PATCH
    try:
        state, notes = inflate(checkpoint.state, window, patch)
    except InflationError as error:
        raise ConversionError(f"cannot inflate the 2D checkpoint: {error}") from error
    for note in notes:
        log(f"        note: {note}")
    return dataclasses.replace(checkpoint, state=state, notes=checkpoint.notes + notes)


def _refuse_out_of_range_outputs(outputs: dict, checkpoint: LoadedCheckpoint) -> None:
    """Finite weights can still drive the reference to NaN, infinities, or values float32
    cannot square (a LayerNorm squares its input; torch's survives that, a float32 variance
    does not). There is nothing to compare then: the weights are unusable, not mis-converted."""
    import numpy as np

    named = [(f"stage {i}", out) for i, out in enumerate(outputs["stages"])]
    named += [("logits", outputs["logits"])] if outputs["logits"] is not None else []
    bad = [
        name
        for name, out in named
        if not (np.isfinite(out).all() and np.abs(out).max(initial=0) <= SQUARABLE)
    ]
    if bad:
        key, value = max(
            ((key, float(np.abs(v).max())) for key, v in checkpoint.state.items() if v.size),
            key=lambda item: item[1],
        )
        raise ConversionError(
            f"the upstream reference computes NaN, infinite or huge values (above "
            f"{SQUARABLE:.2g}, beyond float32 once squared) from these weights "
            f"({', '.join(bad)}) on the parity clip: the weights are out of range (largest "
            f"magnitude {value:.3g}, in {key}); nothing written"
        )


def _resolve_spec(
    config: str | None, checkpoint: LoadedCheckpoint, trust_config: bool = False
) -> ModelSpec:
    if config is None:
        return infer_spec(checkpoint.state)
    spec = resolve_config(config, trust_config)
    problems = spec_disagreements(spec, checkpoint.state)
    if problems:
        raise ConversionError(
            f"config {config!r} disagrees with the checkpoint in {len(problems)} way"
            f"{'s' if len(problems) != 1 else ''}:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\npick the config that matches the checkpoint, or leave --config out to infer it"
        )
    if checkpoint.source is not None and checkpoint.source.inflate:
        # an ImageNet backbone, not the config's trained video model: named after the .pth
        spec = spec.replace(release=None, source=None)
    return spec if checkpoint.has_head else spec.replace(num_classes=None)


def _describe(spec: ModelSpec) -> str:
    head = f"{spec.num_classes} classes" if spec.num_classes else "backbone only"
    return (
        f"{spec.name}: {spec.arch or 'custom'} (C={spec.embed_dim}, depths {list(spec.depths)}, "
        f"heads {list(spec.num_heads)}), window {spec.window_size}, {head}"
    )
