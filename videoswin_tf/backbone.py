"""`VideoSwinBackbone`: the Video Swin Transformer without a head, in keras-hub's Backbone role."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from videoswin_tf import hub
from videoswin_tf.architectures import DEFAULT_PATCH, DEFAULT_WINDOW
from videoswin_tf.layers.norm import build_norm, norm_config
from videoswin_tf.layers.patch_embed import PatchEmbed3D
from videoswin_tf.layers.stage import SwinStage

INPUT_LAYOUT = "(batch, frames, height, width, 3), channels last"


@keras.saving.register_keras_serializable(package="videoswin_tf")
class VideoSwinBackbone(keras.Model):
    """Video Swin Transformer backbone (Liu et al., 2021): mmaction2's ``SwinTransformer3D``.

    Every variable exists as soon as the model is constructed, so ``load_weights`` works before
    the first call. Frames, height and width are free at call time: sizes that are not
    multiples of the patch or window are zero-padded, and windows shrink on axes smaller than
    them, as in the reference. Its variables, and its ``.weights.h5`` layout, are those of
    ``TFSwinTransformer3D(include_top=False)``.

    Args:
        patch_size: ``(Pd, Ph, Pw)`` of the patch embedding.
        embed_dim: channels ``C`` of stage 0; stage ``i`` has ``C * 2**i``.
        depths: blocks per stage.
        num_heads: attention heads per stage.
        window_size: attention window ``(Wd, Wh, Ww)``.
        mlp_ratio: MLP hidden channels over block channels.
        qkv_bias: learn a bias for query, key and value.
        qk_scale: query scale; ``None`` for ``head_dim ** -0.5``.
        drop_rate: dropout after the patch embedding, in projections and MLPs.
        attn_drop_rate: dropout of the attention weights.
        drop_path_rate: stochastic depth of the last block; rates grow linearly from 0.
        norm_layer: ``None`` (LayerNormalization, epsilon 1e-5), a factory such as
            ``functools.partial(keras.layers.LayerNormalization, epsilon=1e-5)``, or the
            config dict that `get_config` stores.
        patch_norm: normalize the patch tokens.

    Call arguments:
        x: clip ``(B, T, H, W, 3)``, channels last, already normalized (see
            `videoswin_tf.VideoSwinVideoConverter`).
        training: enables dropout and stochastic depth.

    Returns:
        the pooled features ``(B, C_last)``, ``C_last = embed_dim * 2**(len(depths) - 1)``;
        `stage_features` gives the four stage feature maps.
    """

    def __init__(
        self,
        patch_size: Sequence[int] = DEFAULT_PATCH,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: Sequence[int] = DEFAULT_WINDOW,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        norm_layer: Any = None,
        patch_norm: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if len(depths) != len(num_heads):
            raise ValueError(
                f"depths {list(depths)} and num_heads {list(num_heads)} must have one entry "
                "per stage"
            )
        self.patch_size = tuple(patch_size)
        self.embed_dim = embed_dim
        self.depths = list(depths)
        self.num_heads = list(num_heads)
        self.window_size = tuple(window_size)
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.qk_scale = qk_scale
        self.drop_rate = drop_rate
        self.attn_drop_rate = attn_drop_rate
        self.drop_path_rate = drop_path_rate
        self.norm_layer = norm_config(norm_layer)
        self.patch_norm = patch_norm
        self.num_features = embed_dim * 2 ** (len(depths) - 1)

        self.patch_embed = PatchEmbed3D(
            self.patch_size,
            embed_dim,
            norm_layer=self.norm_layer,
            patch_norm=patch_norm,
            name="patch_embed",
            dtype=self.dtype_policy,
        )
        self.pos_drop = keras.layers.Dropout(drop_rate, name="pos_drop", dtype=self.dtype_policy)
        block_rates = np.linspace(0.0, drop_path_rate, sum(self.depths)).tolist()
        self.stages = []
        for index, (depth, heads) in enumerate(zip(self.depths, self.num_heads, strict=True)):
            first = sum(self.depths[:index])
            self.stages.append(
                SwinStage(
                    embed_dim * 2**index,
                    depth,
                    heads,
                    window_size=self.window_size,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    qk_scale=qk_scale,
                    drop=drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=block_rates[first : first + depth],
                    norm_layer=self.norm_layer,
                    downsample=index < len(self.depths) - 1,
                    name=f"layers_{index}",
                    dtype=self.dtype_policy,
                )
            )
        self.norm = build_norm(self.norm_layer, "norm", self.dtype_policy)
        self.build((None, None, None, None, 3))

    def build(self, input_shape):
        self.patch_embed.build(input_shape)
        for index, stage in enumerate(self.stages):
            stage.build((None, None, None, None, self.embed_dim * 2**index))
        self.norm.build((None, None, None, None, self.num_features))

    def stage_features(self, x, training=None) -> list:
        """The four stage feature maps, for dense tasks.

        Stage ``i`` gives ``(B, D, H_i, W_i, embed_dim * 2**i)``: its blocks' output before
        patch merging; the last one after the final norm (the backbone output). With the
        ``(2, 4, 4)`` patch, ``D = ceil(T / 2)`` and ``H_i = ceil(H / 2**(i + 2))`` (each
        merging rounds up).

        Args:
            x: clip ``(B, T, H, W, 3)``.
            training: enables dropout and stochastic depth.
        """
        validate_clip(x)
        x = self.pos_drop(self.patch_embed(x), training=training)
        features = []
        for stage in self.stages:
            stage_out, x = stage(x, training=training)
            features.append(stage_out)
        features[-1] = self.norm(features[-1])
        return features

    def call(self, x, training=None):
        return ops.mean(self.stage_features(x, training=training)[-1], axis=(1, 2, 3))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_features)

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "depths": self.depths,
            "num_heads": self.num_heads,
            "window_size": self.window_size,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "qk_scale": self.qk_scale,
            "drop_rate": self.drop_rate,
            "attn_drop_rate": self.attn_drop_rate,
            "drop_path_rate": self.drop_path_rate,
            "norm_layer": self.norm_layer,
            "patch_norm": self.patch_norm,
        }

    def load_weights(self, filepath, skip_mismatch: bool = False, **kwargs) -> None:
        """Load this backbone's part of a weights file written by `save_weights` or by
        ``TFSwinTransformer3D`` (``*.weights.h5`` or the seed's ``*.h5``, with or without a
        head; a head in the file is skipped).

        Raises:
            videoswin_tf.WeightsMismatchError: the file records another model (its window,
                width, depth, heads or patch), named with the call that fits it.
        """
        hub.load_backbone_weights(self, filepath, skip_mismatch=skip_mismatch, **kwargs)

    @classmethod
    def from_preset(cls, preset: str, **kwargs) -> VideoSwinBackbone:
        """The backbone of a preset, with its weights.

        Args:
            preset: a published preset name (``"swin_t_k400"``, see
                ``VideoSwinBackbone.presets``), downloaded once and checked against its
                published SHA-256; a local preset directory (`save_to_preset`); or
                ``"hf://<org>/<name>"``, a preset directory on the Hugging Face Hub (needs the
                ``hf`` extra: ``pip install 'videoswin-tf[hf]'``).
            **kwargs: config entries to override (e.g. ``drop_path_rate``).

        Raises:
            ValueError: ``preset`` is none of these, or a preset directory lacks a file.
        """
        return hub.backbone_from_preset(cls, preset, kwargs)

    def save_to_preset(self, preset_dir: str) -> None:
        """Write a preset directory in keras-hub's layout: ``config.json`` (this backbone's
        serialized config), ``model.weights.h5`` and ``metadata.json``."""
        hub.save_backbone(self, preset_dir)

    # The published presets by handle (the name `from_preset` takes): {handle: Preset}.
    presets = hub.PublishedPresets()


def validate_clip(x) -> None:
    """Raise a `ValueError` unless ``x`` is a clip ``(B, T, H, W, 3)`` with known, non-zero
    frames, height and width."""
    shape = tuple(x.shape)
    if len(shape) != 5:
        raise ValueError(
            f"expected a video clip of rank 5 laid out as {INPUT_LAYOUT}, got rank "
            f"{len(shape)} with shape {shape}; add a batch axis for a single clip"
        )
    if shape[-1] != 3:
        raise ValueError(
            f"expected 3 channels last, as {INPUT_LAYOUT}, got shape {shape}; a clip in "
            "PyTorch's (batch, 3, frames, height, width) needs a transpose to (0, 2, 3, 4, 1)"
        )
    if any(size is None for size in shape[1:4]):
        raise ValueError(
            f"frames, height and width must be known when the model runs, got {shape} "
            f"({INPUT_LAYOUT}); give them in the traced input signature, or call the model "
            "on a real clip"
        )
    if 0 in shape:
        raise ValueError(f"got an empty clip of shape {shape}; expected {INPUT_LAYOUT}")
