"""Numeric parity: the upstream reference and the Keras model on the same seeded clip.

`ParitySettings` says which clip and which gate; `model_parity` runs the reference for a
checkpoint's source (`videoswin_tf.convert.references.registry`) and a Keras model on that clip and
returns a `ParityReport`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from videoswin_tf.convert.errors import ConversionError
from videoswin_tf.convert.mapping.spec import ModelSpec, build_keras_model
from videoswin_tf.convert.sources.checkpoint import LoadedCheckpoint

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-5
SQUARABLE = 1.8e19  # the largest float32 magnitude whose square is still finite (about 1.84e19)


@dataclasses.dataclass(frozen=True)
class ParitySettings:
    """One parity run's clip and gate, as ``vswin-convert``'s parity options give them.

    Attributes:
        frames: frames of the clip; None: the config's clip (``ModelSpec.clip_frames``).
        size: height and width of the clip; None: the config's (``ModelSpec.clip_size``).
        batch: clips in the batch.
        seed: seed of the clip (`parity_clip`).
        atol: largest absolute logit difference that passes (see `ParityReport.passed`).
        rtol: largest logit difference, relative to the largest reference logit, that passes.
    """

    frames: int | None = None
    size: int | None = None
    batch: int = 1
    seed: int = 0
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL

    def clip_shape(self, spec: ModelSpec) -> tuple[int, int, int, int, int]:
        """The clip ``(B, T, S, S, 3)``, frames and size defaulting to ``spec``'s clip."""
        size = self.size or spec.clip_size
        return (self.batch, self.frames or spec.clip_frames, size, size, 3)


DEFAULT_PARITY = ParitySettings()  # the config's clip, batch 1, seed 0, the default gate


@dataclasses.dataclass
class Difference:
    """How far the Keras output is from the reference output of the same tensor.

    Attributes:
        shape: shape of the compared tensors (channels last).
        max_abs: largest absolute difference.
        mean_abs: mean absolute difference.
        reference_scale: largest absolute value of the reference tensor.
        relative: ``max_abs / reference_scale``.
        cosine: cosine similarity of the flattened tensors.
    """

    shape: tuple[int, ...]
    max_abs: float
    mean_abs: float
    reference_scale: float
    relative: float
    cosine: float

    @classmethod
    def between(cls, keras_out: np.ndarray, reference: np.ndarray) -> Difference:
        if keras_out.shape != reference.shape:
            raise ValueError(
                f"Keras output {keras_out.shape} and reference {reference.shape} differ in shape"
            )
        a = keras_out.astype(np.float64).ravel()
        b = reference.astype(np.float64).ravel()
        diff = np.abs(a - b)
        scale = float(np.abs(b).max())
        return cls(
            shape=tuple(int(s) for s in reference.shape),
            max_abs=float(diff.max()),
            mean_abs=float(diff.mean()),
            reference_scale=scale,
            relative=float(diff.max() / scale) if scale else float("inf"),
            cosine=float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))),
        )


@dataclasses.dataclass
class ParityReport:
    """The outcome of one parity run; `passed` is the gate.

    The logits pass when their largest absolute difference is at most ``atol`` and at most
    ``rtol`` times the largest reference logit (so tiny logits cannot pass by being tiny).
    Without a head the backbone output (the last stage) is judged instead. ``outputs`` names
    what the logits row holds: ``"logits"``, or ``"probs"`` for a reference that ends in
    softmax (both sides' softmax probabilities are compared then).
    """

    config: str
    clip_shape: tuple[int, ...]
    seed: int
    atol: float
    rtol: float
    logits: Difference | None
    stages: list[Difference]
    top1_agreement: float | None
    top5_agreement: float | None
    seconds_reference: float
    seconds_keras: float
    outputs: str = "logits"

    @property
    def judged(self) -> Difference:
        return self.logits if self.logits is not None else self.stages[-1]

    @property
    def passed(self) -> bool:
        return self.judged.max_abs <= self.atol and self.judged.relative <= self.rtol

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "passed": self.passed}

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)

    def format(self) -> str:
        """The report as printed by the CLI."""
        rows = [(self.outputs if self.logits is not None else None, self.logits)]
        rows += [(f"stage {i}", stage) for i, stage in enumerate(self.stages)]
        lines = [
            f"parity: {self.config}, clip {'x'.join(map(str, self.clip_shape))} (seed {self.seed})",
            f"  {'tensor':<8} {'shape':<22} {'max |diff|':>11} {'mean |diff|':>11} "
            f"{'max |ref|':>10} {'relative':>10} {'cosine':>12}",
        ]
        for name, d in rows:
            if d is None:
                continue
            lines.append(
                f"  {name:<8} {list(d.shape)!s:<22} {d.max_abs:>11.3e} {d.mean_abs:>11.3e} "
                f"{d.reference_scale:>10.3f} {d.relative:>10.2e} {d.cosine:>12.9f}"
            )
        if self.top1_agreement is not None:
            lines.append(
                f"  top-1 agreement {self.top1_agreement:.0%}, "
                f"top-5 agreement {self.top5_agreement:.0%}"
            )
        verdict = "PASS" if self.passed else "FAIL"
        lines.append(
            f"  {verdict}: max |diff| {self.judged.max_abs:.3e} (atol {self.atol:g}), "
            f"relative {self.judged.relative:.2e} (rtol {self.rtol:g})"
        )
        return "\n".join(lines)


