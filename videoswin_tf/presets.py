"""Presets: the named models of ``configs/*.json`` as the Keras side sees them.

A preset fixes what a published checkpoint needs of the model (architecture, window, classes,
label map) and how its scores were computed (the test-time pipeline). The JSON files are the
one source, read by `videoswin_tf.named_configs` for the presets and the converter alike.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from videoswin_tf.architectures import ARCHITECTURES
from videoswin_tf.named_configs import shipped_configs

# Builder name of each architecture in the configs.
BUILDERS = {name: arch.builder for name, arch in ARCHITECTURES.items()}
# The names the seed's Keras 3 rewrite (innat/VideoSwin v2.0, its MODEL_ZOO.md) released each
# preset's weights under: ``<name>.weights.h5`` the backbone, ``<name>_classifier.weights.h5``
# the classifier. KerasCV 0.9's ``VideoSwinBackbone`` presets carry the same backbone names.
KERAS3_NAMES = {
    "swin_t_k400": "videoswin_tiny_kinetics400",
    "swin_s_k400": "videoswin_small_kinetics400",
    "swin_b_k400": "videoswin_base_kinetics400",
    "swin_b_k400_in22k": "videoswin_base_kinetics400_imagenet22k",
    "swin_b_k600_in22k": "videoswin_base_kinetics600_imagenet22k",
    "swin_b_ssv2": "videoswin_base_something_something_v2",
}
CLASSIFIER_SUFFIX = "_classifier"


@dataclasses.dataclass(frozen=True)
class TestPipeline:
    """How a checkpoint was scored: ``SampleFrames``, ``Resize``, ``ThreeCrop`` settings.

    Attributes:
        clip_len: frames per clip.
        frame_interval: stride between sampled frames.
        num_clips: clips per video.
        frame_uniform: the Video-Swin ``frame_uniform`` sampling (SSv2) instead of strided
            clips.
        short_side: the short side frames are resized to.
        crop_size: side of the square crops.
        num_crops: crops per clip (3: ThreeCrop, 1: centre crop).
    """

    clip_len: int
    frame_interval: int
    num_clips: int
    frame_uniform: bool
    short_side: int
    crop_size: int
    num_crops: int

    @property
    def views(self) -> str:
        """``"<clips>x<crops>"``, e.g. ``"4x3"``."""
        return f"{self.num_clips}x{self.num_crops}"


@dataclasses.dataclass(frozen=True)
class Preset:
    """One named model.

    Attributes:
        name: config name, e.g. ``"swin_t_k400"``.
        arch: ``"tiny"``, ``"small"``, ``"base"`` or ``"large"``.
        window_size: attention window ``(Wd, Wh, Ww)``.
        patch_size: patch ``(Pd, Ph, Pw)``.
        num_classes: classes of the head.
        labels: the shipped label map of its classes (see `videoswin_tf.labels`).
        release: stem of the published Keras weights, the seed's release name, e.g.
            ``"TFVideoSwinT_K400_IN1K_P244_W877_32x224"``.
        pipeline: the test-time pipeline its accuracy was measured with.
        keras3_name: the Keras 3 rewrite's name of its backbone (`KERAS3_NAMES`), e.g.
            ``"videoswin_tiny_kinetics400"``; ``None`` for a preset it did not release.
    """

    name: str
    arch: str
    window_size: tuple[int, int, int]
    patch_size: tuple[int, int, int]
    num_classes: int
    labels: str
    release: str
    pipeline: TestPipeline
    keras3_name: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """Every name ``weights=`` takes for it: its own, the seed's release name, and the
        Keras 3 rewrite's classifier and backbone names (the last loads the backbone alone)."""
        keras3 = (
            (self.keras3_name + CLASSIFIER_SUFFIX, self.keras3_name) if self.keras3_name else ()
        )
        return (self.name, self.release, *keras3)

    @property
    def builder(self) -> str:
        """Name of the builder function of its architecture, e.g. ``"tf_video_swin_tiny"``."""
        return BUILDERS[self.arch]

    def model_kwargs(self) -> dict[str, Any]:
        """The builder arguments that a preset fixes."""
        return {
            "window_size": self.window_size,
            "patch_size": self.patch_size,
            "num_classes": self.num_classes,
        }


@functools.cache
def presets() -> dict[str, Preset]:
    """Every named preset, by name, in the order of the config files."""
    return {name: _from_config(config.data) for name, config in shipped_configs().items()}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a `ValueError` naming the known ones otherwise."""
    known = presets()
    if name not in known:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(known)}")
    return known[name]


def lookup(name: str) -> tuple[Preset, bool] | None:
    """The preset that ``name`` names (any of `Preset.names`), and whether the name means its
    backbone alone (the Keras 3 rewrite's backbone name); ``None`` for no preset."""
    for preset in presets().values():
        if name in preset.names:
            return preset, name == preset.keras3_name
    return None


def _from_config(data: dict[str, Any]) -> Preset:
    steps = data["test_pipeline"]
    return Preset(
        name=data["name"],
        arch=data["arch"],
        window_size=tuple(data["window_size"]),
        patch_size=tuple(data["patch_size"]),
        num_classes=data["num_classes"],
        labels=data["labels"],
        release=data["release"],
        pipeline=TestPipeline(
            clip_len=data["clip_frames"],
            frame_interval=steps["frame_interval"],
            num_clips=steps["num_clips"],
            frame_uniform=steps["frame_uniform"],
            short_side=data["clip_size"],
            crop_size=data["clip_size"],
            num_crops=steps["num_crops"],
        ),
        keras3_name=KERAS3_NAMES.get(data["name"]),
    )
