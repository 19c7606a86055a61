"""`ModelSpec`: everything the converter needs to know about one Video Swin model, and the Keras
model it describes (`build_keras_model`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from videoswin_tf.architectures import ARCHITECTURES as KERAS_ARCHITECTURES
from videoswin_tf.architectures import DEFAULT_PATCH, DEFAULT_WINDOW, find_arch

# The four standard sizes, as the converter's configs name their fields (one table: the model
# package's `videoswin_tf.architectures`).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    name: {"embed_dim": arch.embed_dim, "depths": arch.depths, "num_heads": arch.num_heads}
    for name, arch in KERAS_ARCHITECTURES.items()
}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One Video Swin model: architecture, head, clip shape and release names.

    Attributes:
        name: config name, e.g. ``"swin_t_k400"``.
        embed_dim: channels after the patch embedding (C of stage 0).
        depths: blocks per stage.
        num_heads: attention heads per stage.
        window_size: attention window ``(Wd, Wh, Ww)``.
        patch_size: patch ``(Pd, Ph, Pw)``.
        num_classes: classes of the I3D head, or ``None`` for a backbone-only model.
        drop_path_rate: stochastic depth rate of the last block (training only).
        clip_frames: frames of the clip the model was trained on.
        clip_size: height and width of that clip.
        release: stem of the published Keras asset, e.g.
            ``"TFVideoSwinT_K400_IN1K_P244_W877_32x224"``.
        source: file name of the official PyTorch checkpoint.
    """

    name: str
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: tuple[int, int, int] = DEFAULT_WINDOW
    patch_size: tuple[int, int, int] = DEFAULT_PATCH
    num_classes: int | None = 400
    drop_path_rate: float = 0.1
    clip_frames: int = 32
    clip_size: int = 224
    release: str | None = None
    source: str | None = None

    @property
    def num_features(self) -> int:
        """Channels of the backbone output (the head's ``in_channels``)."""
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    @property
    def arch(self) -> str | None:
        """Name of the matching standard architecture, or ``None`` for a custom one."""
        return find_arch(self.embed_dim, self.depths, self.num_heads)

    def keras_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of `videoswin_tf.TFSwinTransformer3D` for this model."""
        return {
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "depths": list(self.depths),
            "num_heads": list(self.num_heads),
            "window_size": self.window_size,
            "drop_path_rate": self.drop_path_rate,
            "in_channels": self.num_features,
            "num_classes": self.num_classes or 0,
            "include_top": self.num_classes is not None,
        }

    def reference_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of mmaction2's ``SwinTransformer3D`` for this model."""
        return {
            "arch": {
                "embed_dims": self.embed_dim,
                "depths": list(self.depths),
                "num_heads": list(self.num_heads),
            },
            "pretrained": None,
            "pretrained2d": False,
            "patch_size": self.patch_size,
            "window_size": self.window_size,
            "drop_path_rate": self.drop_path_rate,
        }

    @classmethod
    def from_file_config(cls, config: dict[str, Any], name: str) -> ModelSpec:
        """The model a weights file records (`videoswin_tf.weights_file.read_file_config`),
        named after its preset when it has one, else ``name``."""
        return cls(
            name=config.get("preset") or name,
            embed_dim=int(config["embed_dim"]),
            depths=tuple(config["depths"]),
            num_heads=tuple(config["num_heads"]),
            window_size=tuple(config["window_size"]),
            patch_size=tuple(config["patch_size"]),
            num_classes=config["num_classes"] if config["include_top"] else None,
        )

    def replace(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, **changes)


def build_keras_model(spec: ModelSpec):
    """A fresh `videoswin_tf.TFSwinTransformer3D` for ``spec``, every variable created."""
    from videoswin_tf import TFSwinTransformer3D

    return TFSwinTransformer3D(**spec.keras_kwargs(), name=spec.name)
