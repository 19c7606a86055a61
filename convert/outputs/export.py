"""Exports of a converted model (SavedModel for TF Serving, ONNX, OpenVINO IR), each checked
against Keras.

An export is written under a temporary name, run on a seeded clip next to the Keras model it
came from, and moved into place only when every endpoint's logits agree within ``atol``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from videoswin_tf.convert.configs.resolve import resolve_config
from videoswin_tf.convert.errors import ConversionError, ParityFailure
from videoswin_tf.convert.mapping.spec import ModelSpec, build_keras_model
from videoswin_tf.convert.outputs.atomic import make_parent_folders
from videoswin_tf.convert.parity import DEFAULT_PARITY, Difference, ParitySettings, parity_clip
from videoswin_tf.weights_file import refuse_unreadable

FORMATS = ("saved_model", "onnx", "openvino")
ONNX_OPSET = 17
# What each format needs beyond the model package, as the `export` extra installs it.
REQUIREMENTS = {"saved_model": (), "onnx": ("tf2onnx", "onnxruntime"), "openvino": ("openvino",)}
EXTRAS = {"saved_model": "export", "onnx": "export", "openvino": "openvino"}
# The files of an OpenVINO export, inside its folder: the graph and the float32 weights.
OPENVINO_XML = "model.xml"
# The file an earlier export of each folder format holds: --force replaces only such a folder.
FOLDER_MARKERS = {"saved_model": "saved_model.pb", "openvino": OPENVINO_XML}


@dataclasses.dataclass
class ExportReport:
    """How far each endpoint of an export is from the Keras model on the same clip.

    Attributes:
        config: config name.
        format: one of `FORMATS`.
        path: where the export was written.
        clip_shape: the checked clip ``(B, T, H, W, 3)``.
        seed: seed of the checked clip.
        atol: largest absolute logit difference that passes.
        endpoints: endpoint name to the difference of its logits from the Keras model's.
        seconds_export: time to write the export.
    """

    config: str
    format: str
    path: Path
    clip_shape: tuple[int, ...]
    seed: int
    atol: float
    endpoints: dict[str, Difference]
    seconds_export: float

    @property
    def worst(self) -> float:
        return max(d.max_abs for d in self.endpoints.values())

    @property
    def passed(self) -> bool:
        return self.worst <= self.atol

    def format_report(self) -> str:
        """The report as printed by the CLI, laid out like the parity report."""
        lines = [
            f"export parity: {self.config} as {self.format}, clip "
            f"{'x'.join(map(str, self.clip_shape))} (seed {self.seed}), against the Keras model",
            f"  {'endpoint':<24} {'shape':<12} {'max |diff|':>11} {'mean |diff|':>11} "
            f"{'max |ref|':>10} {'relative':>10} {'cosine':>12}",
        ]
        for name, d in self.endpoints.items():
            lines.append(
                f"  {name:<24} {list(d.shape)!s:<12} {d.max_abs:>11.3e} {d.mean_abs:>11.3e} "
                f"{d.reference_scale:>10.3f} {d.relative:>10.2e} {d.cosine:>12.9f}"
            )
        verdict = "PASS" if self.passed else "FAIL"
        lines.append(f"  {verdict}: max |diff| {self.worst:.3e} (atol {self.atol:g})")
        return "\n".join(lines)


def export(
    weights: str | os.PathLike,
    config: str | None,
    fmt: str,
    out: str | os.PathLike,
    clip: ParitySettings = DEFAULT_PARITY,
    any_batch: bool = False,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> ExportReport:
    """Export a converted model and check it against the Keras model.

    Args:
        weights: a weights file of ``config``'s model that ``load_weights`` reads: the
            converter's ``.weights.h5``, the seed's Keras 2 ``.h5``, the Keras 3 rewrite's or
            KerasCV's ``.weights.h5``/``.keras``, or a ``.keras`` of this package's model.
        config: a named config or config file (as ``vswin-convert --config``), or ``None``
            for the model the weights file records (`recorded_spec`).
        fmt: ``"saved_model"`` (a folder), ``"onnx"`` (a file) or ``"openvino"`` (a folder
            holding the IR: ``model.xml`` and ``model.bin``, float32 weights).
        out: where to write it; missing folders above it are created first.
        clip: the exported signature's clip (frames, size: default the config's clip; batch:
            clips per call) and the check (seed of the checked clip; atol, the largest
            absolute logit difference that passes; rtol is not used).
        any_batch: accept any number of clips per call instead of ``clip.batch`` (checked
            with one clip).
        force: replace an earlier export at ``out`` (`check_out`: never another file or
            folder).
        log: where progress lines go.

    Raises:
        ConversionError: bad input or a missing export package; `ParityFailure` when an
            endpoint's logits differ by more than ``atol`` (nothing is left at ``out``).
        OutputError: a folder above ``out`` cannot be created.
    """
    if fmt not in FORMATS:
        raise ConversionError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    missing = [name for name in REQUIREMENTS[fmt] if importlib.util.find_spec(name) is None]
    if missing:
        raise ConversionError(
            f"{fmt} export needs {', '.join(missing)}: pip install -e '.[{EXTRAS[fmt]}]'"
        )
    weights, out = Path(weights), Path(out)
    if not weights.is_file():
        raise ConversionError(f"weights file {weights} not found; convert a checkpoint first")
    check_out(out, fmt, force)
    make_parent_folders(out)

    if config is not None:
        spec = resolve_config(config)
    else:
        spec = recorded_spec(weights, file_config(weights))
    model = load_model(spec, weights)
    clip_shape = clip.clip_shape(spec)
    batch = None if any_batch else clip.batch
    signature_shape = (batch, *clip_shape[1:])
    tmp = out.with_name(out.name + ".tmp")
    remove(tmp)
    log(
        f"[export] {spec.name} as {fmt}, clip {'x'.join(map(str, signature_shape[1:]))}, "
        f"batch {batch or 'any'} -> {out}"
    )
    start = time.perf_counter()
    try:
        WRITERS[fmt](model, tmp, signature_shape)
        seconds = time.perf_counter() - start
        log(f"[export] written in {seconds:.1f} s; checking against the Keras model")
        clip_shape = (batch or 1, *clip_shape[1:])
        endpoints = CHECKS[fmt](model, tmp, clip_shape, clip.seed)
        report = ExportReport(
            spec.name, fmt, out, clip_shape, clip.seed, clip.atol, endpoints, seconds_export=seconds
        )
        log(report.format_report())
        if not report.passed:
            raise ParityFailure(
                f"the {fmt} export differs from the Keras model by {report.worst:.3e} "
                f"(atol {clip.atol:g}); nothing written"
            )
        remove(out)
        os.replace(tmp, out)
    finally:
        remove(tmp)
    log(f"wrote {out}")
    return report


def file_config(weights: Path) -> dict | None:
    """What a weights file records of its model (`videoswin_tf.weights_file.read_file_config`:
    the converter's files, the seed's ``.h5``, the Keras 3 rewrite's and KerasCV's), or None.

    Raises:
        ConversionError: the file cannot be read, or its layout fits no model.
    """
    from videoswin_tf.weights_file import read_file_config

    try:
        return read_file_config(weights)
    except ValueError as error:  # that, or a layout that fits no model (WeightsMismatchError)
        raise ConversionError(str(error)) from None


def recorded_spec(weights: Path, recorded: dict | None) -> ModelSpec:
    """The model ``weights`` records (``recorded``, its `file_config`), named after its preset
    if it records one, else after the file, with the clip every preset has (32x224): how
    ``export`` without ``--config`` and ``to-torch`` read a file.

    Raises:
        ConversionError: the file records none (a plain ``model.save_weights`` file): the
            message says to pass ``--config``.
    """
    if recorded is None:
        raise ConversionError(
            f"{weights}: records no Video Swin model (not a weights file written by "
            "vswin-convert, the seed's .h5, or the Keras 3 rewrite's or KerasCV's file); "
            "for a plain model.save_weights file pass the model's --config (a named "
            "config such as swin_t_k400, or a config file)"
        )
    return ModelSpec.from_file_config(recorded, weights.name.split(".")[0])


def load_model(spec: ModelSpec, weights: Path):
    """The Keras model of ``spec`` with ``weights`` loaded."""
    try:
        refuse_unreadable(weights)  # no weights file at all: another --config would not help
    except ValueError as error:
        raise ConversionError(str(error)) from None
    model = build_keras_model(spec)
    try:
        model.load_weights(weights)
    except (ValueError, OSError) as error:
        raise ConversionError(
            f"{weights} does not load into {spec.name}: {str(error).splitlines()[0]}; "
            "pass the --config it was converted with"
        ) from None
    return model


def check_out(out: Path, fmt: str, force: bool) -> None:
    """Refuse an existing ``out`` unless ``force`` and it is what an export of ``fmt`` writes:
    a ``.onnx`` file for ONNX, a folder holding `FOLDER_MARKERS`' file for the others
    (``--force`` once replaced any folder or file given as ``--out``, with all it held).

    Raises:
        ConversionError: ``out`` exists and is not replaced, or an ONNX ``out`` does not end
            in ``.onnx``; the message says what to do.
    """
    marker = FOLDER_MARKERS.get(fmt)
    if marker is None and out.is_dir():
        raise ConversionError(
            f"{out} is a folder; name the ONNX file to write, e.g. {out / 'model.onnx'}"
        )
    if marker is None and out.suffix != ".onnx":
        raise ConversionError(
            f"--out of an ONNX export must end in .onnx, got {out}; e.g. {out.with_suffix('.onnx')}"
        )
    if not out.exists():
        return
    if marker is not None and not (out / marker).is_file():
        what = f"a folder without {marker}" if out.is_dir() else "a file"
        raise ConversionError(
            f"{out} is {what}, not an earlier {fmt} export, so it is not replaced; "
            "choose a new folder for --out"
        )
    if not force:
        raise ConversionError(f"{out} exists; pass --force to overwrite it")


def remove(path: Path) -> None:
    """Delete a file or folder if it exists."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def write_saved_model(model, path: Path, shape: tuple[int | None, ...]) -> None:
    from videoswin_tf.serving import export_saved_model

    export_saved_model(model, path, shape)


