"""Converted Keras weights back to a PyTorch checkpoint, in mmaction2's or torchvision's layout.

Nothing here is a second key table. `mapping.rules.extract` runs the converter's `RULES` backwards
into the canonical mmaction2 1.x state dict (derived ``relative_position_index`` buffers
regenerated); torchvision's names are those of its own model's state dict, renamed onto
canonical keys by the reader's table (`sources.torchvision.TORCHVISION`). The file holds plain
tensors only (``torch.save``; it loads with ``weights_only=True``), and for mmaction2 the class
names the weights file records (or those of the label map it names), as
``meta['dataset_meta']['classes']`` (a list of strings: mmengine's Runner saves the training
dataset's ``metainfo`` as ``meta['dataset_meta']``, mmaction2's ``ActionVisualizer`` reads
``dataset_meta['classes']``, and the converter reads them back there). Before it is moved into place
it is read back by the converter's own reader, which must give every tensor bit for bit, and the
upstream model loads it with ``strict=True`` and runs against the Keras model on the parity
clip (`converter.gate`): for mmaction2, the ``Recognizer3D`` its registry builds from its own
config (`references.mmaction2_recognizer`); for torchvision, its ``SwinTransformer3d``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from videoswin_tf.convert.configs.resolve import resolve_config
from videoswin_tf.convert.converter import Progress, gate
from videoswin_tf.convert.errors import ConversionError
from videoswin_tf.convert.mapping.rules import extract
from videoswin_tf.convert.mapping.spec import ModelSpec, build_keras_model
from videoswin_tf.convert.outputs.atomic import atomic_write, check_destination
from videoswin_tf.convert.outputs.export import file_config, load_model, recorded_spec
from videoswin_tf.convert.parity import DEFAULT_PARITY, ParityReport, ParitySettings
from videoswin_tf.convert.sources.checkpoint import load_checkpoint
from videoswin_tf.convert.sources.dataset_meta import CLASSES, DATASET_META, META, WHERE
from videoswin_tf.convert.sources.layout import SourceError, rename
from videoswin_tf.convert.sources.torchvision import TORCHVISION
from videoswin_tf.labels import load_labels

TORCH_SUFFIX = ".pth"


def _mmaction2_layout(spec: ModelSpec, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return state


def _torchvision_layout(spec: ModelSpec, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``state`` under the keys and shapes of torchvision's ``SwinTransformer3d`` for ``spec``
    (which stores ``relative_position_index`` flattened)."""
    from videoswin_tf.convert.references.torchvision import build_torchvision

    template = {
        key: tuple(value.shape) for key, value in build_torchvision(spec).state_dict().items()
    }
    try:
        canonical_to_torchvision, _ = rename(TORCHVISION, {key: key for key in template})
    except SourceError as error:
        raise ConversionError(
            f"torchvision's model does not fit its rename table: {error}"
        ) from None
    homeless = sorted(state.keys() - canonical_to_torchvision.keys())
    unfilled = sorted(canonical_to_torchvision.keys() - state.keys())
    if homeless or unfilled:
        raise ConversionError(
            "torchvision's SwinTransformer3d does not fit this model "
            f"(no place for {homeless[:3]}, nothing for {unfilled[:3]}); use --format mmaction2"
        )
    return {
        key: state[canonical].reshape(template[key])
        for canonical, key in canonical_to_torchvision.items()
    }


@dataclasses.dataclass(frozen=True)
class TorchFormat:
    """One PyTorch checkpoint layout `to_torch` writes.

    Attributes:
        description: what loads the file, for ``--help`` and progress lines.
        container: the top-level key the tensors sit under, or None for a bare state dict.
        layout: ``(spec, canonical state) -> {key: array}`` in this layout.
        reference: the `references.registry.REFERENCES` key parity runs the file in.
    """

    description: str
    container: str | None
    layout: Callable[[ModelSpec, dict[str, np.ndarray]], dict[str, np.ndarray]]
    reference: str


FORMATS: dict[str, TorchFormat] = {
    "mmaction2": TorchFormat(
        "mmaction2's Recognizer3D (SwinTransformer3D backbone, I3DHead), under 'state_dict'",
        "state_dict",
        _mmaction2_layout,
        "mmaction2-recognizer",
    ),
    "torchvision": TorchFormat(
        "torchvision's swin3d_t/s/b (SwinTransformer3d), a bare state dict",
        None,
        _torchvision_layout,
        "torchvision",
    ),
}


@dataclasses.dataclass
class TorchExport:
    """What `to_torch` wrote.

    Attributes:
        spec: the model the weights file holds.
        path: the written ``.pth``.
        tensors: number of tensors in it.
        report: the parity report, or None with parity off.
        report_path: where the report was saved, or None.
    """

    spec: ModelSpec
    path: Path
    tensors: int
    report: ParityReport | None
    report_path: Path | None