def parity_clip(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A normalized-looking random clip ``(B, T, H, W, 3)``, standard normal, from ``seed``."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def agreement(keras_logits: np.ndarray, reference_logits: np.ndarray, k: int) -> float:
    """Fraction of samples whose top-``k`` classes (as sets) agree."""
    k = min(k, reference_logits.shape[-1])
    top = lambda logits: np.sort(np.argsort(-logits, axis=-1)[:, :k], axis=-1)  # noqa: E731
    return float(np.mean(np.all(top(keras_logits) == top(reference_logits), axis=-1)))


def compare(
    config: str,
    keras_out: dict[str, Any],
    reference_out: dict[str, Any],
    clip_shape: tuple[int, ...],
    seed: int,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    seconds: tuple[float, float] = (0.0, 0.0),
) -> ParityReport:
    """Build a `ParityReport` from the two models' outputs (``stages`` and ``logits``); a
    reference whose outputs say ``"softmax": True`` gave probabilities, which are compared with
    the softmax of the Keras logits."""
    outputs = "logits"
    if reference_out.get("softmax"):
        shifted = np.exp(keras_out["logits"] - keras_out["logits"].max(axis=-1, keepdims=True))
        keras_out = keras_out | {"logits": shifted / shifted.sum(axis=-1, keepdims=True)}
        outputs = "probs"
    logits = None
    top1 = top5 = None
    if reference_out["logits"] is not None:
        logits = Difference.between(keras_out["logits"], reference_out["logits"])
        top1 = agreement(keras_out["logits"], reference_out["logits"], 1)
        top5 = agreement(keras_out["logits"], reference_out["logits"], 5)
    stages = [
        Difference.between(k, r)
        for k, r in zip(keras_out["stages"], reference_out["stages"], strict=False)
    ]
    return ParityReport(
        config=config,
        clip_shape=tuple(clip_shape),
        seed=seed,
        atol=atol,
        rtol=rtol,
        logits=logits,
        stages=stages,
        top1_agreement=top1,
        top5_agreement=top5,
        seconds_reference=seconds[1],
        seconds_keras=seconds[0],
        outputs=outputs,
    )


def keras_forward(model, clip: np.ndarray) -> dict[str, Any]:
    """The Keras model's stage features and logits (None without a head), as numpy."""
    from keras import ops

    features = model.stage_features(clip)
    logits = ops.convert_to_numpy(model.head(features[-1])) if model.include_top else None
    return {"stages": [ops.convert_to_numpy(f) for f in features], "logits": logits}


def model_parity(
    spec: ModelSpec,
    checkpoint: LoadedCheckpoint,
    model,
    clip_shape: tuple[int, ...],
    seed: int = 0,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    reference: str | None = None,
) -> ParityReport:
    """Run the upstream reference for ``checkpoint``'s source (mmaction2's model, mmaction2
    inflating a 2D file, torchvision's model), or the one ``reference`` names (a key of
    `references.registry.REFERENCES`), and the Keras ``model`` (holding the converted
    weights) on one seeded clip of ``clip_shape`` ``(B, T, H, W, 3)`` and compare them.

    Raises:
        ConversionError: the reference computes NaN, infinite or huge values from the weights.
    """
    from videoswin_tf.convert.references.registry import reference_for

    clip = parity_clip(clip_shape, seed)

    start = time.perf_counter()
    reference_out = reference_for(checkpoint, reference).forward(spec, checkpoint, clip)
    _refuse_out_of_range_outputs(reference_out, checkpoint)
    seconds_reference = time.perf_counter() - start

    start = time.perf_counter()
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


def run_parity(
    spec: ModelSpec,
    checkpoint: LoadedCheckpoint,
    weights_path: str | os.PathLike,
    clip_shape: tuple[int, ...],
    seed: int = 0,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> ParityReport:
    """`model_parity` for a weights file: a fresh Keras model of ``spec`` loads
    ``weights_path`` first."""
    model = build_keras_model(spec)
    model.load_weights(str(weights_path))
    return model_parity(spec, checkpoint, model, clip_shape, seed, atol, rtol)


def _refuse_out_of_range_outputs(outputs: dict, checkpoint: LoadedCheckpoint) -> None:
    """Finite weights can still drive the reference to NaN, infinities, or values float32
    cannot square (a LayerNorm squares its input; torch's survives that, a float32 variance
    does not). There is nothing to compare then: the weights are unusable, not mis-converted."""
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