def write_onnx(model, path: Path, shape: tuple[int | None, ...]) -> None:
    """ONNX through tf2onnx, from a traced function over a named float ``clip``, with the
    attention biases and masks that tf2onnx folds into constants computed at run time again
    (`onnx_constants`: the file is then about the size of the weights)."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    from videoswin_tf.convert.outputs.onnx_constants import unfold_attention_constants

    signature = [tf.TensorSpec(shape, tf.float32, name="clip")]
    function = tf.function(lambda clip: {"logits": model(clip, training=False)})
    proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=ONNX_OPSET)
    tables = {
        variable.path: np.asarray(variable)
        for variable in model.weights
        if variable.name == "relative_position_bias_table"
    }
    unfold_attention_constants(proto, tables, model.get_config()["window_size"])
    onnx.save(proto, str(path))


def write_openvino(model, path: Path, shape: tuple[int | None, ...]) -> None:
    """OpenVINO IR with float32 weights (OpenVINO would halve them to fp16 by default).

    With tf2onnx installed (the ``export`` extra) the IR is read from the ONNX export: OpenVINO's
    ONNX reader keeps its run-time attention biases and masks, so the IR is about the size of
    the weights. Without it, the IR is converted in memory from a traced function
    (`videoswin_tf.inference`), whose conversion folds them into constants (6.3x the weights
    on Swin-T at 32x224x224: 714 MB, with attention traced in one pass for OpenVINO's fused
    kernel). The ONNX export keeps TensorFlow's chunked attention: traced in one pass, tf2onnx
    folding Swin-T's whole-clip biases and masks ran out of memory (killed at 8.9 GB).
    """
    import openvino

    from videoswin_tf.inference import openvino_model

    path.mkdir()
    onnx_file = path / "model.onnx"
    if importlib.util.find_spec("tf2onnx") is None:
        converted = openvino_model(model, shape)
    else:
        write_onnx(model, onnx_file, shape)
        converted = openvino.Core().read_model(str(onnx_file))
    openvino.save_model(converted, path / OPENVINO_XML, compress_to_fp16=False)
    onnx_file.unlink(missing_ok=True)


def keras_logits(model, clip: np.ndarray) -> np.ndarray:
    from keras import ops

    return ops.convert_to_numpy(model(clip, training=False))


def uint8_frames(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random RGB frames ``shape`` in 0-255 from ``seed``."""
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def check_saved_model(
    model, path: Path, shape: tuple[int, ...], seed: int
) -> dict[str, Difference]:
    """Both signatures of the SavedModel against the Keras model."""
    import tensorflow as tf

    from videoswin_tf.serving import CLIP_ENDPOINT, FRAMES_ENDPOINT, normalize_frames

    loaded = tf.saved_model.load(str(path))
    clip, frames = parity_clip(shape, seed), uint8_frames(shape, seed)
    served_clip = loaded.signatures[CLIP_ENDPOINT](clip=tf.constant(clip))["logits"]
    served_frames = loaded.signatures[FRAMES_ENDPOINT](frames=tf.constant(frames))["logits"]
    return {
        f"{CLIP_ENDPOINT} (clip)": Difference.between(
            served_clip.numpy(), keras_logits(model, clip)
        ),
        f"{FRAMES_ENDPOINT} (uint8)": Difference.between(
            served_frames.numpy(), keras_logits(model, normalize_frames(frames))
        ),
    }


def check_onnx(model, path: Path, shape: tuple[int, ...], seed: int) -> dict[str, Difference]:
    """The ONNX file, run by ONNX Runtime, against the Keras model."""
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # ONNX Runtime's own exception types are not importable
        raise ConversionError(
            f"ONNX Runtime cannot load the export: {str(error).splitlines()[0]}"
        ) from None
    clip = parity_clip(shape, seed)
    (logits,) = session.run(["logits"], {"clip": clip})
    return {"clip (onnxruntime)": Difference.between(logits, keras_logits(model, clip))}


def check_openvino(model, path: Path, shape: tuple[int, ...], seed: int) -> dict[str, Difference]:
    """The IR, read back and compiled for the CPU in fp32, against the Keras model."""
    from videoswin_tf.inference import compile_openvino

    compiled = compile_openvino(str(path / OPENVINO_XML), "fp32")
    clip = parity_clip(shape, seed)
    logits = compiled(clip)[0]
    return {"clip (openvino fp32)": Difference.between(logits, keras_logits(model, clip))}


WRITERS = {"saved_model": write_saved_model, "onnx": write_onnx, "openvino": write_openvino}
CHECKS = {"saved_model": check_saved_model, "onnx": check_onnx, "openvino": check_openvino}