def to_torch(
    weights: str | os.PathLike,
    fmt: str,
    out: str | os.PathLike,
    force: bool = False,
    parity: ParitySettings | None = DEFAULT_PARITY,
    log: Callable[[str], None] = print,
    config: str | None = None,
) -> TorchExport:
    """Write the Keras weights file ``weights`` as a PyTorch checkpoint at ``out``.

    Args:
        weights: a weights file written by this package (``*.weights.h5`` or the seed's
            ``*.h5`` layout), or a Keras 3 rewrite's or KerasCV's ``*.weights.h5``/``.keras``
            file; the model is the one the file records (or its shapes give).
        fmt: a key of `FORMATS`.
        out: the ``.pth`` to write.
        force: overwrite an existing ``out``.
        parity: the clip and gate of the upstream model against the Keras model; None: no
            parity (the read-back check still runs).
        log: where progress lines go.
        config: the model of a file that records none (a plain ``model.save_weights`` of a
            fine-tuned model): a named config or config file, as ``vswin-convert --config``.
            Not used for a file that records its model.

    Raises:
        ConversionError: ``out`` does not end in ``.pth``, ``weights`` records no model and no
            ``config`` is given (or it does not load into ``config``'s model), the
            file read back differs from what was written, or (`ParityFailure`) parity fails.
            Nothing is left at ``out`` then.
        OutputError: ``out`` exists without ``force``, or its folder is missing or read-only.
    """
    if fmt not in FORMATS:
        raise ConversionError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not str(out).endswith(TORCH_SUFFIX):
        raise ConversionError(f"--out must end in {TORCH_SUFFIX}, got {out}")
    out_path = check_destination(out, force)
    progress = Progress(log)
    spec, model, class_names = _read_weights(Path(weights), progress, config)
    torch_format = FORMATS[fmt]
    with progress.phase("map", f"Keras variables to {fmt} keys"):
        try:
            state = torch_format.layout(spec, extract(model))
        except ConversionError as error:  # the format cannot hold this file's model
            raise ConversionError(f"{os.fspath(weights)}: {error}") from None
        progress.log(f"        {len(state)} tensors for {torch_format.description}")
        meta = None
        if class_names is not None and torch_format.container is not None:
            meta = {DATASET_META: {CLASSES: list(class_names)}}
            progress.log(f"        class names: {len(class_names)} under {WHERE}.{CLASSES}")
    report = report_path = None
    with atomic_write(out_path) as tmp_path:
        with progress.phase("write", str(out_path)):
            _save(state, torch_format.container, tmp_path, meta)
            checkpoint = load_checkpoint(tmp_path)
            _check_read_back(state, checkpoint.original or checkpoint.state, out_path)
            if meta is not None and checkpoint.class_names != tuple(class_names):
                raise ConversionError(
                    f"{out_path} does not read back the class names written; nothing written"
                )
        if parity is not None:
            checkpoint = dataclasses.replace(checkpoint, file=tmp_path)
            report, report_path = gate(
                model, spec, checkpoint, parity, out_path, progress, torch_format.reference
            )
    log(f"wrote {out_path}" + (f" and {report_path}" if report_path else ""))
    return TorchExport(spec, out_path, len(state), report, report_path)


def _read_weights(
    path: Path, progress: Progress, config: str | None
) -> tuple[ModelSpec, object, list[str] | None]:
    """The model ``path`` records (or, for a file that records none, ``config``'s), built and
    holding the file's values, and the class names the file records (or None)."""
    from videoswin_tf.weights_file import WeightsMismatchError

    with progress.phase("load", str(path)):
        if not path.is_file():
            raise ConversionError(f"{path}: file not found; pass the .weights.h5 file to convert")
        recorded = file_config(path)  # refuses a file that cannot be read
        try:
            if recorded is None and config is not None:  # e.g. a plain model.save_weights
                spec = resolve_config(config)
                return spec, load_model(spec, path), None
            spec = recorded_spec(path, recorded)  # refuses a file that records no model
            model = build_keras_model(spec)
            model.load_weights(str(path))
        except WeightsMismatchError as error:
            raise ConversionError(str(error)) from None
    return spec, model, _class_names(recorded, progress)


def _class_names(recorded: dict, progress: Progress) -> list[str] | None:
    """The class names a weights file records: its ``class_names``, else the names of the
    label map it names (``"labels"``: a shipped map such as ``"k400"``, or a label file) when
    they fit its head; a map that cannot be read is a note and no names."""
    if recorded.get("class_names") is not None or recorded.get("labels") is None:
        return recorded.get("class_names")
    if not recorded.get("include_top"):
        return None
    try:
        return load_labels(recorded["labels"], recorded["num_classes"])
    except ValueError as error:  # its cause, without load_labels' advice (to-torch has no --labels)
        progress.log(f"        note: {str(error).split('; ')[0]}; class names not written")
        return None


def _save(
    state: dict[str, np.ndarray], container: str | None, path: Path, meta: dict | None
) -> None:
    """``torch.save`` the tensors bare, or under ``container`` beside ``meta`` (as
    mmengine's Runner saves ``meta``) when given."""
    import torch

    tensors = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in state.items()}
    if container is None:
        torch.save(tensors, path)
    else:
        torch.save({container: tensors} | ({META: meta} if meta else {}), path)


def _check_read_back(written: dict[str, np.ndarray], read: dict[str, np.ndarray], out: Path):
    """Require the reader to give back every written tensor bit for bit."""
    differing = sorted(
        key
        for key in written.keys() | read.keys()
        if key not in written
        or key not in read
        or written[key].dtype != read[key].dtype
        or written[key].tobytes() != read[key].tobytes()
    )
    if differing:
        raise ConversionError(
            f"{out} does not read back as written: {len(differing)} tensors differ "
            f"(first: {differing[0]}); nothing written"
        )
