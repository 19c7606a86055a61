"""The conversion, as phases a reader can follow:

    load -> resolve -> build -> map -> write -> gate

`convert` runs them in that order; each phase is one function below. ``load``, ``build``,
``map``, ``write`` and the gate's ``parity`` print ``[phase] ...`` and ``[phase] done in N s``
(`Progress`); ``resolve`` is silent. The config is resolved once, before the checkpoint is read
(a bad ``--config`` fails at once), and the Keras model built once:
the checkpoint is mapped into it, it is written, loaded back from its own file (the write check),
and that same model, now holding exactly the file's values, runs for parity.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from videoswin_tf.architectures import DEFAULT_PATCH, DEFAULT_WINDOW
from videoswin_tf.convert.configs.resolve import resolve_config
from videoswin_tf.convert.errors import ConversionError, ParityFailure
from videoswin_tf.convert.mapping.inference import infer_spec, spec_disagreements
from videoswin_tf.convert.mapping.inflation import InflationError, inflate
from videoswin_tf.convert.mapping.rules import Assignment, MappingError, assign
from videoswin_tf.convert.mapping.spec import ModelSpec, build_keras_model
from videoswin_tf.convert.outputs.atomic import atomic_write, check_destination
from videoswin_tf.convert.outputs.preprocessing import write_preprocessing
from videoswin_tf.convert.outputs.weights import (
    check_weights_name,
    default_output,
    report_path_for,
    write_checked,
)
from videoswin_tf.convert.parity import DEFAULT_PARITY, ParityReport, ParitySettings, model_parity
from videoswin_tf.convert.sources.checkpoint import LoadedCheckpoint, load_checkpoint


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


class Progress:
    """Where progress lines go, and how long each phase took.

    Args:
        log: called with each line.
    """

    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.timings: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def phase(self, name: str, detail: str = "") -> Iterator[None]:
        """Print ``[name] detail``, run the block, print ``[name] done in N s``."""
        self.log(f"[{name}] {detail}".rstrip())
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.timings.append((name, seconds))
        self.log(f"[{name}] done in {seconds:.1f} s")


def convert(
    pth: str | os.PathLike,
    config: str | None = None,
    out: str | os.PathLike | None = None,
    force: bool = False,
    parity: ParitySettings | None = DEFAULT_PARITY,
    log: Callable[[str], None] = print,
    trust_config: bool = False,
    ema: bool = False,
    source: str | None = None,
) -> ConversionResult:
    """Convert an mmaction2 checkpoint into a Keras weights file, then prove parity.

    Args:
        pth: the PyTorch checkpoint.
        config: a named config, a config file (ours or mmaction2's), or None to infer the
            architecture from the checkpoint's tensor shapes.
        out: the weights file to write: ``*.weights.h5`` (Keras 3's format) or any other
            ``*.h5`` (the Keras 2 layout, the seed's file names); default `default_output`.
        force: overwrite an existing output file.
        parity: the parity clip and gate; None to skip parity (the reference and the Keras
            model on the same clip).
        log: where progress lines go.
        trust_config: let mmengine run a ``.py`` config instead of reading it as data.
        ema: convert the averaged (EMA) weights the file keeps beside the regular ones.
        source: the code that wrote a Keras 3 ``*.weights.h5`` that records no layer names
            (``"rewrite"`` or ``"kerascv"``, `videoswin_tf.keras3_h5.BY_KEY`); it picks the
            parity reference. None: what the file records, else the rewrite.

    Raises:
        ConversionError: bad input, a config that disagrees with the checkpoint, or keys
            that do not map; `ParityFailure` when parity fails. Nothing is left at the output
            path in any of these cases (a failed parity run still saves its report).
        CheckpointError, ConfigError: an unreadable checkpoint or config (a config's errors
            before the checkpoint is read).
        OutputError: ``out`` is a directory, exists without ``force``, or its folder is
            missing or not writable; raised before the checkpoint is read.
    """
    pth = Path(pth)
    progress = Progress(log)
    if out is not None:
        check_weights_name(out)
        out = check_destination(out, force)

    target = resolve_config(config, trust_config) if config is not None else None
    checkpoint = load(pth, progress, ema, source)
    checkpoint, spec = resolve(checkpoint, config, target, progress)
    if out is None:
        out = default_output(spec, pth)
        out.parent.mkdir(parents=True, exist_ok=True)
    out_path = check_destination(out, force)
    model = build(spec, progress)
    assignments = map_checkpoint(model, checkpoint, pth, progress)
    report = report_path = None
    with atomic_write(out_path) as tmp_path:
        write(model, spec, checkpoint, out_path, tmp_path, progress)
        if parity is not None:
            report, report_path = gate(model, spec, checkpoint, parity, out_path, progress)
    log(f"wrote {out_path}" + (f" and {report_path}" if report_path else ""))
    parameters = sum(item.value.size for item in assignments)
    return ConversionResult(
        spec, checkpoint, out_path, report, report_path, parameters, progress.timings
    )


def load(
    pth: Path, progress: Progress, ema: bool = False, source: str | None = None
) -> LoadedCheckpoint:
    """Phase ``load``: the checkpoint in canonical form (its regular or, with ``ema``, its
    averaged weights; ``source`` as `load_checkpoint` takes it), its layout and notes printed."""
    with progress.phase("load", str(pth)):
        checkpoint = load_checkpoint(pth, ema=ema, source=source)
        progress.log(f"        {checkpoint.source_layout}, {len(checkpoint.state)} tensors")
        for note in checkpoint.notes:
            progress.log(f"        note: {note}")
        for warning in checkpoint.warnings:
            progress.log(f"        warning: {warning}")
    return checkpoint


def resolve(
    checkpoint: LoadedCheckpoint,
    config: str | None,
    target: ModelSpec | None,
    progress: Progress,
) -> tuple[LoadedCheckpoint, ModelSpec]:
    """Phase ``resolve`` (silent but for inflation notes): a 2D checkpoint inflated to the
    model ``target`` that ``--config`` (``config``, as given) names, read before the checkpoint,
    and the `ModelSpec` to build, checked against the checkpoint's tensors (or inferred from
    them without a config).

    Raises:
        ConversionError: the config disagrees with the checkpoint, or a 2D checkpoint cannot
            be inflated to it.
    """
    if checkpoint.source is not None and checkpoint.source.inflate:
        checkpoint = _inflated(checkpoint, target, progress)
    if target is None:
        return checkpoint, infer_spec(checkpoint.state)
    problems = spec_disagreements(target, checkpoint.state)
    if problems:
        raise ConversionError(
            f"config {config!r} disagrees with the checkpoint in {len(problems)} way"
            f"{'s' if len(problems) != 1 else ''}:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\npick the config that matches the checkpoint, or leave --config out to infer it"
        )
    if checkpoint.source is not None and checkpoint.source.inflate:
        # an ImageNet backbone, not the config's trained video model: named after the .pth
        target = target.replace(release=None, source=None)
    return checkpoint, target if checkpoint.has_head else target.replace(num_classes=None)


def build(spec: ModelSpec, progress: Progress):
    """Phase ``build``: the one Keras model of the conversion, every variable created."""
    with progress.phase("build", _describe(spec)):
        return build_keras_model(spec)


def map_checkpoint(
    model, checkpoint: LoadedCheckpoint, pth: Path, progress: Progress
) -> list[Assignment]:
    """Phase ``map``: every checkpoint tensor assigned to its Keras variable (all or none).

    Raises:
        ConversionError: keys that do not map, listed (`MappingError`).
    """
    state = checkpoint.state
    with progress.phase(
        "map", f"{len(state)} checkpoint tensors to {len(model.weights)} Keras variables"
    ):
        try:
            assignments = assign(model, state)
        except MappingError as error:
            raise ConversionError(f"{pth}: {error}") from error
        skipped = len(state) - len(assignments)
        progress.log(
            f"        assigned {len(assignments)} variables; {skipped} derived buffers checked "
            "and skipped"
        )
    return assignments


def write(
    model,
    spec: ModelSpec,
    checkpoint: LoadedCheckpoint,
    out_path: Path,
    tmp_path: Path,
    progress: Progress,
) -> None:
    """Phase ``write``: the weights file for ``out_path``, written at ``tmp_path`` (which
    `atomic_write` moves into place) and checked by loading it back into ``model``
    (`write_checked`), with the class names the checkpoint recorded and the source's input
    pipeline when it names one."""
    with progress.phase("write", str(out_path)):
        write_checked(model, tmp_path, spec, checkpoint.class_names)
        if checkpoint.source is not None and checkpoint.source.preprocessing:
            write_preprocessing(tmp_path, checkpoint.source.preprocessing)


def gate(
    model,
    spec: ModelSpec,
    checkpoint: LoadedCheckpoint,
    settings: ParitySettings,
    out_path: Path,
    progress: Progress,
    reference: str | None = None,
) -> tuple[ParityReport, Path]:
    """Phase ``parity``: the reference (``checkpoint``'s, or the `REFERENCES` key
    ``reference``) and ``model`` (holding the written file's values) on the seeded clip; the
    report is saved beside ``out_path`` and printed.

    Raises:
        ParityFailure: the logits differ beyond ``settings``' tolerances.
    """
    from videoswin_tf.convert.references.registry import reference_for

    description = reference_for(checkpoint, reference).description
    with progress.phase("parity", f"{description} vs Keras model loaded from the file"):
        report = model_parity(
            spec,
            checkpoint,
            model,
            settings.clip_shape(spec),
            settings.seed,
            settings.atol,
            settings.rtol,
            reference,
        )
        report_path = report_path_for(out_path)
        with atomic_write(report_path) as tmp_report:
            report.save(tmp_report)
    progress.log(report.format())
    if not report.passed:
        raise ParityFailure(
            f"parity failed: logits differ by {report.judged.max_abs:.3e} "
            f"(atol {settings.atol:g}, relative {report.judged.relative:.2e} vs rtol "
            f"{settings.rtol:g}); nothing written, report in {report_path}"
        )
    return report, report_path


def _inflated(
    checkpoint: LoadedCheckpoint, target: ModelSpec | None, progress: Progress
) -> LoadedCheckpoint:
    """``checkpoint`` (2D ImageNet Swin) inflated to the config's window and patch, or to
    mmaction2's defaults without a config."""
    window = target.window_size if target else DEFAULT_WINDOW
    patch = target.patch_size if target else DEFAULT_PATCH
    try:
        state, notes = inflate(checkpoint.state, window, patch)
    except InflationError as error:
        raise ConversionError(f"cannot inflate the 2D checkpoint: {error}") from error
    for note in notes:
        progress.log(f"        note: {note}")
    return dataclasses.replace(checkpoint, state=state, notes=checkpoint.notes + notes)


def _describe(spec: ModelSpec) -> str:
    head = f"{spec.num_classes} classes" if spec.num_classes else "backbone only"
    return (
        f"{spec.name}: {spec.arch or 'custom'} (C={spec.embed_dim}, depths {list(spec.depths)}, "
        f"heads {list(spec.num_heads)}), window {spec.window_size}, {head}"
    )
