"""Reading a Video Swin checkpoint in any published layout into one canonical state dict.

Canonical means mmaction2 1.x keys (``backbone.*`` with the final norm ``backbone.norm3.*``,
``cls_head.*``), numpy arrays, float32 (integer buffers int64). Files are read only with
torch's safe ``weights_only`` loader: a checkpoint is never allowed to run code. The only
globals allowed beyond torch's own are numpy's data constructors (`numpy_globals`), which
training runs leave in ``meta`` (``numpy.int64`` epochs, ``numpy.float64`` scores), and inert
stand-ins for the argument, config and log objects training scripts save beside the weights
(`sources.training_objects`).

Averaged (EMA) weights: mmcv 1.x's ``EMAHook`` registers one buffer per parameter on the model,
named ``ema_`` + the parameter's name with ``.`` replaced by ``_``, so they sit in the state dict
beside the regular weights; mmengine's ``EMAHook`` saves its averaged model apart, as
``ema_state_dict`` (keys ``module.`` + the model's, and a ``steps`` counter). The regular weights
are converted unless ``ema=True`` asks for the averaged ones.
Which keys the Keras model needs is not decided here (that is `mapping.rules`'s job), so
derived buffers such as ``relative_position_index`` stay in the state.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import pickle
import re
import shlex
import sys
from pathlib import Path

import numpy as np

from videoswin_tf.convert.errors import CheckpointError
from videoswin_tf.convert.sources import keras3
from videoswin_tf.convert.sources.dataset_meta import dataset_classes
from videoswin_tf.convert.sources.detection import detect_source
from videoswin_tf.convert.sources.file_kind import NOT_READ, Kind, identify
from videoswin_tf.convert.sources.layout import Source, SourceError, listing, rename
from videoswin_tf.convert.sources.mmaction2 import FAMILIES, rename_final_norm
from videoswin_tf.convert.sources.pickle_stream import unfinished
from videoswin_tf.convert.sources.training_objects import training_object_globals
from videoswin_tf.weights_file import cut_short

CONTAINERS = ("state_dict", "model")
PREFIXES = ("backbone.", "cls_head.")
DDP_PREFIX = "module."
PREPROCESSOR = "data_preprocessor."
DETAIL_CHARS = 200  # of a reader's own error message quoted in ours
# What --pth converts, as the next step for a PyTorch file of some other model.
PTH_SOURCES = (
    "--pth takes a Video Swin recognizer's or backbone's checkpoint (mmaction2's or the authors' "
    "Video-Swin .pth: backbone.* and cls_head.* keys), torchvision's swin3d_t/s/b, a 2D ImageNet "
    "Swin (Microsoft's or timm's), or the seed's, the Keras 3 rewrite's or KerasCV's Keras files "
    "(vswin-convert --help, under Sources, says what each needs)"
)
EMA_BUFFER = "ema_"  # mmcv 1.x EMAHook: ema_ + parameter name with "." -> "_"
EMA_STATE = "ema_state_dict"  # mmengine EMAHook: the averaged model's state dict
EMA_MODULE = "module."  # mmengine's averaged model wraps the model as .module
EMA_STEPS = "steps"  # mmengine's averaged model's update counter, not a weight

# The line of torch's refusal that says which global or operation it refused.
REFUSAL_DETAIL = re.compile(
    r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n|$)|^(Trying to load unsupported GLOBAL .+?)\.?$",
    re.MULTILINE,
)

# The globals a pickled numpy scalar, array or dtype references, under numpy 2's module names and
# numpy 1's (``numpy.core``). ``numpy.dtype`` and ``numpy.ndarray`` are the same in both; the
# dtype classes (``numpy.dtypes.Int64DType`` ...) are never named in a pickle, but torch lets
# BUILD set the state of an object only when its type is allowed, and a dtype is built that way.
NUMPY_CONSTRUCTORS = ("scalar", "_reconstruct")
NUMPY_MODULES = ("numpy._core.multiarray", "numpy.core.multiarray")


@dataclasses.dataclass
class LoadedCheckpoint:
    """A checkpoint in canonical form.

    Attributes:
        state: ``{key: array}`` with mmaction2 1.x keys; float tensors as float32, integer
            buffers as int64.
        source_layout: what the file looked like, e.g.
            ``"authors' Video-Swin layout (state_dict, backbone.norm)"``.
        notes: every change made on the way to canonical form, one line each.
        has_head: whether the file holds ``cls_head.*`` weights.
        source: the `sources.layout.Source` the file was recognised as (torchvision, 2D
            ImageNet Swin), or None for mmaction2's own layouts.
        original: for a recognised source, its tensors under the file's own key names (what
            its upstream model loads for parity); None otherwise.
        file: the file read, for a reference that loads it itself (the seed's Keras 2 model);
            None otherwise.
        class_names: the names of the head's classes a training run recorded
            (`sources.dataset_meta`), or None.
        warnings: problems that do not stop the conversion, one line each.
    """

    state: dict[str, np.ndarray]
    source_layout: str
    notes: list[str]
    has_head: bool
    source: Source | None = None
    original: dict[str, np.ndarray] | None = None
    file: Path | None = None
    class_names: tuple[str, ...] | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)


def load_checkpoint(
    path: str | os.PathLike, ema: bool = False, source: str | None = None
) -> LoadedCheckpoint:
    """Read ``path`` safely and bring it to canonical form.

    What ``path`` is decides the reader (`sources.file_kind.identify`): the Keras 3 rewrite's
    and KerasCV's ``.weights.h5`` and ``.keras`` files go to `sources.keras3`, the seed's ``.h5``
    files to `sources.keras_h5`, its SavedModel folders to `sources.saved_model` (variables read as
    data), torch's files to torch's ``weights_only`` loader, and every other
    kind is refused before any reader sees it.

    Unwraps the container (``state_dict``, ``model`` or a bare state dict), strips ``module.``
    prefixes, keeps the regular or (``ema=True``) the averaged weights of a run with EMA (mmcv
    1.x ``ema_*`` buffers or mmengine's ``ema_state_dict``), renames the keys of the layouts in
    `sources.detection.SOURCES` (torchvision, 2D ImageNet Swin) by their tables, renames
    ``backbone.norm.*`` to ``backbone.norm3.*``, drops the ``data_preprocessor.*``
    input-normalisation buffers and casts float tensors to float32. The class names a training
    run left in ``meta['dataset_meta']`` are kept when they fit the head
    (`sources.dataset_meta`; a warning otherwise). ``source`` names the code that wrote a Keras
    3 ``*.weights.h5`` recording no layer names (`sources.keras3.read_keras3`).

    Raises:
        CheckpointError: the file is missing, a directory, unreadable, holds objects the safe
            loader refuses, is not a dict, holds no tensors, has both ``backbone.norm.*`` and
            ``backbone.norm3.*``, has keys that are neither ``backbone.*`` nor
            ``cls_head.*``, has EMA buffers that match no weight, or holds no EMA weights
            with ``ema=True``.
    """
    path = Path(path)
    kind = identify(path)
    if keras3.recognises(path, kind):
        return keras3.read_keras3(path, source)
    if kind is Kind.HDF5:
        from videoswin_tf.convert.sources.keras_h5 import read_h5

        return read_h5(path)
    if kind is Kind.SAVED_MODEL:
        from videoswin_tf.convert.sources.saved_model import read_saved_model

        return read_saved_model(path)
    if kind is not Kind.TORCH:
        raise CheckpointError(NOT_READ[kind].format(path=path))
    raw = _read(path)
    if not isinstance(raw, dict):
        raise CheckpointError(
            f"{path}: holds a {type(raw).__name__}, not a dict; expected a checkpoint dict "
            f"(with 'state_dict' or 'model') or a state dict of tensors"
        )
    notes: list[str] = []
    container, tensors = _unwrap(path, raw, notes)

    prefixed = [key for key in tensors if key.startswith(DDP_PREFIX)]
    if prefixed:
        stripped = {key.removeprefix(DDP_PREFIX): value for key, value in tensors.items()}
        if len(stripped) != len(tensors):
            clashes = [key for key in prefixed if key.removeprefix(DDP_PREFIX) in tensors]
            raise CheckpointError(
                f"{path}: holds both {listing(clashes)} and the same keys without the "
                f"{DDP_PREFIX} prefix; keep one copy and re-save"
            )
        tensors = stripped
        notes.append(f"stripped the {DDP_PREFIX} prefix (DDP) from {len(prefixed)} keys")
    tensors = _select_ema(path, raw, tensors, ema, notes)

    source = detect_source(tensors)
    original = None
    if source is not None:
        original = _to_numpy(path, tensors, [])
        tensors = _rename_source(path, source, tensors, notes)

    try:
        tensors, norm_naming = rename_final_norm(tensors, notes)
    except SourceError as error:
        raise CheckpointError(f"{path}: {error}") from error

    dropped = sorted(key for key in tensors if key.startswith(PREPROCESSOR))
    if dropped:
        for key in dropped:
            del tensors[key]
        notes.append(f"dropped {', '.join(dropped)} (input normalisation buffers, not weights)")

    unknown = [key for key in tensors if not key.startswith(PREFIXES)]
    if unknown:
        raise CheckpointError(_unknown_keys_message(path, unknown))

    state = _to_numpy(path, tensors, notes)
    _refuse_non_finite(path, state)
    has_head = any(key.startswith("cls_head.") for key in state)
    if not has_head:
        notes.append("no cls_head.* keys: backbone-only checkpoint")
    classes = dataset_classes(raw, state)
    if classes.names is not None:
        notes.append(classes.line)
    recorded = {
        "class_names": classes.names,
        "warnings": [classes.line] if classes.names is None and classes.line else [],
    }

    family = FAMILIES.get(norm_naming, "unrecognised")
    parts = [container] + ([f"{DDP_PREFIX} prefix"] if prefixed else [])
    if source is not None:
        return LoadedCheckpoint(
            state,
            f"{source.name} ({', '.join(parts)})",
            notes,
            has_head,
            source,
            original,
            **recorded,
        )
    parts.append(f"backbone.{norm_naming}" if norm_naming else "no backbone.norm or backbone.norm3")
    return LoadedCheckpoint(
        state=state,
        source_layout=f"{family} layout ({', '.join(parts)})",
        notes=notes,
        has_head=has_head,
        **recorded,
    )


def _read(path: Path) -> object:
    """``torch.load`` with ``weights_only=True``, every failure turned into a CheckpointError."""
    try:
        import torch
    except ImportError as error:
        raise CheckpointError(
            f"{path}: reading PyTorch checkpoints needs torch ({error}); "
            f"install it with: pip install videoswin-tf[convert]"
        ) from error
    try:
        with torch.serialization.safe_globals(numpy_globals() + training_object_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a torch file it cannot read
        raise CheckpointError(_unreadable(path, error)) from error


def _unreadable(path: Path, error: Exception) -> str:
    """What is said of a torch file torch's safe loader failed on with ``error``: cut short
    (where a legacy file ends inside its pickles, whatever torch made of that), holding objects
    the loader refuses, or cut short or damaged as torch's own error says."""
    ended = unfinished(path)
    if ended is not None:
        return cut_short(path, ended)
    if isinstance(error, pickle.UnpicklingError):
        detail = re.search(REFUSAL_DETAIL, str(error))
        return (
            f"{path}: holds Python objects that torch's safe loader (weights_only=True) refuses"
            f"{f' ({detail.group(1) or detail.group(2)})' if detail else ''}; this converter "
            "never lets a "
            f"checkpoint run code. If you trust the file, re-save its weights as a plain state "
            f"dict and convert that: {resave_command(path)}"
        )
    detail = _one_line(str(error).partition(". ")[0])  # not miniz's advice that follows
    return cut_short(path, f"{type(error).__name__}{': ' if detail else ''}{detail}")


def resave_command(path: Path) -> str:
    """The shell command that re-saves a trusted checkpoint's tensors as ``plain.pth``: those of
    its ``state_dict`` or ``model`` entry, of a pickled module's ``state_dict()``, or of the file
    itself when it is a bare state dict. Only tensors are kept, so the safe loader reads the
    result. It runs the interpreter running this converter, so it works outside an activated
    virtual environment."""
    program = (
        f"import torch; c = torch.load({json.dumps(str(path))}, weights_only=False); "
        'w = next((c[k] for k in ("state_dict", "model") if isinstance(c, dict) and k in c), c); '
        'w = w.state_dict() if hasattr(w, "state_dict") else w; '
        'torch.save({k: v for k, v in w.items() if torch.is_tensor(v)}, "plain.pth")'
    )
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(program)}"


def numpy_globals() -> list:
    """What `torch.serialization.safe_globals` needs to rebuild numpy scalars, arrays and dtypes
    (and nothing else): ``(object, "module.name")`` for each name a pickle may use, the dtype
    classes, which are only ever checked by type, and ``bytes()`` for empty arrays."""
    multiarray = importlib.import_module(
        "numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray"
    )
    allowed: list = [np.ndarray, np.dtype]
    for module in NUMPY_MODULES:
        for name in NUMPY_CONSTRUCTORS:
            allowed.append((getattr(multiarray, name), f"{module}.{name}"))
    allowed += [
        value
        for value in vars(importlib.import_module("numpy.dtypes")).values()
        if isinstance(value, type) and issubclass(value, np.dtype)
    ]
    allowed.append((_empty_bytes, "builtins.bytes"))
    return allowed


def _empty_bytes(*args: object) -> bytes:
    """``bytes`` as pickle protocol 2 calls it for ``b""`` (the data of an empty numpy array):
    with no arguments only, so ``bytes(10**12)`` cannot allocate a terabyte."""
    if args:
        raise pickle.UnpicklingError(f"bytes{args!r} refused: only bytes() is allowed")
    return b""


def _unwrap(path: Path, raw: dict, notes: list[str]) -> tuple[str, dict]:
    """The container's name and its tensors (``{key: torch.Tensor}``)."""
    import torch

    for name in CONTAINERS:
        if isinstance(raw.get(name), dict):
            container, entries = name, raw[name]
            break
    else:
        container, entries = "bare state dict", raw
    tensors = {key: value for key, value in entries.items() if isinstance(value, torch.Tensor)}
    if not tensors:
        where = (
            "at the top level" if container == "bare state dict" else f"in its {container!r} entry"
        )
        raise CheckpointError(
            f"{path}: no tensors found {where} (top-level keys: {listing([str(k) for k in raw])}); "
            f"expected weights under 'state_dict' or 'model', or a bare state dict of tensors"
        )
    others = [str(key) for key in entries if key not in tensors]
    if others and container == "bare state dict":
        notes.append(f"ignored top-level entries that are not tensors: {listing(others)}")
    elif others:
        notes.append(f"ignored {container} entries that are not tensors: {listing(others)}")
    return container, tensors


def _select_ema(path: Path, raw: dict, tensors: dict, ema: bool, notes: list[str]) -> dict:
    """The regular weights, or with ``ema`` the averaged ones, of a run that kept both; the
    EMA copies are dropped either way (each choice is noted)."""
    buffers = [key for key in tensors if key.startswith(EMA_BUFFER)]
    if buffers:
        return _mmcv_ema(path, tensors, buffers, ema, notes)
    averaged = raw.get(EMA_STATE)
    if isinstance(averaged, dict) and averaged:
        if not ema:
            notes.append(
                f"converted the regular weights; the file also holds averaged (EMA) weights "
                f"in {EMA_STATE} (mmengine EMAHook): pass --ema to convert those"
            )
            return tensors
        return _mmengine_ema(path, averaged, tensors, notes)
    if ema:
        raise CheckpointError(
            f"{path}: --ema asks for averaged weights, but the file holds none (neither "
            f"mmcv's {EMA_BUFFER}* buffers nor mmengine's {EMA_STATE}); leave --ema out"
        )
    return tensors


def _mmcv_ema(path: Path, tensors: dict, buffers: list[str], ema: bool, notes: list[str]) -> dict:
    """mmcv 1.x ``EMAHook`` buffers matched to their parameters by flattening each regular
    key the way the hook does (never by guessing where the underscores were dots)."""
    regular = {key: value for key, value in tensors.items() if key not in buffers}
    flattened: dict[str, list[str]] = {}
    for key in regular:
        flattened.setdefault(EMA_BUFFER + key.replace(".", "_"), []).append(key)
    unmatched = [key for key in buffers if key not in flattened]
    ambiguous = [key for key in buffers if len(flattened.get(key, ())) > 1]
    if unmatched or ambiguous:
        problem = (
            f"{len(unmatched)} EMA buffer{'s match' if len(unmatched) != 1 else ' matches'} "
            f"no weight: "
            f"{listing(unmatched)}"
            if unmatched
            else f"EMA buffers match two weights each: {listing(ambiguous)}"
        )
        raise CheckpointError(
            f"{path}: {problem}; an mmcv EMAHook buffer is ema_ + a parameter's name with its "
            f"dots as underscores. Remove the stray buffers and re-save"
        )
    hook = f"{len(buffers)} {EMA_BUFFER}* buffers (mmcv EMAHook)"
    if not ema:
        notes.append(
            f"converted the regular weights and dropped {hook}: pass --ema to convert the "
            f"averaged weights instead"
        )
        return regular
    for buffer in buffers:
        regular[flattened[buffer][0]] = tensors[buffer]
    notes.append(f"converted the averaged (EMA) weights of {hook}; buffers as saved")
    return regular


def _mmengine_ema(path: Path, averaged: dict, tensors: dict, notes: list[str]) -> dict:
    """mmengine's averaged model: ``module.`` + the model's keys, and its ``steps`` counter;
    it must hold exactly the keys of the regular weights."""
    import torch

    weights = {
        key.removeprefix(EMA_MODULE): value
        for key, value in averaged.items()
        if key != EMA_STEPS and isinstance(value, torch.Tensor)
    }
    missing = sorted(set(tensors) - set(weights))
    extra = sorted(set(weights) - set(tensors))
    if missing or extra:
        parts = ([f"lacks {listing(missing)}"] if missing else []) + (
            [f"has {listing(extra)} beyond them"] if extra else []
        )
        raise CheckpointError(
            f"{path}: {EMA_STATE} does not hold the same weights as the regular state dict "
            f"({'; '.join(parts)}); convert without --ema"
        )
    notes.append(f"converted the averaged (EMA) weights of {EMA_STATE} (mmengine EMAHook)")
    return weights


def _rename_source(path: Path, source: Source, tensors: dict, notes: list[str]) -> dict:
    """``tensors`` renamed by ``source``'s table onto canonical keys."""
    try:
        renamed, dropped = rename(source, tensors)
    except SourceError as error:
        raise CheckpointError(
            f"{path}: {error}; is it a modified or unsupported layout?"
        ) from error
    notes.append(f"renamed {len(renamed)} keys to mmaction2 1.x names")
    if dropped:
        notes.append(
            f"dropped {len(dropped)} keys (derived buffers, 2D classifier): {listing(dropped)}"
        )
    return renamed


def _to_numpy(path: Path, tensors: dict, notes: list[str]) -> dict[str, np.ndarray]:
    """Float tensors to float32, integer tensors to int64; note every cast."""
    import torch

    casts: dict[str, int] = {}
    state = {}
    for key, tensor in tensors.items():
        tensor = tensor.detach()
        if tensor.is_floating_point():
            target = torch.float32
        elif tensor.dtype == torch.bool or tensor.is_complex():
            raise CheckpointError(
                f"{path}: {key} is a {tensor.dtype} tensor, which no Video Swin weight is; "
                f"remove it and re-save"
            )
        else:
            target = torch.int64
        if tensor.dtype != target:
            name = str(tensor.dtype).removeprefix("torch.")
            casts[name] = casts.get(name, 0) + 1
        state[key] = tensor.to(target).contiguous().numpy()
    for name, count in sorted(casts.items()):
        target_name = "int64" if name.startswith(("int", "uint")) else "float32"
        notes.append(f"cast {count} {name} tensor{'s' if count != 1 else ''} to {target_name}")
    return state


def _refuse_non_finite(path: Path, state: dict[str, np.ndarray]) -> None:
    """A NaN or an infinity in a weight would make every output NaN; name every such tensor."""
    bad = [
        f"{key} ({int(np.count_nonzero(~np.isfinite(value)))} of {value.size})"
        for key, value in state.items()
        if value.dtype.kind == "f" and not np.isfinite(value).all()
    ]
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} tensor{'s hold' if len(bad) != 1 else ' holds'} NaN or infinite "
            f"values: {', '.join(bad)}; the training run diverged or the file is damaged, "
            f"convert an earlier checkpoint"
        )


def _unknown_keys_message(path: Path, unknown: list[str]) -> str:
    looks_like_backbone = all(
        key.startswith(("patch_embed.", "layers.", "norm")) for key in unknown
    )
    hint = (
        "They look like a Swin backbone saved without the 'backbone.' prefix, mixed with "
        "prefixed keys; re-save the keys with 'backbone.' in front"
        if looks_like_backbone
        else f"This does not look like a Video Swin recognizer checkpoint; {PTH_SOURCES}"
    )
    return (
        f"{path}: {len(unknown)} key{'s' if len(unknown) != 1 else ''} neither backbone.* nor "
        f"cls_head.*: {listing(unknown)}. {hint}"
    )


def _one_line(detail: str) -> str:
    """An error's text on one line and at most `DETAIL_CHARS` long (a damaged file's error
    can quote kilobytes of its bytes)."""
    detail = " ".join(detail.split())
    return detail if len(detail) <= DETAIL_CHARS else detail[: DETAIL_CHARS - 3] + "..."
