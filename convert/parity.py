"""Numeric parity: the upstream reference and the Keras model on the same seeded clip."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-5


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
    def between(cls, keras_out: np.ndarray, reference: np.ndarray) -> "Difference":
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
    Without a head the backbone output (the last stage) is judged instead.
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
        rows = [("logits" if self.logits is not None else None, self.logits)]
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
                f"  {name:<8} {str(list(d.shape)):<22} {d.max_abs:>11.3e} {d.mean_abs:>11.3e} "
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
    """Build a `ParityReport` from the two models' outputs (``stages`` and ``logits``)."""
    logits = None
    top1 = top5 = None
    if reference_out["logits"] is not None:
        logits = Difference.between(keras_out["logits"], reference_out["logits"])
        top1 = agreement(keras_out["logits"], reference_out["logits"], 1)
        top5 = agreement(keras_out["logits"], reference_out["logits"], 5)
    stages = [
        Difference.between(k, r) for k, r in zip(keras_out["stages"], reference_out["stages"])
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
    )


def keras_forward(model, clip: np.ndarray) -> dict[str, Any]:
    """The Keras model's stage features and logits (None without a head), as numpy."""
    from keras import ops

    features = model.stage_features(clip)
    logits = ops.convert_to_numpy(model.head(features[-1])) if model.include_top else None
    return {"stages": [ops.convert_to_numpy(f) for f in features], "logits": logits}
